"""From scores to a slate: exclude what was rated, diversify with MMR, reserve a small share
for exploration, and say why each item is there (`explain`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.core.ranker.adapters import PersonalAdapter
from agent.core.ranker.explain import Explanation, explain
from agent.core.ranker.model import Scorer


@dataclass(frozen=True)
class SlateEntry:
    row: int  # catalog row
    score: float  # s_ui (plus the query term, if any)
    exploring: bool  # chosen to learn about the person, not because it scored highest
    explanation: Explanation  # why it is there

    @property
    def because_row(self) -> int | None:
        """The liked item its reason names, if it names one."""
        return self.explanation.because_row


def _normalise(values: np.ndarray) -> np.ndarray:
    span = float(values.max() - values.min()) if len(values) else 0.0
    return (values - values.min()) / span if span > 1e-12 else np.zeros_like(values)


def _unit_rows(H: np.ndarray) -> np.ndarray:
    return H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-12)


def mmr(scores: np.ndarray, vectors: np.ndarray, size: int, diversity: float) -> list[int]:
    """Maximal marginal relevance: greedily take the candidate with the best
    (1 - diversity) * relevance - diversity * (max similarity to what is already taken).
    Returns positions into `scores`."""
    if len(scores) == 0:
        return []
    relevance = _normalise(scores.astype(np.float64))
    unit = _unit_rows(vectors.astype(np.float64))
    chosen: list[int] = []
    closest = np.full(len(scores), -np.inf)  # max similarity to the chosen set so far
    available = np.ones(len(scores), bool)
    for _ in range(min(size, len(scores))):
        redundancy = np.where(np.isfinite(closest), closest, 0.0)
        value = (1 - diversity) * relevance - diversity * redundancy
        value[~available] = -np.inf
        pick = int(np.argmax(value))
        chosen.append(pick)
        available[pick] = False
        closest = np.maximum(closest, unit @ unit[pick])
    return chosen


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, best first, without sorting everything."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, np.int64)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return top[np.argsort(-scores[top], kind="stable")]


def build_slate(scorer: Scorer, personal: PersonalAdapter, size: int, exclude_rows: np.ndarray,
                liked_rows: np.ndarray, diversity: float, exploration: float, seed: int,
                query: np.ndarray | None = None, query_weight: float = 0.0) -> list[SlateEntry]:
    # Score everything, then mask: cheaper than copying the allowed rows out of X.
    scores = scorer.scores(personal, query=query, query_weight=query_weight)
    scores[exclude_rows] = -np.inf
    available = int(np.isfinite(scores).sum())
    if available == 0 or size <= 0:
        return []
    # The MMR pool: the best few times the slate size; the score alone decides who gets in.
    # Below it, a band to draw exploration from (kept even in small catalogs).
    wanted_explore = int(round(exploration * min(size, available)))
    pool_size = max(min(available - wanted_explore, max(5 * size, 100)), min(size, available) - wanted_explore)
    band_size = min(available - pool_size, 20 * size)
    ranked = _top(scores, pool_size + band_size)
    pool, band = ranked[:pool_size], ranked[pool_size:]
    n_explore = min(wanted_explore, len(band))
    picks = [int(pool[i]) for i in mmr(scores[pool], scorer.item_vectors(personal, pool), size - n_explore, diversity)]

    explore: list[int] = []
    if n_explore:
        # Exploration draws from the next band down, favouring items unlike anything liked:
        # that is where one answer teaches the model the most.
        rng = np.random.default_rng(seed)
        H_band = _unit_rows(scorer.item_vectors(personal, band))
        if len(liked_rows):
            novelty = 1.0 - (H_band @ _unit_rows(scorer.item_vectors(personal, liked_rows)).T).max(axis=1)
        else:
            novelty = np.ones(len(band))
        weights = np.maximum(novelty, 1e-6)
        explore = [int(r) for r in rng.choice(band, size=n_explore, replace=False, p=weights / weights.sum())]

    # Exploration slots are spread through the slate rather than piled at the end.
    slate: list[tuple[int, bool]] = [(row, False) for row in picks]
    for k, row in enumerate(explore):
        at = min(len(slate), (k + 1) * max(size // (len(explore) + 1), 1))
        slate.insert(at, (row, True))

    rows = np.array([row for row, _ in slate], np.int64)
    explanations = explain(scorer, personal, rows, [e for _, e in slate], liked_rows, query, query_weight)
    return [SlateEntry(int(row), float(scores[row]), exploring, explanations[i])
            for i, (row, exploring) in enumerate(slate)]
