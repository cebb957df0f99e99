"""The public prior: the global part phi_g learned once from public interaction data ("release 0").

Where a catalog comes with public interactions (the demo: the public MovieLens ratings; any ratings file
in the CSV/JSONL history format), phi_g -- B_g, the item biases b_i and the item residuals v_i -- is
learned from them centrally, on the device, before the person has rated anything. The public people's
own user vectors are fitted alongside and thrown away: only what is about the items is kept. A federation
then refines this prior instead of learning from zero, and a person with sync off gets what text alone
cannot say: which items people choose, and which go together.

The model is the ranker's own (agent.core.ranker.model): s_ui = p_u . h_i + b_i + the catalog's public
signals term, with h_i = x_i + B_g A_g x_i + W_v v_i, A_g and W_v fixed (the shared layout's), trained
with BPR on every public interaction as a positive against items that person never interacted with,
with Adam over mini-batches. Plain numpy: the gradients of users and items are summed with sparse
one-hot matrices, so an epoch over 100,000 interactions takes about a second on two cores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent.core.ranker.adapters import GlobalAdapter
from agent.core.ranker.model import Catalog

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PriorSettings:
    epochs: int = 30
    negatives: int = 4          # per positive and epoch
    batch: int = 8192
    learning_rate: float = 0.01
    l2_user: float = 1e-4       # per example: pulls the public people's vectors to zero
    l2_item: float = 1e-4       # pulls biases and residuals to zero (items with few raters stay near it)
    l2_adapter: float = 1e-4
    seed: int = 0


@dataclass(frozen=True)
class PublicInteractions:
    """Who interacted with what: parallel arrays of person index (0..people-1) and catalog row."""

    person: np.ndarray  # (n,) int64
    row: np.ndarray     # (n,) int64

    @property
    def people(self) -> int:
        return int(self.person.max()) + 1 if len(self.person) else 0

    @classmethod
    def from_pairs(cls, pairs: list[tuple[object, int]]) -> "PublicInteractions":
        """From (person key, catalog row) pairs; people are numbered in order of first appearance, and
        repeated pairs count once."""
        index: dict[object, int] = {}
        seen = set()
        person, row = [], []
        for key, r in pairs:
            k = index.setdefault(key, len(index))
            if (k, int(r)) not in seen:
                seen.add((k, int(r)))
                person.append(k)
                row.append(int(r))
        return cls(np.array(person, np.int64), np.array(row, np.int64))


def _sparse(indices: np.ndarray, size: int):
    """(len(indices), size) one-hot rows as a CSR matrix: its transpose sums per-example rows per index."""
    from scipy.sparse import csr_matrix

    n = len(indices)
    return csr_matrix((np.ones(n, np.float32), (np.arange(n), indices)), shape=(n, size))


class _Adam:
    def __init__(self, shapes: list[tuple[int, ...]], learning_rate: float) -> None:
        self.first = [np.zeros(s, np.float32) for s in shapes]
        self.second = [np.zeros(s, np.float32) for s in shapes]
        self.learning_rate = learning_rate
        self.steps = 0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.steps += 1
        b1, b2 = 0.9, 0.999
        scale = self.learning_rate * np.sqrt(1 - b2 ** self.steps) / (1 - b1 ** self.steps)
        for param, grad, m, v in zip(params, grads, self.first, self.second):
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            param -= (scale * m / (np.sqrt(v) + 1e-8)).astype(np.float32)


def build_prior(catalog: Catalog, interactions: PublicInteractions, projection: np.ndarray,
                residual_basis: np.ndarray | None, settings: PriorSettings = PriorSettings(),
                signal_offset: np.ndarray | None = None, progress: Progress | None = None) -> GlobalAdapter:
    """phi_g learned from `interactions` over `catalog`: A_g is `projection` (rank, dim), W_v^T is
    `residual_basis` (k, dim) or None. `signal_offset` (n,) is a fixed per-row score term the prior learns
    around (the public signals at their default weight). Progress is reported per epoch."""
    rng = np.random.default_rng(settings.seed)
    X = catalog.X.astype(np.float32)
    n_items, dim = X.shape
    A = np.asarray(projection, np.float32)
    rank = A.shape[0]
    W = None if residual_basis is None or len(residual_basis) == 0 else np.asarray(residual_basis, np.float32).T
    k = 0 if W is None else W.shape[1]
    people = interactions.people
    P = (rng.standard_normal((people, dim)) * 0.01).astype(np.float32)
    B = np.zeros((dim, rank), np.float32)
    bias = np.zeros(n_items, np.float32)
    V = np.zeros((n_items, k), np.float32)
    offset = np.zeros(n_items, np.float32) if signal_offset is None else np.asarray(signal_offset, np.float32)
    adam = _Adam([P.shape, B.shape, bias.shape, V.shape], settings.learning_rate)
    XA = X @ A.T  # (n, rank): A_g x_i, fixed
    interacted = np.unique(interactions.person * n_items + interactions.row)
    positives = len(interactions.person)
    for epoch in range(settings.epochs):
        order = np.repeat(rng.permutation(positives), settings.negatives)
        user, win = interactions.person[order], interactions.row[order]
        lose = rng.integers(0, n_items, len(order))
        # A negative the person did interact with is drawn again (once; what is left is rare and harmless).
        clash = np.isin(user * n_items + lose, interacted, assume_unique=False)
        lose[clash] = rng.integers(0, n_items, int(clash.sum()))
        for start in range(0, len(order), settings.batch):
            u, w, l = user[start:start + settings.batch], win[start:start + settings.batch], lose[start:start + settings.batch]
            m = len(u)
            D = X[w] - X[l]
            AD = XA[w] - XA[l]
            H = D + AD @ B.T
            if k:
                H += (V[w] - V[l]) @ W.T
            Pu = P[u]
            margin = np.einsum("ij,ij->i", Pu, H) + bias[w] - bias[l] + offset[w] - offset[l]
            coef = (-0.5 * (1.0 - np.tanh(0.5 * margin)) / m).astype(np.float32)  # d mean loss / d margin
            by_user = _sparse(u, people).T
            grad_P = by_user @ (coef[:, None] * H) + settings.l2_user * P
            grad_B = (Pu * coef[:, None]).T @ AD + settings.l2_adapter * B
            grad_bias = (np.bincount(w, coef, n_items) - np.bincount(l, coef, n_items)).astype(np.float32)
            grad_bias += settings.l2_item * bias
            if k:
                per_item = (coef[:, None] * Pu) @ W  # (m, k): d loss / d v_win; minus that for v_lose
                grad_V = (_sparse(w, n_items).T @ per_item) - (_sparse(l, n_items).T @ per_item) + settings.l2_item * V
            else:
                grad_V = V
            adam.step([P, B, bias, V], [np.asarray(grad_P, np.float32), grad_B, grad_bias,
                                        np.asarray(grad_V, np.float32)])
        if progress:
            progress(epoch + 1, settings.epochs)
    adapter = GlobalAdapter(A=A.copy(), B=B, item_bias={ref: float(b) for ref, b in zip(catalog.refs, bias)})
    if k:
        adapter.W_v = W.copy()
        adapter.item_residual = {ref: V[i].copy() for i, ref in enumerate(catalog.refs) if V[i].any()}
    return adapter
