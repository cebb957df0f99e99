"""The personal LoRA as a GGUF adapter file: written here, checked here before llama.cpp sees it.

Format (what llama.cpp's `llama_adapter_lora_init` reads): `general.type = "adapter"`,
`general.architecture` as the base, `adapter.type = "lora"`, `adapter.lora.alpha` (float32), and
per adapted base tensor `<name>.lora_a` (numpy (r, n_in), ggml [n_in, r]) and `<name>.lora_b`
(numpy (n_out, r), ggml [r, n_out]). llama.cpp adds `scale * alpha / r * B @ A` to the base.

The rotary permutation: a llama-architecture GGUF stores the Q and K weights with their rows
permuted (convert_hf_to_gguf's `permute`, which pairs the rotary halves differently), and
transformers undoes that permutation when it loads the GGUF for training. So the LoRA learned
in torch lives in the un-permuted row order, and the rows of B for Q and K must be permuted the
same way again here, or llama.cpp adds the update to the wrong rows and the result silently
diverges (tests/unit/test_lora.py shows both).

An adapter made for another base would be loaded by llama.cpp without complaint whenever the
shapes happen to fit, and would then just produce wrong answers. So every adapter carries the
id of the base it was trained on (`ownrec.base.model_id`) and `check_adapter` compares that, the
architecture and every tensor shape with the running model before the file is handed over.
numpy and the `gguf` package only: no torch (an import-linter contract checks it).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import sha256_file
from agent.core.llm.gguf_header import GGUFError, GGUFInfo, read_gguf_info

FORMAT_VERSION = 1  # ownrec.version: the layout of ownrec's own keys
# The attention projections the LoRA adapts: transformers' module name -> GGUF tensor name.
TARGETS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
ROTARY_ARCHITECTURES = {"llama"}  # the ones whose GGUF stores Q/K permuted (convert_hf_to_gguf)
MAX_RANK = 64
_TENSOR_NAME = re.compile(r"^blk\.(\d+)\.(attn_q|attn_k|attn_v|attn_output)\.weight\.lora_(a|b)$")


class AdapterRefused(ValueError):
    """This adapter file cannot be used with this model; the message says why. Nothing was loaded."""


@dataclass(frozen=True)
class BaseModel:
    """What an adapter must match: the base's architecture, its id and its attention shapes."""

    architecture: str
    model_id: str
    layers: int
    embedding: int
    heads: int
    kv_heads: int
    head_dim: int

    def shapes(self, target: str) -> tuple[int, int]:
        """(n_in, n_out) of one attention projection."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"attn_q": (self.embedding, q), "attn_k": (self.embedding, kv),
                "attn_v": (self.embedding, kv), "attn_output": (q, self.embedding)}[target]


def describe_base(info: GGUFInfo, model_id: str) -> BaseModel:
    heads = max(info.arch_int("attention.head_count", 1), 1)
    embedding = info.arch_int("embedding_length")
    head_dim = info.arch_int("attention.key_length") or info.arch_int("rope.dimension_count") or embedding // heads
    return BaseModel(info.architecture, model_id, info.arch_int("block_count"), embedding, heads,
                     info.arch_int("attention.head_count_kv", heads) or heads, head_dim)


@dataclass
class LoraWeights:
    """A LoRA in PEFT's layout and transformers' (un-permuted) row order:
    `pairs[(layer, target)] = (A (r, n_in), B (n_out, r))`; the update is alpha / r * B @ A."""

    rank: int
    alpha: float
    pairs: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def zeros(cls, base: BaseModel, rank: int = 8, alpha: float = 16.0, seed: int = 0) -> "LoraWeights":
        """B = 0 (so no change at all) with a random A, as a LoRA starts training."""
        rng = np.random.default_rng(seed)
        pairs = {}
        for layer in range(base.layers):
            for target in TARGETS.values():
                n_in, n_out = base.shapes(target)
                pairs[(layer, target)] = (rng.normal(0, 1 / np.sqrt(n_in), (rank, n_in)).astype(np.float32),
                                          np.zeros((n_out, rank), np.float32))
        return cls(rank, float(alpha), pairs)


def rotary_permute(rows: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """convert_hf_to_gguf's `LlamaModel.permute`, on the rows (the output dimension) of `rows`:
    within each head, rows [0..d/2) and [d/2..d) are interleaved. For K, n_head is n_head_kv."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:])
            .swapaxes(1, 2).reshape(rows.shape))


