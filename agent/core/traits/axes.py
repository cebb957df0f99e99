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

Value. r_t = Corr_i(s_i, pos_it) = c_t / (sigma_t sigma_s), sigma_s the spread of the person's
scores over the catalog (with a small floor, so that with no preference yet everything reads
neutral): how much of the person's taste, across this catalog, lines up with the axis. It is
calibrated against the catalog's own items: v_t = 1/2 + sign(r_t) 0.4 F_t(|r_t|), where F_t is the
share of items whose own "taste" (a person who wants exactly that item, q = x_i - mean x) has a
smaller |correlation| with the axis; beyond the most extreme item's, the value goes on linearly
from 0.9 to 1 at |r_t| = 1. 0.5 is neutral; someone whose taste lines up with the axis better than
three quarters of the catalog's items do reads 0.8 (or 0.2), as well as the most extreme item 0.9. It needs no other users and hardly
depends on the scale of p_u (how long the model trained): someone who likes only one pole reads
near that end even with little data. How sure ownrec is, is the confidence's job. (Correlated
item positions make correlated traits: in a catalog where dark films are also tense films, the
two read alike for most people. Reading the bare direction of q instead would separate them, but
then a trait could read low while the person's feed stays dark: the reading would no longer say
what the ranker does.)

Editing. Write q = U^T gamma + q_rest, where U^T gamma lies in the span of the trait directions
and q_rest is the rest of the person's taste (it has no covariance with any trait). The traits'
correlations are r = G gamma / (sigma * sigma_s) with G = U Cov(x) U^T. For target correlations r'
(one changed, the others as they were), gamma' = G^-1 (sigma * r') * S with
S^2 = Var(q_rest) / (1 - R^2) and R^2 = (sigma r')^T G^-1 (sigma r'): the edited trait reads its
target, every other trait reads exactly what it read before, and q_rest is untouched. This is the
dual basis of the trait directions in the catalog's own metric, applied to correlations. A naive
push along a_t would drag every correlated trait along. Together the traits may explain at most
MAX_EXPLAINED of the spread of scores (or what they already explain); when holding every other
trait would break that, the others move as little as the bound allows (least squares on their
values), and a target beyond reach even then goes as far as it can. That exact edit (`move_to`) is what
pins, hiding and forgetting use; the person's own edits are bounded (next paragraph).

A bounded edit (`edit`, what `Traits.set` does). Holding every other trait exactly forces the change through the
edited trait's unique direction, the part of its axis the other axes do not explain: thin in the catalog (the
more so the more the other axes explain this one), so it takes a large weight, rewrites the feed
along idiosyncratic text (titles with grim words), and the rescaling by S above grows the spread of scores
whenever R^2 nears MAX_EXPLAINED. So the person's edit (1) keeps the variance of the taste scores as it was (the
rest of the taste gives up what the trait span takes, and takes back what it gives); (2) moves the edited trait's
correlation `step` of the way to its target with the other traits moving the cheapest way: minimising
dr^T A dr + OTHERS_WEIGHT * sum_k (dv_k/dr_k dr_k)^2, the share of the taste scores' variance the change of the
trait span rewrites plus the others' moves weighed in value, with pinned traits held exactly (where the traits
would then explain more than MAX_EXPLAINED of the taste, the free others give way, towards where they would explain
least, so that a taste the traits already explain almost wholly can still be edited); and (3) takes the
largest step in 0..1 for which the change of the total score the feed ranks by (taste, item residual and
public-signal parts, on an even sample of the catalog) has an sd of at most min(MAX_FEED_CHANGE, FEED_CHANGE *
|value asked - value now|) of that score's own sd, and that score's sd stays within a factor MAX_SPREAD_CHANGE
of what it was. Why this bound: the sd of the change over the sd of the scores is how much of the ranking an edit
rewrites, so capping it in proportion to the step asked makes a small edit replace little of the feed and an edit
of 0.3 at most about half of its top 20; and the sd of a sum is at most the sum of the sds, so the scores stay on
their scale. The trade-off: near the ends of the scale, where a step of value is a large step of correlation, an
edit stops short of its target and records (and says) the value it reached; asking again goes further.

