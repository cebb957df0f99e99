"""The learned parameters on top of the frozen encoder (README, "How it works").

    h_i  = x_i + B_g A_g x_i + W_v v_i + B_u A_u x_i
    s_ui = p_u . h_i + b_i

`GlobalAdapter` is phi_g (learned by the federation; identity and zero biases until then).
`PersonalAdapter` is phi_u (the user vector p_u and the personal low-rank item adapter) and never
leaves the device. Both are saved as .npz written temp-then-rename, with a sha256 recorded in the
store, so a torn or tampered file is detected and the previous version is used instead.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_bytes_atomic
from agent.core.ranker.co_liked import CoLikedTerm


class AdapterError(RuntimeError):
    pass


# Where a person's weights on the public item signals (popularity, rating, recency: ranker.model.SIGNALS)
# start, and where training pulls them back to: near the weights people's own models learn on
# MovieLens-100K, among which its validation items could not tell apart (EVALUATION.md).
DEFAULT_SIGNAL_WEIGHTS = (1.0, 0.3, 0.0)


def default_signal_weights() -> np.ndarray:
    return np.array(DEFAULT_SIGNAL_WEIGHTS, np.float32)


@dataclass
class GlobalAdapter:
    """phi_g. `item_bias` and `item_residual` are keyed by item ref (`source:external_id`):
    the federation only knows items by a shared id, never by a local row id."""

    A: np.ndarray  # (r_g, d)
    B: np.ndarray  # (d, r_g)
    item_bias: dict[str, float] = field(default_factory=dict)
    item_residual: dict[str, np.ndarray] = field(default_factory=dict)  # ref -> v_i (k,)
    W_v: np.ndarray | None = None  # (d, k)

    @classmethod
    def identity(cls, dim: int, rank: int = 16) -> "GlobalAdapter":
        return cls(A=np.zeros((rank, dim), np.float32), B=np.zeros((dim, rank), np.float32))


@dataclass
class PersonalAdapter:
    """phi_u: the user vector (the ranker's soft prompt) and the personal item-tower adapter."""

    p: np.ndarray  # (d,)
    A: np.ndarray  # (r, d), orthonormal rows, fixed
    B: np.ndarray  # (d, r), learned; starts at zero so the adapter starts as the identity
    prior: np.ndarray  # (d,): where regularisation pulls p (the onboarding taste sentence)
    model_id: str = ""  # the encoder the adapter was trained against
    trained_on: int = 0  # feedback events seen
    # w: the person's own weight on each public item signal (ranker.model.SIGNALS)
    signal_weights: np.ndarray = field(default_factory=default_signal_weights)
    # What the latest likes add through what people went on to like (`Scorer.steer`): set on the adapter a feed
    # ranks with, for that moment only; never trained, saved or shared.
    co_liked: CoLikedTerm | None = None

    @classmethod
    def fresh(cls, dim: int, rank: int, model_id: str = "", seed: int = 0) -> "PersonalAdapter":
        rng = np.random.default_rng(seed)
        # A is a fixed random projection with orthonormal rows and only B learns (as in LoRA-FA):
        # training both lets A grow while B shrinks, and then every small step of B swings B A.
        basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
        return cls(
            p=np.zeros(dim, np.float32),
            A=basis.T.astype(np.float32),
            B=np.zeros((dim, rank), np.float32),
            prior=np.zeros(dim, np.float32),
            model_id=model_id,
        )

    @property
    def dim(self) -> int:
        return int(self.p.shape[0])

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])

    def copy(self) -> "PersonalAdapter":
        return PersonalAdapter(self.p.copy(), self.A.copy(), self.B.copy(), self.prior.copy(),
                               self.model_id, self.trained_on, self.signal_weights.copy(), self.co_liked)


def _npz_bytes(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return buffer.getvalue()


def save_personal(adapter: PersonalAdapter, path: Path) -> str:
    """Write the adapter atomically; return the sha256 of the bytes written."""
    data = _npz_bytes(
        {"p": adapter.p, "A": adapter.A, "B": adapter.B, "prior": adapter.prior,
         "signal_weights": adapter.signal_weights},
        {"kind": "personal", "model_id": adapter.model_id, "trained_on": adapter.trained_on},
    )
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def load_personal(path: Path, sha256: str | None = None) -> PersonalAdapter:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise AdapterError(f"cannot read personal adapter {path}: {error.strerror}") from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise AdapterError(f"personal adapter {path} does not match its recorded checksum")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["__meta__"]).decode())
            adapter = PersonalAdapter(
                p=npz["p"].astype(np.float32), A=npz["A"].astype(np.float32),
                B=npz["B"].astype(np.float32), prior=npz["prior"].astype(np.float32),
                model_id=meta.get("model_id", ""), trained_on=int(meta.get("trained_on", 0)),
                # Adapters saved before the public signals existed start from the default weights.
                signal_weights=(npz["signal_weights"].astype(np.float32) if "signal_weights" in npz.files
                                else default_signal_weights()),
            )
    except (ValueError, KeyError, OSError) as error:
        raise AdapterError(f"personal adapter {path} is corrupt: {error}") from None
    d, r = adapter.dim, adapter.rank
    if (adapter.A.shape != (r, d) or adapter.B.shape != (d, r) or adapter.prior.shape != (d,)
            or adapter.signal_weights.shape != (len(DEFAULT_SIGNAL_WEIGHTS),)
            or not np.all(np.isfinite(adapter.signal_weights))):
        raise AdapterError(f"personal adapter {path} has inconsistent shapes")
    return adapter
