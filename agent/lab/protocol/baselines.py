"""The rows to beat: popularity and centralized BPR matrix factorization, numpy only.

- `popularity(protocol)`: each item's number of training interactions, the same for every user.
- `train_bpr(protocol, config)`: BPR-MF (Rendle et al. 2009) trained centrally on every user's
  training interactions. Score s_ui = p_u . q_i + b_i; per training interaction (u, i) one
  negative j drawn uniformly from the items u has no training interaction with; loss
  -log sigmoid(s_ui - s_uj) + reg * (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2), averaged over a
  minibatch; Adam. Every `eval_every` epochs both splits are evaluated; the result is the epoch
  with the best validation sampled HR@10 (ties: the earlier), and its test figures are the ones
  to report (PFedRec's model selection). Validation and test items are never trained on.

The defaults of `BPRConfig` (d 64) were chosen on the validation items only, with `tune_bpr`, in
two rounds (60 epochs, evaluated every 2; sampled validation HR@10 at each run's best epoch):
1. lr 0.002 / 0.005 / 0.01 x reg 0 / 0.001 / 0.01 / 0.03 (batch 1024, init 0.1): 0.656-0.691 for
   reg <= 0.01, 0.62-0.63 for reg 0.03; best lr 0.005, reg 0.01 (0.691).
2. at lr 0.005, reg 0.01: init std 0.01 / 0.1 x batch 256 / 1024 / 4096: 0.681-0.693; best init
   0.01, batch 256 (0.6925, epoch 30 of 60, so 40 epochs are enough).
The spread of round 2 is within noise (one user is 0.001 HR). With the defaults, seeds 0 / 1 / 2
give test HR@10 0.651 / 0.642 / 0.639, NDCG@10 0.372 / 0.365 / 0.360, full HR@10 0.115 / 0.135 /
0.122 (the reference run's tuned BPR-MF: 0.655 / 0.377 / 0.133), about 17 s of CPU on one core.
`QUICK_BPR` (6 epochs, batch 1024, lr 0.02: about 3 s of CPU) reaches test HR@10 0.600, for CI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from agent.lab.protocol.metrics import Evaluation, evaluate
from agent.lab.protocol.movielens import Protocol

Log = Callable[[str], None]


def popularity(protocol: Protocol) -> np.ndarray:
    """(items,) training interaction counts: the popularity baseline's score of every item."""
    return np.bincount(protocol.train_item, minlength=protocol.item_count).astype(np.float64)


def popularity_scores(protocol: Protocol) -> np.ndarray:
    """(users, items) read-only view: every user scores items by popularity."""
    return np.broadcast_to(popularity(protocol), (protocol.user_count, protocol.item_count))


@dataclass(frozen=True)
class BPRConfig:
    dim: int = 64
    epochs: int = 40
    lr: float = 0.005
    reg: float = 0.01
    batch: int = 256
    init_std: float = 0.01
    eval_every: int = 2
    seed: int = 0


QUICK_BPR = BPRConfig(epochs=6, batch=1024, lr=0.02)


@dataclass
class BPRResult:
    config: BPRConfig
    user_factors: np.ndarray  # (users, dim) at the selected epoch
    item_factors: np.ndarray  # (items, dim)
    item_bias: np.ndarray  # (items,)
    epoch: int  # the selected epoch (best validation sampled HR@10)
    evaluation: Evaluation  # both splits at that epoch: report .test
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (epoch, validation HR@10 sampled, loss)
    seconds: float = 0.0  # wall time of the whole training, evaluations included
    cpu_seconds: float = 0.0  # this process's CPU time for it (wall time swells on a busy machine)

    def scores(self) -> np.ndarray:
        """(users, items) scores of the selected model."""
        return self.user_factors @ self.item_factors.T + self.item_bias