Hiding
sets a trait neutral in the q used for ranking the same way; pinning projects training steps off
w_t and restores the pinned value after each training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.core.ranker import PersonalAdapter, Scorer

NEUTRAL = 0.5
REACHABLE = (0.01, 0.99)  # the ends are limits, not settings
# A floor under the spread of the person's scores: with little or no preference yet, values stay
# near neutral instead of jumping to an end on the first like.
SPREAD_FLOOR = 0.1
# How much of the spread of scores the traits may explain together after an edit; the rest of
# the person's taste keeps at least this share (1 - 0.95) of it.
MAX_EXPLAINED = 0.95
CALIBRATION_POINTS = 201  # quantiles of the items' |correlations| kept per trait
ITEM_RANGE = 0.8  # the share of the half-scale the catalog's items span (0.1..0.9); beyond: to 0 and 1
CALIBRATION_ITEMS = 4000  # items the calibration reads (an even sample of a larger catalog)
# How far one edit (`TraitSpace.edit`) may move the feed: the sd over the catalog of the change it makes to the
# total score the feed ranks by, as a share of that score's own sd, per unit of value asked (an edit of 0.3: 0.3),
FEED_CHANGE = 1.0
# and at most this share, however large the step asked: a bigger change is made by asking again.
MAX_FEED_CHANGE = 0.3
# The sd of the total score after an edit stays within this factor of before (either way).
MAX_SPREAD_CHANGE = 1.2
# What moving another trait's value costs an edit, against rewriting the taste scores: large holds the others
# still through the edited trait's unique (thin, idiosyncratic) direction and spends the budget on that, small
# lets correlated traits go along through the shared, broad one.
OTHERS_WEIGHT = 25.0


def _percentiles(values: np.ndarray) -> np.ndarray:
    """Column-wise percentile ranks in [0, 1] (ties share their mean rank)."""
    n = values.shape[0]
    if n < 2:
        return np.full(values.shape, NEUTRAL, np.float32)
    ranks = np.argsort(np.argsort(values, axis=0, kind="stable"), axis=0).astype(np.float32)
    return ranks / (n - 1)


def _calibration_shares() -> np.ndarray:
    """The |value - 1/2| * 2 each knot of the calibration maps to: the item quantiles spread over
    0..ITEM_RANGE, and |r| = 1 maps to 1."""
    return np.append(np.linspace(0.0, ITEM_RANGE, CALIBRATION_POINTS), 1.0)


def _calibration(X: np.ndarray, covariant: np.ndarray, spread: np.ndarray, item_cov: np.ndarray) -> np.ndarray:
    """(K, CALIBRATION_POINTS + 1) increasing |r| knots: 0, the quantiles of |r| over the catalog's
    item tastes, then 1 (see `_calibration_shares` for what each knot reads as)."""
    K = covariant.shape[0]
    if len(X) < 2:  # nothing to calibrate against: the value follows |r| alone
        return np.tile(_calibration_shares(), (K, 1))
    sample = X[np.linspace(0, len(X) - 1, min(len(X), CALIBRATION_ITEMS)).astype(np.int64)]
    tastes = sample - X.mean(axis=0)
    # the quadratic form row by row, as a matrix product: einsum's own loop is far slower here
    score_spread = np.sqrt(np.maximum(((tastes @ item_cov) * tastes).sum(axis=1), 1e-24))
    correlations = np.abs(tastes @ covariant.T) / (score_spread[:, None] * spread[None, :])
    table = np.quantile(np.clip(correlations, 0.0, 1.0), np.linspace(0.0, 1.0, CALIBRATION_POINTS), axis=0).T
    table[:, 0] = 0.0
    table = np.minimum(table, 1.0 - 1e-6)
    table = np.concatenate([table, np.ones((K, 1))], axis=1)
    # strictly increasing, so that an edit's target value maps back to one correlation
    return np.maximum.accumulate(table + np.arange(CALIBRATION_POINTS + 1) * 1e-9, axis=1)


