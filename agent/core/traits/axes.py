"""Traits as axes in the person's own item space, and the math of reading and editing them.

For trait t with pole embeddings e_high and e_low, the axis is a_t = M'(e_high - e_low),
normalised; M' = I + B_g A_g + B_u A_u, so the axis goes through the current adapters the way
items do. Item i sits at position pos_it = h_i . a_t; sigma_t is the spread of those positions
over the catalog.

Coordinate. c_t = Cov_i(s_i, pos_it) = p . w_t with w_t = Cov(h) a_t: how the person's scores
s_i = p . h_i co-vary with the trait across the catalog. beta_t = c_t / sigma_t is how many
score units (log-odds of preferring one item to another, the ranker's own scale) the person
gives per standard deviation of the trait.

Value. v_t = sigmoid(2 beta_t): the modelled probability that the person prefers an item one
standard deviation above the catalog's average on the trait to one a standard deviation below,
other things equal. 0.5 is neutral; it is calibrated against the catalog through sigma_t and
Cov(h), and needs no other users.

Editing with the dual basis. The d_t with w_k . d_t = 1 if k == t else 0 move one coordinate and
leave every other exactly where it was; a naive push along a_t would drag every correlated trait
with it. Setting a value moves p by (c_t* - c_t) d_t; hiding removes c_t d_t from the p used for
ranking; pinning projects training steps off w_t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.core.ranker import PersonalAdapter, Scorer

NEUTRAL = 0.5
REACHABLE = (0.01, 0.99)  # values are probabilities: the ends are limits, not settings


def _percentiles(values: np.ndarray) -> np.ndarray:
    """Column-wise percentile ranks in [0, 1] (ties share their mean rank)."""
    n = values.shape[0]
    if n < 2:
        return np.full(values.shape, NEUTRAL, np.float32)
    ranks = np.argsort(np.argsort(values, axis=0, kind="stable"), axis=0).astype(np.float32)
    return ranks / (n - 1)


def _logit(value: float) -> float:
    value = float(np.clip(value, *REACHABLE))
    return float(np.log(value / (1.0 - value)))


@dataclass
class TraitSpace:
    """The trait axes for one catalog and one state of the adapters."""

    axes: np.ndarray  # (K, d) unit axes in item space
    spread: np.ndarray  # (K,) sigma_t: std of item positions over the catalog
    percentiles: np.ndarray  # (n, K) each item's percentile on each axis (for evidence)
    covariant: np.ndarray  # (K, d) w_t: coordinates are c = W p
    dual: np.ndarray  # (d, K) d_t: W @ dual = I (on the span of the w's)

    @classmethod
    def build(cls, scorer: Scorer, personal: PersonalAdapter, high: np.ndarray, low: np.ndarray) -> "TraitSpace":
        axes = scorer.to_item_space(personal, high - low)
        axes /= np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-12)
        positions = scorer.projections(personal, axes)
        spread = positions.std(axis=0) if len(positions) > 1 else np.ones(len(axes), np.float32)
        covariant = axes @ scorer.item_covariance(personal)  # Cov(h) is symmetric
        # pinv: a person's own trait may duplicate another; then the pair shares a direction
        dual = covariant.T @ np.linalg.pinv(covariant @ covariant.T, rcond=1e-6)
        return cls(axes.astype(np.float32), np.maximum(spread, 1e-9).astype(np.float32), _percentiles(positions),
                   covariant.astype(np.float32), dual.astype(np.float32))

    @property
    def size(self) -> int:
        return int(self.axes.shape[0])

    def coordinates(self, p: np.ndarray) -> np.ndarray:
        return self.covariant @ p

    def values(self, p: np.ndarray) -> np.ndarray:
        """The 0..1 value of every trait for user vector p."""
        beta = self.coordinates(p) / self.spread
        return (1.0 / (1.0 + np.exp(-2.0 * beta))).astype(np.float32)

    def coordinate_for(self, index: int, value: float) -> float:
        return _logit(value) / 2.0 * float(self.spread[index])

    def move_to(self, p: np.ndarray, targets: dict[int, float]) -> np.ndarray:
        """The change to p that makes the given traits read the given values and leaves the
        coordinates of every other trait unchanged."""
        coords = self.coordinates(p)
        delta = np.zeros_like(p, dtype=np.float32)
        for index, value in targets.items():
            delta += (self.coordinate_for(index, value) - coords[index]) * self.dual[:, index]
        return delta

    def without(self, p: np.ndarray, indices: list[int]) -> np.ndarray:
        """p with the components of the given traits removed (they read neutral)."""
        if not indices:
            return p
        return (p - self.dual[:, indices] @ self.coordinates(p)[indices]).astype(np.float32)

    def hold_directions(self, indices: list[int]) -> np.ndarray | None:
        """Orthonormal rows spanning the w's of the given traits: training steps projected off
        them cannot change those traits' coordinates."""
        if not indices:
            return None
        q, _ = np.linalg.qr(self.covariant[indices].T.astype(np.float64))
        return q.T.astype(np.float32)