class _LazyAdam:
    """Adam on the rows a minibatch touched only (TensorFlow's LazyAdam): the untouched rows of the
    embedding tables keep their parameters and moments, which makes a step cost O(batch), not
    O(table)."""

    def __init__(self, params: list[np.ndarray], lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, b1, b2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, updates: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """`updates[k]` = (rows, summed gradient of those rows) for parameter k (rows unique)."""
        self.t += 1
        scale = self.lr * np.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for p, m, v, (rows, g) in zip(self.params, self.m, self.v, updates):
            m_rows = m[rows]
            m_rows *= self.b1
            m_rows += (1 - self.b1) * g
            v_rows = v[rows]
            v_rows *= self.b2
            g *= g
            g *= 1 - self.b2
            v_rows += g
            m[rows], v[rows] = m_rows, v_rows
            step = np.sqrt(v_rows)
            step += self.eps
            np.divide(m_rows, step, out=step)
            step *= scale
            p[rows] -= step


def _sum_rows(index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unique rows, the sum of `values` per row): a scatter-add as one bincount (np.add.at and
    np.add.reduceat are several times slower here)."""
    rows, inverse = np.unique(index, return_inverse=True)
    values = values.reshape(len(index), -1)
    width = values.shape[1]
    flat = (inverse[:, None] * width + np.arange(width)).ravel()
    sums = np.bincount(flat, weights=values.ravel(), minlength=len(rows) * width).reshape(len(rows), width)
    return rows, sums


def _negatives(rng: np.random.Generator, users: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """One item per user drawn uniformly from the items that user has no training interaction with."""
    items = rng.integers(0, seen.shape[1], size=len(users))
    bad = np.flatnonzero(seen[users, items])
    while len(bad):
        items[bad] = rng.integers(0, seen.shape[1], size=len(bad))
        bad = bad[seen[users[bad], items[bad]]]
    return items


def train_bpr(protocol: Protocol, config: BPRConfig = BPRConfig(), log: Log | None = None) -> BPRResult:
    """Train BPR-MF on the protocol's training interactions; select the epoch by validation HR@10."""
    started, cpu_started = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(config.seed)
    n_users, n_items, d = protocol.user_count, protocol.item_count, config.dim
    P = rng.normal(0.0, config.init_std, (n_users, d))
    # the item table carries the bias as its last column (users meet it with a constant 1): one
    # gather, one scatter-add and one Adam update per step for both
    W = np.column_stack([rng.normal(0.0, config.init_std, (n_items, d)), np.zeros(n_items)])
    adam = _LazyAdam([P, W], config.lr)
    seen = protocol.train_matrix()
    users_all, items_all = protocol.train_user, protocol.train_item
    best: BPRResult | None = None
    history: list[tuple[int, float, float]] = []
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(users_all))
        negatives = _negatives(rng, users_all[order], seen)
        total = 0.0
        for start in range(0, len(order), config.batch):
            batch = order[start:start + config.batch]
            u, i, j = users_all[batch], items_all[batch], negatives[start:start + config.batch]
            pu, wi, wj = P[u], W[i], W[j]
            diff = wi - wj
            x = np.einsum("bd,bd->b", pu, diff[:, :d]) + diff[:, d]
            total += float(np.logaddexp(0.0, -x).sum())
            g = (-0.5 * (1.0 - np.tanh(0.5 * x)) / len(batch))[:, None]  # d(mean loss)/dx = -sigmoid(-x) / batch
            r = 2.0 * config.reg / len(batch)
            user_grad = g * diff[:, :d] + r * pu
            pu1 = np.column_stack([pu, np.ones(len(batch))])
            item_grad = np.concatenate([g * pu1 + r * wi, -g * pu1 + r * wj])
            adam.step([_sum_rows(u, user_grad), _sum_rows(np.concatenate([i, j]), item_grad)])
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            evaluation = evaluate(P @ W[:, :d].T + W[:, d], protocol)
            hr = evaluation.validation.hr10_sampled
            history.append((epoch, hr, total / len(order)))
            if log:
                log(f"epoch {epoch}: loss {total / len(order):.4f}, validation {evaluation.validation}")
            if best is None or hr > best.evaluation.validation.hr10_sampled:
                best = BPRResult(config, P.copy(), W[:, :d].copy(), W[:, d].copy(), epoch, evaluation)
    assert best is not None
    best.history = history
    best.seconds = time.perf_counter() - started
    best.cpu_seconds = time.process_time() - cpu_started
    return best


BPR_GRID: dict[str, tuple[float, ...]] = {"lr": (0.002, 0.005, 0.01), "reg": (0.0, 0.001, 0.01, 0.03)}


def tune_bpr(protocol: Protocol, base: BPRConfig = BPRConfig(), grid: dict[str, Iterable[float]] | None = None,
             log: Log | None = None) -> tuple[BPRResult, list[dict[str, float]]]:
    """Try every combination of `grid` (default `BPR_GRID`) over `base`; keep the run with the best
    validation sampled HR@10 (the test items are not looked at to choose). Returns it and one row
    per combination: its settings, selected epoch, validation and test figures, seconds."""
    grid = dict(BPR_GRID if grid is None else grid)
    names = list(grid)
    combos: list[dict[str, float]] = [{}]
    for name in names:
        combos = [{**c, name: v} for c in combos for v in grid[name]]
    best: BPRResult | None = None
    table = []
    for combo in combos:
        result = train_bpr(protocol, replace(base, **combo))
        row = {**combo, "epoch": result.epoch, "seconds": round(result.seconds, 1),
               "cpu_seconds": round(result.cpu_seconds, 1),
               **{f"validation_{k}": round(v, 4) for k, v in result.evaluation.validation.as_dict().items()},
               **{f"test_{k}": round(v, 4) for k, v in result.evaluation.test.as_dict().items()}}
        table.append(row)
        if log:
            log(str(row))
        if best is None or result.evaluation.validation.hr10_sampled > best.evaluation.validation.hr10_sampled:
            best = result
    assert best is not None
    return best, table


__all__ = ["BPR_GRID", "QUICK_BPR", "BPRConfig", "BPRResult", "popularity", "popularity_scores", "train_bpr",
           "tune_bpr"]