@dataclass
class TraitSpace:
    """The trait axes for one catalog and one state of the adapters."""

    axes: np.ndarray  # (K, d) unit axes in the shared item space
    spread: np.ndarray  # (K,) sigma_t: std of item positions over the catalog
    percentiles: np.ndarray  # (n, K) each item's percentile on each axis (for evidence)
    covariant: np.ndarray  # (K, d) w_t: coordinates are c = W q
    text_dirs: np.ndarray  # (K, d) U: positions are X @ U^T
    position_cov_inverse: np.ndarray  # (K, K) G^-1, G = U Cov(x) U^T the covariance of trait positions
    item_cov: np.ndarray  # (d, d) Cov(x): the spread of scores q . x is sqrt(q Cov(x) q)
    to_preference: np.ndarray  # (d, d) q = to_preference @ p
    calibration: np.ndarray  # (K, CALIBRATION_POINTS + 1) |r| knots: 0, item-taste quantiles, 1
    scorer: Scorer | None = field(default=None, repr=False)  # what an edit's change to the feed is measured with
    personal: PersonalAdapter | None = field(default=None, repr=False)

    @classmethod
    def build(cls, scorer: Scorer, personal: PersonalAdapter, high: np.ndarray, low: np.ndarray) -> "TraitSpace":
        g = scorer.global_adapter
        diff = (high - low).astype(np.float64)
        axes = diff + (diff @ g.A.T) @ g.B.T  # M_g (e_high - e_low), as rows
        axes /= np.maximum(np.linalg.norm(axes, axis=1, keepdims=True), 1e-12)
        text_dirs = axes + (axes @ g.B) @ g.A  # M_g^T a_t: positions are x_i . (M_g^T a_t)
        positions = scorer.catalog.X.astype(np.float64) @ text_dirs.T
        spread = positions.std(axis=0) if len(positions) > 1 else np.ones(len(axes))
        covariant = text_dirs @ scorer.catalog.covariance().astype(np.float64)
        # pinv: a person's own trait may duplicate another; then the pair shares a direction
        position_cov_inverse = np.linalg.pinv(covariant @ text_dirs.T)
        dim = scorer.catalog.dim
        to_preference = (np.eye(dim) + g.A.T.astype(np.float64) @ g.B.T + personal.A.T.astype(np.float64) @ personal.B.T)
        spread = np.maximum(spread, 1e-9)
        item_cov = scorer.catalog.covariance().astype(np.float64)
        return cls(axes=axes.astype(np.float32), spread=spread.astype(np.float32),
                   percentiles=_percentiles(positions), covariant=covariant, text_dirs=text_dirs,
                   position_cov_inverse=position_cov_inverse, to_preference=to_preference, item_cov=item_cov,
                   calibration=_calibration(scorer.catalog.X.astype(np.float64), covariant, spread, item_cov),
                   scorer=scorer, personal=personal)

    @property
    def size(self) -> int:
        return int(self.axes.shape[0])

    def preference(self, p: np.ndarray) -> np.ndarray:
        return self.to_preference @ p.astype(np.float64)

    def _correlations(self, q: np.ndarray) -> np.ndarray:
        variance = max(float(q @ self.item_cov @ q), 0.0) + SPREAD_FLOOR ** 2
        return np.clip((self.covariant @ q) / (self.spread * np.sqrt(variance)), -1.0, 1.0)

    def to_values(self, correlations: np.ndarray) -> np.ndarray:
        shares = _calibration_shares()
        calibrated = np.array([np.interp(abs(r), row, shares) for r, row in zip(correlations, self.calibration)])
        return NEUTRAL + np.sign(correlations) * calibrated / 2.0

    def to_correlation(self, index: int, value: float) -> float:
        shares = _calibration_shares()
        return float(np.sign(value - NEUTRAL) * np.interp(abs(2.0 * value - 1.0), shares, self.calibration[index]))

    def values(self, p: np.ndarray) -> np.ndarray:
        """The 0..1 value of every trait for user vector p."""
        return self.to_values(self._correlations(self.preference(p))).astype(np.float32)

    def move_to(self, p: np.ndarray, targets: dict[int, float]) -> np.ndarray:
        """The change to p that makes the given traits read the given values, changes the other
        traits' values as little as the catalog allows (not at all when it allows), and leaves the
        rest of the person's taste untouched. See the module docstring."""
        q = self.preference(p)
        inverse = self.position_cov_inverse
        gamma = inverse @ (self.covariant @ q)  # q = U^T gamma + q_rest, q_rest off the trait span
        rest = q - self.text_dirs.T @ gamma
        rest_variance = max(float(rest @ self.item_cov @ rest), 0.0) + SPREAD_FLOOR ** 2
        now = self._correlations(q)
        wanted = self._closest_reachable(
            now, {i: self.to_correlation(i, float(np.clip(v, *REACHABLE))) for i, v in targets.items()}, inverse)
        y = self.spread * wanted
        scale = np.sqrt(rest_variance / (1.0 - float(y @ inverse @ y)))
        moved = self.text_dirs.T @ (inverse @ y) * scale + rest
        return np.linalg.solve(self.to_preference, moved - q).astype(np.float32)

    def edit(self, p: np.ndarray, index: int, value: float, held: dict[int, float] | None = None) -> np.ndarray:
        """The change to p for the person's own edit of trait `index` towards `value`, bounded (see the module
        docstring, "A bounded edit"): the traits in `held` (pins) read their values exactly, the taste scores keep
        their spread, and the feed's total score changes by at most the edit's budget; within it the trait goes
        as far towards `value` as it can. Needs a space built with its scorer."""
        held = held or {}
        q = self.preference(p)
        now = self._correlations(q)
        inverse = self.position_cov_inverse
        A = self.spread[:, None] * inverse * self.spread[None, :]
        gamma = inverse @ (self.covariant @ q)
        rest = q - self.text_dirs.T @ gamma
        rest_variance = max(float(rest @ self.item_cov @ rest), 0.0)
        variance = max(float(q @ self.item_cov @ q), SPREAD_FLOOR ** 2)
        scale = np.sqrt(variance + SPREAD_FLOOR ** 2)  # what correlations are measured against, kept as it is
        cap = max(MAX_EXPLAINED, 1.0 - rest_variance / variance) * variance / scale ** 2

        def with_correlations(r: np.ndarray) -> np.ndarray:
            """q with the traits reading r and the taste scores' variance kept: the rest of the taste gives up
            (or takes back) what the trait span takes (gives)."""
            span = self.text_dirs.T @ (inverse @ (self.spread * r)) * scale
            room = max(variance - scale ** 2 * float(r @ A @ r), 0.0)
            return span + (np.sqrt(room / rest_variance) * rest if rest_variance > 1e-12 else 0.0)

        value = float(np.clip(value, *REACHABLE))
        asked = abs(value - float(self.to_values(now)[index]))
        wanted = self.to_correlation(index, value)
        pins = {k: self.to_correlation(k, float(np.clip(v, *REACHABLE))) for k, v in held.items() if k != index}
        fixed = [index, *sorted(pins)]
        free = [k for k in range(self.size) if k not in fixed]
        # The others' value per correlation, so that their moves are weighed in value: here, but at least the
        # average over the catalog's items (a flat stretch of the calibration would make a move look free that
        # lands, a little further, where the value is steep).
        h = 1e-3
        slopes = (self.to_values(np.clip(now + h, -1, 1)) - self.to_values(np.clip(now - h, -1, 1))) / (2 * h)
        slopes = np.maximum(slopes, ITEM_RANGE / 2 / np.maximum(self.calibration[:, -2], 1e-6))
        carry = (np.linalg.solve(A[np.ix_(free, free)] + OTHERS_WEIGHT * np.diag(slopes[free] ** 2), A[np.ix_(free, fixed)])
                 if free else None)

        def correlations(step: float) -> np.ndarray:
            """The cheapest move (taste change plus the others' weighed moves) with trait `index` `step` of the
            way to its target and the pins where they are held."""
            r = now.copy()
            r[index] = now[index] + step * (wanted - now[index])
            for k, target in pins.items():
                r[k] = target
            if free:
                r[free] = now[free] - carry @ (r[fixed] - now[fixed])
                if float(r @ A @ r) > cap:  # the others give way, towards where they would explain least
                    least = r.copy()
                    least[free] = -np.linalg.solve(A[np.ix_(free, free)], A[np.ix_(free, fixed)] @ r[fixed])
                    low, high = 0.0, 1.0
                    for _ in range(30):
                        mid = (low + high) / 2
                        mixed = least + mid * (r - least)
                        low, high = (mid, high) if float(mixed @ A @ mixed) <= cap else (low, mid)
                    r = least + low * (r - least)
            return r

        rows = self._score_rows()
        person = self.personal.copy()
        person.p = np.asarray(p, np.float32)
        before = self.scorer.scores(person, rows)
        spread = max(float(before.std()), 1e-9)
        budget = min(MAX_FEED_CHANGE, FEED_CHANGE * asked) * spread

        def delta_at(step: float) -> np.ndarray | None:
            r = correlations(step)
            if step > 0 and float(r @ A @ r) > cap:
                return None
            delta = np.linalg.solve(self.to_preference, with_correlations(r) - q)
            person.p = (np.asarray(p, np.float64) + delta).astype(np.float32)
            after = self.scorer.scores(person, rows)
            if step > 0 and (float((after - before).std()) > budget
                             or not 1 / MAX_SPREAD_CHANGE <= float(after.std()) / spread <= MAX_SPREAD_CHANGE):
                return None
            return delta

        best = delta_at(1.0)
        if best is None:
            low, high = 0.0, 1.0
            best = delta_at(0.0)
            for _ in range(30):
                mid = (low + high) / 2
                found = delta_at(mid)
                if found is None:
                    high = mid
                else:
                    low, best = mid, found
        return best.astype(np.float32)

    def _score_rows(self) -> np.ndarray:
        """An even sample of the catalog's rows to measure a change of scores on (all of a small catalog)."""
        n = len(self.scorer.catalog)
        return np.unique(np.linspace(0, n - 1, min(n, CALIBRATION_ITEMS)).astype(np.int64))

    def _closest_reachable(self, now: np.ndarray, targets: dict[int, float], inverse: np.ndarray) -> np.ndarray:
        """Correlations with the targets set and the others as close to `now` as the constraint
        r^T A r <= cap allows (A = diag(sigma) G^-1 diag(sigma): the share of the spread of scores
        the traits explain together). If the targets alone break it, they go as far as they can."""
        A = self.spread[:, None] * inverse * self.spread[None, :]
        cap = max(MAX_EXPLAINED, float(now @ A @ now))
        fixed = sorted(targets)
        others = [k for k in range(self.size) if k not in targets]

        def with_others(r_fixed: np.ndarray, mu: float) -> np.ndarray:
            r = now.copy()
            r[fixed] = r_fixed
            if others:  # minimise |r_o - now_o|^2 + mu r^T A r over r_o
                Aoo, Aof = A[np.ix_(others, others)], A[np.ix_(others, fixed)]
                if np.isinf(mu):
                    r[others] = -np.linalg.solve(Aoo, Aof @ r_fixed)
                else:
                    r[others] = np.linalg.solve(np.eye(len(others)) + mu * Aoo, now[others] - mu * Aof @ r_fixed)
            return r

        def explained(r: np.ndarray) -> float:
            return float(r @ A @ r)

        target = np.array([targets[i] for i in fixed])
        if explained(with_others(target, np.inf)) > cap:  # unreachable even letting the others go
            low, high = 0.0, 1.0
            for _ in range(40):
                mid = (low + high) / 2
                ok = explained(with_others(now[fixed] + mid * (target - now[fixed]), np.inf)) <= cap
                low, high = (mid, high) if ok else (low, mid)
            target = now[fixed] + low * (target - now[fixed])
        if explained(with_others(target, 0.0)) <= cap:
            return with_others(target, 0.0)
        low, high = 0.0, 1.0
        while explained(with_others(target, high)) > cap and high < 1e12:
            high *= 10
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (low, mid) if explained(with_others(target, mid)) <= cap else (mid, high)
        return with_others(target, high)

    def without(self, p: np.ndarray, indices: list[int]) -> np.ndarray:
        """p with the given traits made neutral and the others unchanged."""
        if not indices:
            return p
        return (p + self.move_to(p, {index: NEUTRAL for index in indices})).astype(np.float32)

    def hold_directions(self, indices: list[int]) -> np.ndarray | None:
        """Orthonormal rows spanning the directions of p that change the given traits'
        coordinates: training steps projected off them cannot change those coordinates."""
        if not indices:
            return None
        in_p = self.covariant[indices] @ self.to_preference  # rows: to_preference^T w_t
        q, _ = np.linalg.qr(in_p.T)
        return q.T.astype(np.float32)
