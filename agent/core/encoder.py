"""Runtime text encoder: all-MiniLM-L6-v2 as a dynamically quantized int8 ONNX model.

Only numpy, onnxruntime, tokenizers and the stdlib may be imported here; torch and
friends are needed solely at preparation time (see ``agent.core.model_prep``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from agent.core.atomic import sha256_file

ENCODER_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_SEQ_LENGTH = 256
MODEL_FORMAT = "int8-onnx"
# 7-bit weights (`reduce_range` in model_prep): a pair of u8 x s8 products then cannot overflow the 16-bit
# intermediate that x86 CPUs without VNNI sum into, so they compute the same integers as CPUs with it, and the
# same vectors (with 8-bit weights an AVX2-only laptop and an AVX-512 VNNI one disagree: a feed differs by machine).
QUANTIZATION = "dynamic int8, per-channel, 7-bit weights"

# Layout of the prepared encoder inside the models dir (shared with model_prep).
ENCODER_SUBDIR = "encoder"
MODEL_FILE = "model.int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"

FIX_HINT = "run `ownrec models prepare`"


class EncoderUnavailable(RuntimeError):
    """The prepared encoder is missing, corrupt or unloadable."""

    def __init__(self, problem: str):
        super().__init__(f"{problem}; {FIX_HINT} to (re)build the text encoder")




def verify_prepared(encoder_dir: Path) -> dict:
    """Return the manifest of a prepared encoder dir, or raise EncoderUnavailable."""
    manifest_path = encoder_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise EncoderUnavailable(f"text encoder is not prepared ({manifest_path} is missing)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        dim = manifest["dim"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EncoderUnavailable(f"encoder manifest {manifest_path} is unreadable ({e})") from None
    if dim != DIM:
        raise EncoderUnavailable(f"encoder manifest {manifest_path} declares dim {dim}, expected {DIM}")
    for name in (MODEL_FILE, TOKENIZER_FILE):
        path = encoder_dir / name
        if name not in files:
            raise EncoderUnavailable(f"encoder manifest {manifest_path} has no checksum for {name}")
        if not path.is_file():
            raise EncoderUnavailable(f"encoder file {path} is missing")
        if sha256_file(path) != files[name]:
            raise EncoderUnavailable(f"encoder file {path} does not match the sha256 in {manifest_path}")
    return manifest


def _num_threads() -> int:
    raw = os.environ.get("OWNREC_THREADS")
    if raw is None:
        return os.cpu_count() or 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"OWNREC_THREADS must be a positive integer, got {raw!r}")
    return n


class Encoder:
    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, model_id: str):
        self._session = session
        self._tokenizer = tokenizer
        self._input_names = {i.name for i in session.get_inputs()}
        self.model_id = model_id
        self.dim = DIM

    @classmethod
    def load(cls, models_dir: Path) -> "Encoder":
        encoder_dir = Path(models_dir) / ENCODER_SUBDIR
        manifest = verify_prepared(encoder_dir)

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = _num_threads()
        try:
            session = ort.InferenceSession(
                str(encoder_dir / MODEL_FILE), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises assorted internal exception types
            raise EncoderUnavailable(f"onnxruntime cannot load {encoder_dir / MODEL_FILE} ({e})") from None
        try:
            tokenizer = Tokenizer.from_file(str(encoder_dir / TOKENIZER_FILE))
        except Exception as e:
            raise EncoderUnavailable(f"cannot load tokenizer {encoder_dir / TOKENIZER_FILE} ({e})") from None
        # tokenizer.json ships with fixed 128 truncation/padding; sentence-transformers
        # truncates at max_seq_length=256 and pads to the longest text in the batch.
        tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

        # Key cached embeddings to the exact weights *and* tokenizer.
        files = manifest["files"]
        digest = hashlib.sha256(f"{files[MODEL_FILE]}:{files[TOKENIZER_FILE]}".encode()).hexdigest()
        return cls(session, tokenizer, f"{ENCODER_NAME}-{MODEL_FORMAT}-{digest[:12]}")

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Embed texts as float32 (n, DIM) L2-normalized rows, in input order."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts, not a single str")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        texts = list(texts)
        total = len(texts)
        out = np.empty((total, DIM), dtype=np.float32)
        # Similar lengths in one batch means little padding; results are written back by index.
        order = sorted(range(total), key=lambda i: len(texts[i]))
        for start in range(0, total, batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
            if progress is not None:
                progress(min(start + batch_size, total), total)
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {k: v for k, v in feeds.items() if k in self._input_names}
        (hidden,) = self._session.run(["last_hidden_state"], feeds)

        # Mean pooling over real tokens, then L2 normalization (sentence-transformers' Pooling + Normalize).
        mask = feeds["attention_mask"][:, :, None].astype(np.float32)
        summed = (hidden * mask).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
