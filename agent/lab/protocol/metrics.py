"""HR@10 and NDCG@10 of per-user scores under the leave-one-out protocol, sampled and full ranking.

Rank is 1-based. HR@10 is 1 when the held-out item ranks within the first 10; NDCG@10 with one
relevant item is 1 / log2(1 + rank) within the cutoff, else 0 (rank 1 -> 1, rank 3 -> 0.5).

Ties count against the held-out item: its rank is 1 + the number of other candidates scored at
least as high (a model that scores everything equally ranks it last, never first). A NaN score is
the lowest possible. Deterministic, no seed needed.

Scores are a (users, items) matrix (rows aligned with `users`, by default every user of the
protocol), or a function of a user row returning that user's (items,) scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.lab.protocol.movielens import SPLITS, Protocol

CUTOFF = 10

Scores = np.ndarray | Callable[[int], np.ndarray]


def hit_rate(rank: Any, cutoff: int = CUTOFF) -> Any:
    """1 if the held-out item is among the first `cutoff` (rank is 1-based), else 0. A float for
    one rank, an array for an array of ranks."""
    r = np.asarray(rank)
    out = ((r >= 1) & (r <= cutoff)).astype(np.float64)
    return float(out) if out.ndim == 0 else out


def ndcg(rank: Any, cutoff: int = CUTOFF) -> Any:
    """NDCG with one relevant item: 1 / log2(1 + rank) within the cutoff, else 0. A float for one
    rank, an array for an array of ranks."""
    r = np.asarray(rank, dtype=np.float64)
    inside = (r >= 1) & (r <= cutoff)
    out = np.where(inside, 1.0 / np.log2(1.0 + np.where(inside, r, 1.0)), 0.0)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class Metrics:
    hr10_sampled: float
    ndcg10_sampled: float
    hr10_full: float
    ndcg10_full: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return (f"sampled HR@10 {self.hr10_sampled:.4f} NDCG@10 {self.ndcg10_sampled:.4f} | "
                f"full HR@10 {self.hr10_full:.4f} NDCG@10 {self.ndcg10_full:.4f}")


@dataclass(frozen=True)
class Evaluation:
    validation: Metrics
    test: Metrics

    def split(self, name: str) -> Metrics:
        return {"validation": self.validation, "test": self.test}[name]


def _clean(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(np.isnan(scores), -np.inf, scores) if np.isnan(scores).any() else scores


def rank_among(scores: np.ndarray, targets: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target item among its candidates, ties against the target.

    `scores` (n, items); `targets` (n,) item rows; `candidates` either (n, items) bool (a mask,
    True where an item is a candidate) or (n, k) item rows. The target counts as a candidate
    whether listed or not, and is never counted twice."""
    scores = _clean(scores)
    rows = np.arange(len(targets))
    target_score = scores[rows, targets][:, None]
    candidates = np.asarray(candidates)
    if candidates.dtype == bool:
        above = (scores >= target_score) & candidates
        above[rows, targets] = False
    else:
        above = (scores[rows[:, None], candidates] >= target_score) & (candidates != targets[:, None])
    return 1 + above.sum(axis=1)


def score_matrix(scores: Scores, users: np.ndarray, item_count: int) -> np.ndarray:
    """The (len(users), items) matrix of `scores` (called once per user if it is a function)."""
    if callable(scores):
        matrix = np.empty((len(users), item_count), dtype=np.float64)
        for k, u in enumerate(users.tolist()):
            matrix[k] = scores(int(u))
        return matrix
    matrix = np.asarray(scores)
    if matrix.shape != (len(users), item_count):
        raise ValueError(f"scores are {matrix.shape}, expected {(len(users), item_count)} (users, items)")
    return matrix


def held_out_ranks(scores: Scores, protocol: Protocol, split: str,
                   users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per user (rows `users`, default all): the held-out item's (sampled rank, full rank)."""
    users = np.arange(protocol.user_count) if users is None else np.asarray(users, dtype=np.int64)
    matrix = score_matrix(scores, users, protocol.item_count)
    targets = protocol.target(split)[users]
    sampled = rank_among(matrix, targets, protocol.negatives(split)[users])
    full = rank_among(matrix, targets, protocol.full_candidates(split)[users])
    return sampled, full


def metrics_of(sampled_ranks: np.ndarray, full_ranks: np.ndarray, cutoff: int = CUTOFF) -> Metrics:
    return Metrics(float(np.mean(hit_rate(sampled_ranks, cutoff))), float(np.mean(ndcg(sampled_ranks, cutoff))),
                   float(np.mean(hit_rate(full_ranks, cutoff))), float(np.mean(ndcg(full_ranks, cutoff))))


def evaluate_split(scores: Scores, protocol: Protocol, split: str, users: np.ndarray | None = None) -> Metrics:
    """HR@10 / NDCG@10, sampled and full, of `split` ("validation" or "test")."""
    return metrics_of(*held_out_ranks(scores, protocol, split, users))


def evaluate(scores: Scores, protocol: Protocol, users: np.ndarray | None = None) -> Evaluation:
    """Both splits from one set of scores (a function is called once per user, not twice)."""
    users = np.arange(protocol.user_count) if users is None else np.asarray(users, dtype=np.int64)
    matrix = score_matrix(scores, users, protocol.item_count)
    return Evaluation(*(evaluate_split(matrix, protocol, split, users) for split in SPLITS))


__all__ = ["CUTOFF", "Evaluation", "Metrics", "evaluate", "evaluate_split", "held_out_ranks", "hit_rate",
           "metrics_of", "ndcg", "rank_among", "score_matrix"]
