"""Scoring: the whole catalog in one matrix-vector product.

s_i = p . (x_i + B_g A_g x_i + B_u A_u x_i + W_v v_i) + b_i + w . f_i is linear in x_i, so the adapters
fold into one effective query q = p + A_g^T B_g^T p + A_u^T B_u^T p and the catalog is scored as
X q (+ V W_v^T p + b + F w). That is what keeps 100,000 items within a few milliseconds.

f_i are the item's public signals (how many people rated it, its average public rating, when it came
out; `signal_features`), catalog data that is not the person's; w is the person's own weight on them
(`PersonalAdapter.signal_weights`), which starts at DEFAULT_SIGNAL_WEIGHTS and is learned from their
feedback like p: someone who keeps liking obscure films learns a smaller weight on popularity.

The person's latest likes steer the feed on top of their long-term taste: at scoring time the user
vector is u = p + RECENT_WEIGHT * a recency-weighted mean of h_j over the RECENT_ITEMS latest liked
items (as the person's model sees them, h_j; the newest weighs 1, each older one RECENT_DECAY times
the one after it), so s_ui = u . h_i + b_i. It is computed on the device from the
person's own history at the moment of scoring: nothing is trained or shared for it, and the traits
keep reading p alone. Why: what someone picks next follows what they picked last (on MovieLens-100K,
time-ordered, the next film is far likelier to be near the last few than near the whole history).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.core.ranker.adapters import GlobalAdapter, PersonalAdapter
from agent.core.ranker.co_liked import CO_LIKED_WEIGHT, CoLiked

# How the latest likes steer the feed (`Scorer.steer`): chosen on MovieLens-100K's validation items only,
# never the test items (EVALUATION.md, "The latest likes", has the sweep and its figures).
RECENT_ITEMS = 4
RECENT_WEIGHT = 1.5
RECENT_DECAY = 0.6

# The public item signals, in the order of `Catalog.signals` and `PersonalAdapter.signal_weights`.
SIGNALS = ("popularity", "rating", "recency")
# The most rows whose scores' spread scales what people went on to like (`Scorer.steer`): a fixed sample keeps
# a feed's cost flat in the catalog's size.
SPREAD_SAMPLE = 4096
# A public average rating counts as this many ratings of the catalog's mean before its own (a film rated
# 5 stars by two people is not better known than one rated 4.2 by two hundred).
RATING_SHRINKAGE = 10.0


def signal_features(popularity: np.ndarray, avg_rating: np.ndarray, published: np.ndarray) -> np.ndarray:
    """(n, 3) standardized public signals from raw per-item values (NaN where a source has none):
    log(1 + number of ratings or readers), the average public rating (stars, shrunk towards the catalog's
    mean by RATING_SHRINKAGE pseudo-ratings where the count is known), and the publication time. Each
    column is z-scored over the items that have it; an item without it reads 0, the catalog's average, and
    a column no item has is all 0 (it then does nothing)."""
    popularity = np.asarray(popularity, np.float64)
    rating = np.asarray(avg_rating, np.float64).copy()
    known = np.isfinite(rating)
    if known.any():
        mean = float(rating[known].mean())
        count = np.where(np.isfinite(popularity), np.maximum(popularity, 0.0), np.nan)
        shrink = known & np.isfinite(count)
        rating[shrink] = (count[shrink] * rating[shrink] + RATING_SHRINKAGE * mean) / (count[shrink] + RATING_SHRINKAGE)
    columns = [np.log1p(np.maximum(popularity, 0.0)), rating, np.asarray(published, np.float64)]
    features = np.zeros((len(popularity), len(SIGNALS)), np.float32)
    for j, column in enumerate(columns):
        have = np.isfinite(column)
        if have.sum() >= 2:
            values = column[have]
            spread = float(values.std())
            if spread > 0:
                features[have, j] = ((values - values.mean()) / spread).astype(np.float32)
    return features


@dataclass
class Catalog:
    """The encoded catalog: item ids, their refs, their (normalised) text embeddings, their public
    signals (`signal_features`; zeros where the catalog has none) and, where public interactions were read,
    what people went on to like after each item (`co_liked`)."""

    ids: np.ndarray  # (n,) int64 local item ids
    refs: list[str]  # (n,) `source:external_id`, the key the federation knows items by
    X: np.ndarray  # (n, d) float32
    signals: np.ndarray = field(default=None)  # (n, len(SIGNALS)) float32
    co_liked: CoLiked | None = None

    def __post_init__(self) -> None:
        if self.signals is None:
            self.signals = np.zeros((len(self.ids), len(SIGNALS)), np.float32)
        self.signals = np.asarray(self.signals, np.float32)
        if self.signals.shape != (len(self.ids), len(SIGNALS)):
            raise ValueError(f"signals must be ({len(self.ids)}, {len(SIGNALS)}), not {self.signals.shape}")
        self._row = {int(item_id): row for row, item_id in enumerate(self.ids)}
        self._ref_row: dict[str, int] | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    def rows(self, item_ids) -> np.ndarray:
        """Row indices of the given item ids (ids not in the catalog are dropped)."""
        return np.array([self._row[int(i)] for i in item_ids if int(i) in self._row], dtype=np.int64)

    def row(self, item_id: int) -> int | None:
        return self._row.get(int(item_id))

    def row_of_ref(self, ref: str) -> int | None:
        """The row of the item whose ref is `ref` (`source:external_id`), if the catalog has it."""
        if self._ref_row is None:
            self._ref_row = {ref: row for row, ref in enumerate(self.refs)}
        return self._ref_row.get(ref)

    def covariance(self) -> np.ndarray:
        """Covariance of the text embeddings over the catalog (computed once per catalog)."""
        if getattr(self, "_covariance", None) is None and len(self) < 2:
            self._covariance = np.zeros((self.dim, self.dim), np.float32)
        if getattr(self, "_covariance", None) is None:
            centred = self.X - self.X.mean(axis=0)
            self._covariance = (centred.T @ centred / max(len(self) - 1, 1)).astype(np.float32)
        return self._covariance

    def spread_rows(self) -> np.ndarray:
        """At most SPREAD_SAMPLE rows spread evenly over the catalog (all of a smaller one)."""
        return np.unique(np.linspace(0, len(self) - 1, min(len(self), SPREAD_SAMPLE)).astype(np.int64))

    @property
    def has_signals(self) -> bool:
        return bool(self.signals.any())

    @classmethod
    def empty(cls, dim: int) -> "Catalog":
        return cls(np.zeros(0, np.int64), [], np.zeros((0, dim), np.float32))


class Scorer:
    """Binds a catalog to the global adapter: precomputes the per-item global terms once."""

    def __init__(self, catalog: Catalog, global_adapter: GlobalAdapter) -> None:
        self.catalog = catalog
        self.global_adapter = global_adapter
        n = len(catalog)
        self.bias = np.zeros(n, np.float32)
        self.residual: np.ndarray | None = None
        self._means: tuple | None = None  # the catalog's column means, for `average_parts`
        if global_adapter.item_bias:
            for row, ref in enumerate(catalog.refs):
                self.bias[row] = global_adapter.item_bias.get(ref, 0.0)
        if global_adapter.item_residual and global_adapter.W_v is not None:
            k = global_adapter.W_v.shape[1]
            self.residual = np.zeros((n, k), np.float32)
            for row, ref in enumerate(catalog.refs):
                v = global_adapter.item_residual.get(ref)
                if v is not None:
                    self.residual[row] = v

    def effective_query(self, personal: PersonalAdapter, vector: np.ndarray | None = None) -> np.ndarray:
        """(I + A_g^T B_g^T + A_u^T B_u^T) applied to a user-side vector (p_u by default)."""
        g = self.global_adapter
        v = personal.p if vector is None else vector
        return (v + g.A.T @ (g.B.T @ v) + personal.A.T @ (personal.B.T @ v)).astype(np.float32)

    def steer(self, personal: PersonalAdapter, recent_rows: np.ndarray | None) -> PersonalAdapter:
        """The adapter the feed ranks with: p replaced by u = p + RECENT_WEIGHT * sum_j w_j h_j over the
        last RECENT_ITEMS of `recent_rows` (catalog rows of the person's liked items, oldest first), w_j
        proportional to RECENT_DECAY ** (how many likes came after j) and summing to 1; and, where the
        catalog knows what people went on to like (`co_liked`), that term for the last CO_LIKED_ITEMS of
        them, scaled to CO_LIKED_WEIGHT of the spread of the steered scores. The adapter itself without them."""
        if recent_rows is None or len(recent_rows) == 0:
            return personal
        recent = np.asarray(recent_rows, np.int64)
        latest = recent[-RECENT_ITEMS:]
        weights = RECENT_DECAY ** np.arange(len(latest) - 1, -1, -1, dtype=np.float64)
        context = (weights / weights.sum()) @ self.item_vectors(personal, latest)
        steered = personal.copy()
        steered.p = (personal.p + RECENT_WEIGHT * context).astype(np.float32)
        steered.co_liked = None
        if self.catalog.co_liked is not None:
            term = self.catalog.co_liked.term(recent)
            spread = float(term.values.std())
            own = float(self.scores(steered, self.catalog.spread_rows()).std()) if spread > 0 else 0.0
            if own > 0:
                steered.co_liked = term.scaled(CO_LIKED_WEIGHT * own / spread)
        return steered

    def scores(self, personal: PersonalAdapter, rows: np.ndarray | None = None,
               query: np.ndarray | None = None, query_weight: float = 0.0) -> np.ndarray:
        """s_ui for every catalog row (or the given rows); a chat query adds query_weight * q.h_i."""
        q = self.effective_query(personal)
        if query is not None and query_weight:
            q = q + query_weight * self.effective_query(personal, np.asarray(query, np.float32))
        X = self.catalog.X if rows is None else self.catalog.X[rows]
        s = X @ q
        s += self.bias if rows is None else self.bias[rows]
        if self.catalog.has_signals:
            s += (self.catalog.signals if rows is None else self.catalog.signals[rows]) @ personal.signal_weights
        if self.residual is not None:
            R = self.residual if rows is None else self.residual[rows]
            s += R @ (self.global_adapter.W_v.T @ personal.p)
        if personal.co_liked is not None:
            s += personal.co_liked.values if rows is None else personal.co_liked.values[rows]
        return s

    def parts(self, personal: PersonalAdapter, rows: np.ndarray, query: np.ndarray | None = None,
              query_weight: float = 0.0) -> dict[str, np.ndarray]:
        """The terms `scores` adds up for the given rows, apart (PARTS; "query" only with a query): they sum
        to `scores(personal, rows, query, query_weight)`."""
        rows = np.asarray(rows, np.int64)
        X = self.catalog.X[rows]
        out = {"taste": X @ self.effective_query(personal)}
        if query is not None and query_weight:
            out["query"] = query_weight * (X @ self.effective_query(personal, np.asarray(query, np.float32)))
        out["liked_widely"] = self.bias[rows].astype(np.float32)
        out["people_like_you"] = (self.residual[rows] @ (self.global_adapter.W_v.T @ personal.p)
                                  if self.residual is not None else np.zeros(len(rows), np.float32))
        for j, name in enumerate(SIGNALS):
            out[name] = self.catalog.signals[rows, j] * personal.signal_weights[j]
        out["co_liked"] = (personal.co_liked.values[rows] if personal.co_liked is not None
                           else np.zeros(len(rows), np.float32))
        return out

    def average_parts(self, personal: PersonalAdapter, query: np.ndarray | None = None,
                      query_weight: float = 0.0) -> dict[str, float]:
        """Each of `parts` for the catalog's average item (the mean of every row's), from the catalog's column
        means (computed once per scorer): what an explanation measures an item's parts against."""
        if self._means is None:
            catalog = self.catalog
            empty = len(catalog) == 0
            self._means = (np.zeros(catalog.dim, np.float32) if empty else catalog.X.mean(axis=0),
                           0.0 if empty else float(self.bias.mean()),
                           None if self.residual is None or empty else self.residual.mean(axis=0),
                           np.zeros(len(SIGNALS), np.float32) if empty else catalog.signals.mean(axis=0))
        x, bias, residual, signals = self._means
        out = {"taste": float(x @ self.effective_query(personal))}
        if query is not None and query_weight:
            out["query"] = float(query_weight * (x @ self.effective_query(personal, np.asarray(query, np.float32))))
        out["liked_widely"] = bias
        out["people_like_you"] = 0.0 if residual is None else float(residual @ (self.global_adapter.W_v.T @ personal.p))
        for j, name in enumerate(SIGNALS):
            out[name] = float(signals[j] * personal.signal_weights[j])
        out["co_liked"] = 0.0 if personal.co_liked is None or len(self.catalog) == 0 else float(personal.co_liked.values.mean())
        return out

    def item_vectors(self, personal: PersonalAdapter, rows: np.ndarray) -> np.ndarray:
        """h_i for the given rows: the items as this person's model sees them."""
        g = self.global_adapter
        X = self.catalog.X[rows]
        H = X + (X @ g.A.T) @ g.B.T + (X @ personal.A.T) @ personal.B.T
        if self.residual is not None:
            H = H + self.residual[rows] @ g.W_v.T
        return H.astype(np.float32)