def _to_gguf_rows(base: BaseModel, target: str, B: np.ndarray, permute: bool) -> np.ndarray:
    if not permute or base.architecture not in ROTARY_ARCHITECTURES:
        return B
    if target == "attn_q":
        return rotary_permute(B, base.heads, base.heads)
    if target == "attn_k":
        return rotary_permute(B, base.heads, base.kv_heads)
    return B


def write_adapter(path: Path, weights: LoraWeights, base: BaseModel, meta: dict[str, Any] | None = None, *,
                  permute: bool = True) -> str:
    """Write `weights` as a GGUF LoRA for `base` (write-temp-then-rename); return its sha256.
    `meta` (flat: str, int, float, bool) is stored as `ownrec.<key>`. `permute=False` skips the
    rotary permutation: wrong for llama models, only for the test that proves it matters."""
    import gguf

    if not 1 <= weights.rank <= MAX_RANK:
        raise ValueError(f"LoRA rank {weights.rank} is outside 1..{MAX_RANK}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, base.architecture)
        writer.add_string("general.type", "adapter")
        writer.add_string("general.name", "ownrec personal LoRA")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(weights.alpha))
        writer.add_uint32("ownrec.version", FORMAT_VERSION)
        writer.add_string("ownrec.base.model_id", base.model_id)
        writer.add_uint32("ownrec.lora.rank", weights.rank)
        for key, value in sorted((meta or {}).items()):
            _add_meta(writer, f"ownrec.{key}", value)
        for (layer, target), (A, B) in sorted(weights.pairs.items()):
            n_in, n_out = base.shapes(target)
            if A.shape != (weights.rank, n_in) or B.shape != (n_out, weights.rank):
                raise ValueError(f"layer {layer} {target}: A {A.shape} and B {B.shape} do not fit "
                                 f"({weights.rank}, {n_in}) and ({n_out}, {weights.rank})")
            name = f"blk.{layer}.{target}.weight"
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(A, dtype=np.float32))
            writer.add_tensor(f"{name}.lora_b",
                              np.ascontiguousarray(_to_gguf_rows(base, target, B, permute), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256_file(path)


def _add_meta(writer, key: str, value: Any) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_int64(key, value)
    elif isinstance(value, float):
        writer.add_float64(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        raise TypeError(f"adapter metadata {key} must be a str, int, float or bool, not {type(value).__name__}")


@dataclass(frozen=True)
class AdapterInfo:
    """What `check_adapter` found in a file that fits the base."""

    path: Path
    rank: int
    alpha: float
    base_model_id: str
    tensors: int
    metadata: dict[str, Any]

    def ownrec_meta(self) -> dict[str, Any]:
        return {k.removeprefix("ownrec."): v for k, v in self.metadata.items() if k.startswith("ownrec.")}


def read_header(path: Path) -> GGUFInfo:
    """The adapter's GGUF header; AdapterRefused if the file is no GGUF LoRA at all."""
    path = Path(path)
    try:
        info = read_gguf_info(path)
    except GGUFError as error:
        raise AdapterRefused(f"{error}") from None
    except OSError as error:
        raise AdapterRefused(f"cannot read {path} ({error.strerror})") from None
    if info.metadata.get("general.type") != "adapter" or info.metadata.get("adapter.type") != "lora":
        kind = info.metadata.get("general.type", "model")
        raise AdapterRefused(f"{path.name} is a GGUF {kind}, not a LoRA adapter")
    return info


def check_adapter(path: Path, base: BaseModel) -> AdapterInfo:
    """Everything llama.cpp will rely on, checked against `base` before it sees the file:
    architecture, the base id recorded at training, every tensor's name and shape, and that the
    tensor data is all there. Raises AdapterRefused with the specific reason."""
    path = Path(path)
    info = read_header(path)
    if info.architecture != base.architecture:
        raise AdapterRefused(f"{path.name} was made for a {info.architecture or 'unknown'} model; "
                             f"the loaded model is {base.architecture}")
    trained_on = info.metadata.get("ownrec.base.model_id")
    if not isinstance(trained_on, str):
        raise AdapterRefused(f"{path.name} does not say which base model it was trained on "
                             f"(no ownrec.base.model_id): ownrec loads only its own adapters")
    if trained_on != base.model_id:
        raise AdapterRefused(f"{path.name} was trained on {trained_on}; the loaded model is {base.model_id}")
    alpha = info.metadata.get("adapter.lora.alpha")
    if not isinstance(alpha, float) or not np.isfinite(alpha) or alpha <= 0:
        raise AdapterRefused(f"{path.name} has no valid adapter.lora.alpha ({alpha!r})")
    rank, count = _check_tensors(path, base)
    return AdapterInfo(path, rank, float(alpha), trained_on, count, dict(info.metadata))


def _gguf():
    try:
        import gguf
    except ImportError:
        raise AdapterRefused("reading LoRA adapters needs the gguf package; fix: "
                             "`.venv/bin/pip install -e '.[models]'`") from None
    return gguf


def _check_tensors(path: Path, base: BaseModel) -> tuple[int, int]:
    gguf = _gguf()

    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, OSError) as error:  # numpy raises these on a cut-off file
        raise AdapterRefused(f"{path.name} is truncated or corrupt ({error})") from None
    size = path.stat().st_size
    shapes: dict[str, tuple[int, ...]] = {}
    for tensor in reader.tensors:
        if tensor.data_offset + tensor.n_bytes > size:
            raise AdapterRefused(f"{path.name} is truncated: {tensor.name} runs past the end of the file")
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            raise AdapterRefused(f"{path.name}: {tensor.name} is {tensor.tensor_type.name}, ownrec writes F32")
        shapes[tensor.name] = tuple(int(n) for n in reversed(tensor.shape.tolist()))  # ggml ne -> numpy order
    if not shapes:
        raise AdapterRefused(f"{path.name} holds no LoRA tensors")
    ranks = set()
    for name, shape in shapes.items():
        match = _TENSOR_NAME.match(name)
        if match is None:
            raise AdapterRefused(f"{path.name}: unexpected tensor {name} (ownrec adapts only attention q, k, v, output)")
        layer, target, side = int(match[1]), match[2], match[3]
        if layer >= base.layers:
            raise AdapterRefused(f"{path.name} adapts layer {layer}; the loaded model has {base.layers} layers")
        partner = name[:-1] + ("b" if side == "a" else "a")
        if partner not in shapes:
            raise AdapterRefused(f"{path.name}: {name} has no {partner}")
        n_in, n_out = base.shapes(target)
        rank = shape[0] if side == "a" else shape[-1]
        expected = (rank, n_in) if side == "a" else (n_out, rank)
        if len(shape) != 2 or shape != expected:
            raise AdapterRefused(f"{path.name}: {name} has shape {shape}; the loaded model needs {expected} "
                                 f"(an adapter for a model of another size)")
        ranks.add(rank)
    if len(ranks) != 1 or not 1 <= min(ranks) <= MAX_RANK:
        raise AdapterRefused(f"{path.name} mixes or exceeds LoRA ranks ({sorted(ranks)})")
    return ranks.pop(), len(shapes)


def read_adapter(path: Path, base: BaseModel) -> LoraWeights:
    """The weights of a checked adapter, back in transformers' row order (the inverse of
    `write_adapter`'s permutation)."""
    gguf = _gguf()

    info = check_adapter(path, base)
    reader = gguf.GGUFReader(path)
    tensors = {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}
    pairs = {}
    for name, A in tensors.items():
        match = _TENSOR_NAME.match(name)
        if match is None or match[3] != "a":
            continue
        layer, target = int(match[1]), match[2]
        B = tensors[name[:-1] + "b"]
        pairs[(layer, target)] = (A, _from_gguf_rows(base, target, B))
    return LoraWeights(info.rank, info.alpha, pairs)


def _from_gguf_rows(base: BaseModel, target: str, B: np.ndarray) -> np.ndarray:
    if base.architecture not in ROTARY_ARCHITECTURES or target not in ("attn_q", "attn_k"):
        return B
    heads = base.heads if target == "attn_q" else base.kv_heads
    half = B.shape[0] // heads // 2
    return B.reshape(heads, half, 2, *B.shape[1:]).swapaxes(1, 2).reshape(B.shape)
