"""The client's side of the shared parameter vector: the ranker's global adapter to and from the vector a
layout (agent.federation.layout) describes, and how one person's device trains it.

What the vector holds and in what order (A_g, W_v, the item vocabulary; B_g, then the item biases, then
the residuals) is the layout's, documented once in agent.federation.layout. Here `flatten` and `unflatten`
map it onto the ranker's `GlobalAdapter`: h_i = x_i + B_g A_g x_i + W_v v_i (+ the personal adapter) and
s_ui = p_u . h_i + b_i. Items outside the vocabulary keep bias 0 and no residual.

Local training (`train_global_delta`): a few epochs of the ranker's weighted BPR (the same pairs as
`ranker.training`) with the personal part phi_u fixed, plain gradient steps on B_g, the item biases and
the residuals. Delta = phi_g_local - phi_g_global is what the client then clips, noises and masks. Plain
SGD, not Adam: Adam would restart every round, and its first steps move every touched parameter by about
the learning rate whatever its gradient (a sign), so the cohort average of the deltas carries little
more than noise. The rate was chosen on MovieLens validation items with the personal part refitted
between rounds, as `ownrec eval` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.core.ranker.adapters import GlobalAdapter, PersonalAdapter
from agent.core.ranker.model import Catalog, Scorer
from agent.core.ranker.training import sample_pairs
from agent.federation.errors import ConfigurationError
from agent.federation.layout import SharedLayout


def flatten(layout: SharedLayout, adapter: GlobalAdapter) -> np.ndarray:
    """The shared vector of `adapter` (float64) in `layout`'s order."""
    if adapter.B.shape != (layout.dim, layout.rank):
        raise ConfigurationError(f"B_g is {adapter.B.shape}, the layout needs {(layout.dim, layout.rank)}")
    biases = np.array([adapter.item_bias.get(ref, 0.0) for ref in layout.refs], dtype=np.float64)
    k = layout.residual_rank
    residuals = np.zeros((len(layout.refs), k), np.float64)
    if k:
        if adapter.W_v is not None and adapter.W_v.shape != (layout.dim, k):
            raise ConfigurationError(f"W_v is {adapter.W_v.shape}, the layout needs {(layout.dim, k)}")
        for i, ref in enumerate(layout.refs):
            if ref in adapter.item_residual:
                residuals[i] = adapter.item_residual[ref]
    return np.concatenate([np.asarray(adapter.B, dtype=np.float64).reshape(-1), biases, residuals.reshape(-1)])


def unflatten(layout: SharedLayout, vector: np.ndarray) -> GlobalAdapter:
    """The global adapter `vector` describes (A_g and W_v from the layout)."""
    values = np.asarray(vector, dtype=np.float64).reshape(-1)
    if values.size != layout.size:
        raise ConfigurationError(f"a shared vector of this layout has {layout.size} values, not {values.size}")
    if not np.all(np.isfinite(values)):
        raise ConfigurationError("the shared vector holds NaN or infinite values")
    bias_start, residual_start = layout.split_points()
    adapter = GlobalAdapter(A=layout.projection.copy(),
                            B=values[:bias_start].reshape(layout.dim, layout.rank).astype(np.float32),
                            item_bias={ref: float(b) for ref, b in zip(layout.refs, values[bias_start:residual_start])
                                       if b != 0.0})
    k = layout.residual_rank
    if k:
        residuals = values[residual_start:].reshape(len(layout.refs), k).astype(np.float32)
        adapter.W_v = layout.residual_basis.T.copy()
        adapter.item_residual = {ref: residuals[i] for i, ref in enumerate(layout.refs) if residuals[i].any()}
    return adapter


@dataclass(frozen=True)
class GlobalTrainingSettings:
    epochs: int = 5
    learning_rate: float = 80.0  # the BPR loss is a mean over pairs: one item's gradient is ~1/pairs
    negatives_per_item: int = 8
    seed: int = 0


def train_global_delta(layout: SharedLayout, shared: np.ndarray, personal: PersonalAdapter, catalog: Catalog,
                       labels: dict[int, float], settings: GlobalTrainingSettings = GlobalTrainingSettings()
                       ) -> np.ndarray:
    """Delta = phi_g_local - phi_g_global after `settings.epochs` gradient steps of weighted BPR on B_g and
    the vocabulary's item biases and residuals, with the personal adapter fixed. Zero when there is
    nothing to learn."""
    if catalog.dim != layout.dim or personal.dim != layout.dim:
        raise ConfigurationError(f"the catalog ({catalog.dim}-d) and personal adapter ({personal.dim}-d) must match "
                                 f"the shared layout ({layout.dim}-d)")
    start = np.asarray(shared, dtype=np.float64).reshape(-1)
    global_adapter = unflatten(layout, start)
    scorer = Scorer(catalog, global_adapter)
    vocabulary_row = np.array([-1 if (i := layout.index_of(ref)) is None else i for ref in catalog.refs], np.int64)
    bias_start, residual_start = layout.split_points()
    k = layout.residual_rank
    A = layout.projection.astype(np.float64)
    p = personal.p.astype(np.float64)
    personal_term = (personal.A.T.astype(np.float64) @ (personal.B.T.astype(np.float64) @ p))  # A_u^T B_u^T p
    residual_query = layout.residual_basis.astype(np.float64) @ p  # W_v^T p: what a residual adds per unit
    # The public signals' term is part of every score the device makes, so the global part learns around it
    # (as release 0 does) instead of learning popularity into the item biases a second time.
    signal_term = (catalog.signals.astype(np.float64) @ personal.signal_weights.astype(np.float64)
                   if catalog.has_signals else np.zeros(len(catalog)))
    B = start[:bias_start].reshape(layout.dim, layout.rank).copy()
    bias = start[bias_start:residual_start].copy()
    V = start[residual_start:].reshape(len(layout.refs), k).copy()
    rng = np.random.default_rng(settings.seed)
    for _ in range(settings.epochs):
        pairs = sample_pairs(labels, scorer, rng, settings.negatives_per_item)
        if len(pairs.win) == 0:
            break
        D = catalog.X[pairs.win].astype(np.float64) - catalog.X[pairs.lose].astype(np.float64)
        AD = D @ A.T
        win_slot, lose_slot = vocabulary_row[pairs.win], vocabulary_row[pairs.lose]
        win_known, lose_known = win_slot >= 0, lose_slot >= 0
        pair_bias = np.where(win_known, bias[win_slot], 0.0) - np.where(lose_known, bias[lose_slot], 0.0)
        margin = D @ p + AD @ (B.T @ p) + D @ personal_term + pair_bias + signal_term[pairs.win] - signal_term[pairs.lose]
        if k:
            margin += (np.where(win_known[:, None], V[win_slot], 0.0)
                       - np.where(lose_known[:, None], V[lose_slot], 0.0)) @ residual_query
        weight = pairs.weight.astype(np.float64)
        coef = -(weight / weight.sum()) * 0.5 * (1.0 - np.tanh(0.5 * margin))  # d loss / d margin
        grad_bias = np.zeros_like(bias)
        np.add.at(grad_bias, win_slot[win_known], coef[win_known])
        np.add.at(grad_bias, lose_slot[lose_known], -coef[lose_known])
        B -= settings.learning_rate * np.outer(p, AD.T @ coef)
        bias -= settings.learning_rate * grad_bias
        if k:  # d margin / d v_win = W_v^T p = -(d margin / d v_lose)
            V -= settings.learning_rate * np.outer(grad_bias, residual_query)
    return np.concatenate([B.reshape(-1), bias, V.reshape(-1)]) - start
