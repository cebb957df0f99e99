"""The default model's runtime file: the packaged Q4_1 GGUF rewritten with Q8_0 weights.

Why: the reranker evaluates about 16 tokens per candidate, 20 candidates per feed, and on 2 cores
llama.cpp's Q4_1 matrix kernels are the cost (no weight repacking exists for Q4_1, and llama.cpp's
AMX buffers are off, see `model.cpu_has_amx`). Q8_0 evaluates those short batches faster, and
generates one token at a time a little slower (BENCHMARKS.md has the figures; the file is 145 MB, not
98 MB). Every Q8_0 block of 32 holds the Q4_1 block's values to within 1/254 of its largest
magnitude (tests/unit/test_requantize.py checks it), so the model is the same one.

The file is derived, never shipped: built from the verified package file into the models cache,
written to a temporary name and renamed, with a sidecar (`<file>.json`) recording the source's and
the result's sha256. A missing, damaged or stale file (another source, another version of this
recipe) is rebuilt from the source; nothing else depends on it. Personal LoRA adapters record
the source's id (`LLM.model_id`) and fit both files: the tensors' names and shapes do not change.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from agent.core.atomic import sha256_file, write_text_atomic

RECIPE = 1  # bump when the conversion changes: older runtime files are then rebuilt
CONVERTED = ("Q4_0", "Q4_1", "Q5_0", "Q5_1")  # 32-value blocks that Q8_0 holds almost exactly
TARGET = "Q8_0"
SIDECAR_SUFFIX = ".json"


class RequantizeError(RuntimeError):
    """The source could not be read or the result could not be written."""


def requantize(source: Path, target: Path) -> str:
    """Write `source` with its CONVERTED tensors as Q8_0 to `target` (temporary file, then rename);
    every other tensor and every metadata value is copied as is. Returns the result's sha256."""
    import gguf
    import numpy as np
    from gguf.quants import dequantize, quantize

    target_type = gguf.GGMLQuantizationType[TARGET]
    try:
        reader = gguf.GGUFReader(str(source))
    except Exception as error:  # the reader raises what its parser meets: ValueError, struct.error, ...
        raise RequantizeError(f"cannot read {source} as GGUF ({type(error).__name__}: {error})") from None
    architecture = reader.fields["general.architecture"].contents()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        writer = gguf.GGUFWriter(str(temporary), architecture)
        for name, field in reader.fields.items():
            if name.startswith("GGUF.") or name in ("general.architecture", "general.alignment"):
                continue  # the writer writes these itself
            value_type = field.types[0]
            value = field.contents()
            if name == "general.file_type":
                value = int(gguf.LlamaFileType.MOSTLY_Q8_0)
            if value_type == gguf.GGUFValueType.ARRAY:
                writer.add_key_value(name, value, value_type, sub_type=field.types[-1])
            else:
                writer.add_key_value(name, value, value_type)
        for tensor in reader.tensors:
            if tensor.tensor_type.name in CONVERTED:
                values = dequantize(np.asarray(tensor.data), tensor.tensor_type)
                data = quantize(values.astype(np.float32), target_type)
                writer.add_tensor(tensor.name, data, raw_shape=data.shape, raw_dtype=target_type)
            else:
                writer.add_tensor(tensor.name, np.asarray(tensor.data), raw_shape=tensor.data.shape,
                                  raw_dtype=tensor.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        digest = sha256_file(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return digest


def runtime_path(cache_dir: Path, source_file_name: str) -> Path:
    stem = source_file_name[:-5] if source_file_name.endswith(".gguf") else source_file_name
    for quantization in CONVERTED:
        if stem.endswith(f".{quantization}"):
            stem = stem[: -len(quantization) - 1]
    return Path(cache_dir) / f"{stem}.{TARGET}.gguf"


def find_prepared(source_name: str, source_sha256: str, cache_dir: Path,
                  verified: Callable[[Path], str] | None = None) -> tuple[Path, str | None]:
    """(where the runtime file for this source belongs in `cache_dir`, None if it is there and
    checks out, else why not). `verified(path)` may supply the file's sha256 from a cache (the
    loader hashes a file once per size and mtime)."""
    target = runtime_path(cache_dir, source_name)
    if not target.is_file():
        return target, "missing"
    record = _read_record(target.with_name(target.name + SIDECAR_SUFFIX))
    if (record.get("source_sha256") != source_sha256 or record.get("recipe") != RECIPE
            or record.get("size") != target.stat().st_size):
        return target, "made from another source or recipe"
    digest = verified(target) if verified else sha256_file(target)
    return target, None if digest == record.get("sha256") else f"damaged (sha256 {digest[:12]}…)"


def prepare_runtime_file(source: Path, source_sha256: str, cache_dir: Path, *, source_name: str | None = None,
                         force: bool = False, log: Callable[[str], None] | None = None,
                         verified: Callable[[Path], str] | None = None) -> tuple[Path, str]:
    """The runtime file for `source` (whose sha256 the caller has checked) in `cache_dir`, named
    after `source_name` (default: the source's file name): reused when its record names this
    source and recipe and the file still has the recorded sha256, otherwise built. Returns
    (path, "cached" or "built")."""
    target, problem = find_prepared(source_name or Path(source).name, source_sha256, cache_dir, verified)
    if problem is None and not force:
        return target, "cached"
    if log:
        log(f"writing {target.name} ({TARGET} weights from {Path(source).name}, once: {problem or 'forced'})")
    # The rename replaces the file at once and the record follows it: a crash before the rename leaves
    # the old file and its record, a crash between the two a record whose sha256 the new file fails.
    digest = requantize(Path(source), target)
    write_text_atomic(target.with_name(target.name + SIDECAR_SUFFIX),
                      json.dumps({"source": Path(source).name, "source_sha256": source_sha256, "recipe": RECIPE,
                                  "quantization": TARGET, "size": target.stat().st_size, "sha256": digest},
                                 indent=1))
    return target, "built"


def _read_record(sidecar: Path) -> dict:
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
