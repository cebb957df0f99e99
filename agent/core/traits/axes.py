"""Traits as axes in item space, and the math of reading and editing them.

For trait t with pole embeddings e_high and e_low, the axis is a_t = M_g (e_high - e_low),
normalised: an axis in the shared item space (M_g = I + B_g A_g, the federation's adapter). Item i
sits at position pos_it = h_i . a_t; sigma_t is the spread of those positions over the catalog.

The person's side goes through their own adapters: their scores are s_i = q . x_i with the
effective preference q = (I + A_g^T B_g^T + A_u^T B_u^T) p_u. (Reading traits through the
personal item adapter too would let it dominate: it learns to amplify the person's own direction,
and every trait would then read the same.)

Coordinate. c_t = Cov_i(s_i, pos_it) = q . w_t with w_t = Cov(x) M_g^T a_t: how the person's
scores co-vary with the trait across the catalog.

Value. v_t = sigmoid(slope_t * gap_t), with slope_t = c_t / sigma_t^2 (score units, i.e. the
ranker's log-odds of preferring one item to another, per unit of position) and gap_t the distance
between the mean positions of the catalog's top and bottom tenth on the trait: the modelled
probability that the person prefers a typical item from the catalog's top tenth on this trait to
one from its bottom tenth, other things equal. 0.5 is neutral; it is calibrated against the
catalog alone and needs no other users.

Editing. The exact dual basis (w_k . d_t = 1 if k == t else 0) would move one coordinate and leave
every other where it was, but where traits correlate across the catalog it can take a large change
of the person's scores to do so. `move_to` therefore takes the least change of scores (variance
across the catalog) that sets the target and moves the other traits' values by at most a small
tolerance on average; the exact dual basis is its limit. A naive push along a_t drags every
correlated trait along. Hiding removes a trait's component (c_t d_t) from the q used for ranking;
pinning projects training steps off w_t and restores the pinned value after each training.
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

    axes: np.ndarray  # (K, d) unit axes in the shared item space
    spread: np.ndarray  # (K,) sigma_t: std of item positions over the catalog
    gap: np.ndarray  # (K,) mean position of the catalog's top tenth minus its bottom tenth
    percentiles: np.ndarray  # (n, K) each item's percentile on each axis (for evidence)
    covariant: np.ndarray  # (K, d) w_t: coordinates are c = W q
    dual: np.ndarray  # (d, K) d_t: W @ dual = I
    text_dirs: np.ndarray  # (K, d) U: positions are X @ U^T
    position_cov: np.ndarray  # (K, K) G = U Cov(x) U^T
    to_preference: np.ndarray  # (d, d) q = to_preference @ p

    @classmethod
    def build(cls, scorer: Scorer, personal: PersonalAdapter, high: np.ndarray, low: np.ndarray) -> "TraitSpace":
        g = scorer.global_adapter
        diff = (high - low).astype(np.float64)
        axes = diff + (diff @ g.A.T) @ g.B.T  # M_g (e_high - e_low), as rows
        axes /= np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-12)
        text_dirs = axes + (axes @ g.B) @ g.A  # M_g^T a_t: positions are x_i . (M_g^T a_t)
        positions = scorer.catalog.X.astype(np.float64) @ text_dirs.T
        spread = positions.std(axis=0) if len(positions) > 1 else np.ones(len(axes))
        tenth = max(len(positions) // 10, 1)
        ordered = np.sort(positions, axis=0)
        gap = ordered[-tenth:].mean(axis=0) - ordered[:tenth].mean(axis=0) if len(positions) > 1 else spread
        covariant = text_dirs @ scorer.catalog.covariance().astype(np.float64)
        # The dual basis in the catalog's own metric: among all changes of q that move only
        # trait t, d_t changes the person's scores across the catalog the least (minimum
        # variance of the change). It lies in the span of the trait directions:
        # d_t = U^T G^-1 e_t, with G = U Cov(x) U^T the covariance of the trait positions.
        position_cov = covariant @ text_dirs.T  # G = U Cov(x) U^T: covariance of trait positions
        try:
            dual = covariant.T @ np.linalg.inv(covariant @ covariant.T)
        except np.linalg.LinAlgError:  # a person's own trait duplicates another: they share a direction
            dual = covariant.T @ np.linalg.pinv(covariant @ covariant.T)
        dim = scorer.catalog.dim
        to_preference = (np.eye(dim) + g.A.T.astype(np.float64) @ g.B.T + personal.A.T.astype(np.float64) @ personal.B.T)
        return cls(axes=axes.astype(np.float32), spread=np.maximum(spread, 1e-9).astype(np.float32),
                   gap=np.maximum(gap, 1e-9).astype(np.float32),
                   percentiles=_percentiles(positions), covariant=covariant, dual=dual, text_dirs=text_dirs,
                   position_cov=position_cov, to_preference=to_preference)

    @property
    def size(self) -> int:
        return int(self.axes.shape[0])

    def coordinates(self, p: np.ndarray) -> np.ndarray:
        return self.covariant @ (self.to_preference @ p.astype(np.float64))

    def values(self, p: np.ndarray) -> np.ndarray:
        """The 0..1 value of every trait for user vector p."""
        logits = self.coordinates(p) / self.spread ** 2 * self.gap
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def coordinate_for(self, index: int, value: float) -> float:
        return _logit(value) * float(self.spread[index]) ** 2 / float(self.gap[index])

    def _change_of_p(self, change_of_q: np.ndarray) -> np.ndarray:
        return np.linalg.solve(self.to_preference, change_of_q).astype(np.float32)

    def move_to(self, p: np.ndarray, targets: dict[int, float], tolerance: float = 0.02) -> np.ndarray:
        """The change to p that makes the given traits read the given values, moving the other
        traits' values by at most `tolerance` on average, with the least change to the person's
        scores across the catalog that allows.

        Changes of q are sought in the span of the trait directions, q += U^T G^-1 z, where z is
        the change of coordinates: z is fixed for the targets, and for the others minimises
        z^T G^-1 z (the variance of the change of scores) + lam * sum (z_k / sigma_k)^2. A large
        lam is the exact dual basis (the others do not move at all); lam = 0 is a push that
        drags correlated traits along. The smallest lam within the tolerance is used."""
        coords = self.coordinates(p)
        chosen = sorted(targets)
        others = [k for k in range(self.size) if k not in targets]
        fixed = np.array([self.coordinate_for(k, targets[k]) - coords[k] for k in chosen])
        if not others:
            return self._change_of_p(self.dual[:, chosen] @ fixed)
        before = self.values(p)[others]
        inverse = np.linalg.pinv(self.position_cov)
        penalty = np.diag(1.0 / self.spread[others].astype(np.float64) ** 2)
        scale = np.trace(inverse[np.ix_(others, others)]) / np.trace(penalty)
        for lam in [0.0, *(scale * 10.0 ** e for e in range(-2, 7))]:
            H = inverse[np.ix_(others, others)] + lam * penalty
            z = np.zeros(self.size)
            z[chosen] = fixed
            z[others] = -np.linalg.solve(H, inverse[np.ix_(others, chosen)] @ fixed)
            change_of_p = self._change_of_p(self.text_dirs.T @ (inverse @ z))
            if np.abs(self.values(p + change_of_p)[others] - before).mean() <= tolerance:
                return change_of_p
        # Past the grid: the exact dual basis, which keeps every other coordinate where it is.
        return self._change_of_p(self.dual[:, chosen] @ fixed)

    def without(self, p: np.ndarray, indices: list[int]) -> np.ndarray:
        """p with the components of the given traits removed (they read neutral)."""
        if not indices:
            return p
        return (p + self._change_of_p(-self.dual[:, indices] @ self.coordinates(p)[indices])).astype(np.float32)

    def hold_directions(self, indices: list[int]) -> np.ndarray | None:
        """Orthonormal rows spanning the directions of p that change the given traits'
        coordinates: training steps projected off them cannot change those coordinates."""
        if not indices:
            return None
        in_p = self.covariant[indices] @ self.to_preference  # rows: (to_preference^T w_t)
        q, _ = np.linalg.qr(in_p.T)
        return q.T.astype(np.float32)
