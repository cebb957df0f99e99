"""On-device training of the personal adapter from the person's own feedback.

Feedback becomes per-item preference labels; the loss is weighted BPR: a liked item should
outscore items the person has not rated, and those should outscore disliked ones. Negatives are
resampled every epoch, and so are the labelled items an epoch trains on when there are more than
`TrainingSettings.items_per_epoch`: a refit then costs the same however long the history. Regularisation pulls p_u towards its prior (the onboarding taste
sentence) and the personal adapter towards the identity. Directions the person pinned (traits)
are held fixed: updates to p_u are projected off them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from agent.core.ranker.adapters import PersonalAdapter, default_signal_weights
from agent.core.ranker.history import LabelledRows
from agent.core.ranker.model import Scorer

@dataclass
class TrainingSettings:
    epochs: int = 60
    learning_rate: float = 0.05
    negatives_per_item: int = 8
    l2_user: float = 0.01
    l2_adapter: float = 0.1
    l2_signal: float = 0.01  # pulls the weights on the public signals back to their defaults
    seed: int = 0
    # At most this many labelled items per epoch, drawn afresh each epoch (None: all of them).
    items_per_epoch: int | None = 256


@dataclass(frozen=True)
class Pairs:
    """Training pairs over catalog rows: row `win` should outscore row `lose`, with a weight."""

    win: np.ndarray
    lose: np.ndarray
    weight: np.ndarray


def sample_pairs(labels: Mapping[int, float], scorer: Scorer, rng: np.random.Generator,
                 negatives_per_item: int, only: Iterable[int] | None = None,
                 items_per_epoch: int | None = None) -> Pairs:
    """Each labelled item (or each in `only`; at most `items_per_epoch` of them, drawn at random) is
    paired with random unlabelled catalog rows, and liked items additionally with disliked ones.
    `labels` may be a `LabelledRows` of this catalog, which saves working out the rows."""
    catalog = scorer.catalog
    view = LabelledRows.over(catalog, labels)
    labelled = view.rows()
    if not len(labelled) or len(catalog) == 0:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if only is None:
        rows = labelled
    else:
        wanted = (catalog.row(i) for i in only if i in view)
        rows = np.array([row for row in dict.fromkeys(wanted) if row is not None], np.int64)
    if items_per_epoch is not None and len(rows) > items_per_epoch:
        rows = np.sort(rng.choice(rows, size=items_per_epoch, replace=False))
    values = view.value[rows]
    free = np.flatnonzero(~view.labelled)
    win, lose, weight = [], [], []
    if len(free) and len(rows):  # one draw for all subjects: the per-item loop was most of `fit`'s time
        others = rng.choice(free, size=(len(rows), negatives_per_item))
        own = np.repeat(rows[:, None], negatives_per_item, axis=1)
        liked = values[:, None] > 0
        win.append(np.where(liked, own, others).ravel())
        lose.append(np.where(liked, others, own).ravel())
        weight.append(np.repeat(np.abs(values), negatives_per_item).astype(np.float32))
    disliked = labelled[view.value[labelled] < 0]
    liked_rows, liked_values = rows[values > 0], values[values > 0]
    if len(disliked) and len(liked_rows):
        per_item = min(negatives_per_item, len(disliked))
        chosen = rng.choice(disliked, size=(len(liked_rows), per_item))
        strength = -view.value[chosen]
        win.append(np.repeat(liked_rows, per_item))
        lose.append(chosen.ravel())
        weight.append(np.minimum(np.repeat(liked_values, per_item), strength.ravel()).astype(np.float32))
    if not win:
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return Pairs(np.concatenate(win).astype(np.int64), np.concatenate(lose).astype(np.int64),
                 np.concatenate(weight))


def _project_off(delta: np.ndarray, fixed: np.ndarray | None) -> np.ndarray:
    """Remove from a change of p_u its components along pinned (orthonormal) directions."""
    if fixed is None or len(fixed) == 0:
        return delta
    return delta - fixed.T @ (fixed @ delta)


def gradients(adapter: PersonalAdapter, scorer: Scorer, pairs: Pairs, settings: TrainingSettings
              ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted BPR loss and its gradients with respect to p, A, B and the signal weights w (global
    adapter fixed).

    For a pair with raw difference d = x_win - x_lose, global-side difference u (d through the global
    adapter) and public-signal difference f, the margin is p.u + p.B A d + w.f (+ the item biases, which
    are constant here)."""
    g = scorer.global_adapter
    X = scorer.catalog.X
    D = X[pairs.win] - X[pairs.lose]
    U = D + (D @ g.A.T) @ g.B.T
    if scorer.residual is not None:
        U = U + (scorer.residual[pairs.win] - scorer.residual[pairs.lose]) @ g.W_v.T
    AD = D @ adapter.A.T
    Btp = adapter.B.T @ adapter.p
    margin = U @ adapter.p + AD @ Btp
    signals = scorer.catalog.has_signals
    if signals:
        F = scorer.catalog.signals[pairs.win] - scorer.catalog.signals[pairs.lose]
        margin = margin + F @ adapter.signal_weights
    if scorer.bias.any():
        margin = margin + scorer.bias[pairs.win] - scorer.bias[pairs.lose]
    total = float(pairs.weight.sum())
    # d/dmargin of -w log sigmoid(margin) is -w sigmoid(-margin)
    coef = -(pairs.weight * _sigmoid(-margin)) / total
    loss = float((pairs.weight * np.logaddexp(0.0, -margin)).sum() / total)
    ADc = AD.T @ coef
    grad_p = U.T @ coef + adapter.B @ ADc
    grad_B = np.outer(adapter.p, ADc)
    grad_A = np.outer(Btp, D.T @ coef)
    loss += settings.l2_user * float(np.sum((adapter.p - adapter.prior) ** 2))
    loss += settings.l2_adapter * float(np.sum(adapter.B ** 2))
    grad_p += 2 * settings.l2_user * (adapter.p - adapter.prior)
    grad_B += 2 * settings.l2_adapter * adapter.B
    grad_w = np.zeros_like(adapter.signal_weights)
    if signals:
        pull = adapter.signal_weights - default_signal_weights()
        loss += settings.l2_signal * float(np.sum(pull ** 2))
        grad_w = F.T @ coef + 2 * settings.l2_signal * pull
    return (loss, grad_p.astype(np.float32), grad_A.astype(np.float32), grad_B.astype(np.float32),
            grad_w.astype(np.float32))


# The personal item adapter may reshape the item space, not blow it up: left free, it learns to
# amplify the person's own direction (p . B A x is just another linear term in x), which makes p
# ill-conditioned for everything built on it (trait edits, the query term).
ADAPTER_SPECTRAL_LIMIT = 0.5


def bound_adapter(adapter: PersonalAdapter, limit: float = ADAPTER_SPECTRAL_LIMIT) -> None:
    """Scale B in place so that the spectral norm of B A is at most `limit`."""
    _, r_factor = np.linalg.qr(adapter.A.T.astype(np.float64))  # A^T = Q R, so |B A| = |B R^T|
    norm = float(np.linalg.norm(adapter.B.astype(np.float64) @ r_factor.T, ord=2))
    if norm > limit:
        adapter.B *= np.float32(limit / norm)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit(adapter: PersonalAdapter, scorer: Scorer, labels: Mapping[int, float],
        settings: TrainingSettings, fixed: np.ndarray | None = None) -> tuple[PersonalAdapter, list[float]]:
    """Full retraining from all labels with Adam, warm-started from `adapter`. Returns the new
    adapter and the loss per epoch; the input adapter is not modified."""
    labels = LabelledRows.over(scorer.catalog, labels)  # the rows once, not every epoch
    trained = adapter.copy()
    rng = np.random.default_rng(settings.seed)
    params = [trained.p, trained.B, trained.signal_weights]  # A is a fixed projection (PersonalAdapter.fresh)
    first = [np.zeros_like(x) for x in params]
    second = [np.zeros_like(x) for x in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    history: list[float] = []
    for epoch in range(1, settings.epochs + 1):
        pairs = sample_pairs(labels, scorer, rng, settings.negatives_per_item, items_per_epoch=settings.items_per_epoch)
        if len(pairs.win) == 0:
            break
        loss, grad_p, _, grad_B, grad_w = gradients(trained, scorer, pairs, settings)
        grads = [grad_p, grad_B, grad_w]
        history.append(loss)
        for index, (param, grad) in enumerate(zip(params, grads)):
            first[index] = beta1 * first[index] + (1 - beta1) * grad
            second[index] = beta2 * second[index] + (1 - beta2) * grad * grad
            step = settings.learning_rate * (first[index] / (1 - beta1 ** epoch)) / (
                np.sqrt(second[index] / (1 - beta2 ** epoch)) + eps)
            if index == 0:
                step = _project_off(step, fixed)
            param -= step.astype(np.float32)
        bound_adapter(trained)
    return trained, history


def online_update(adapter: PersonalAdapter, scorer: Scorer, labels: Mapping[int, float], item_id: int,
                  rng: np.random.Generator, learning_rate: float, steps: int = 4,
                  replay: int = 16, fixed: np.ndarray | None = None) -> PersonalAdapter:
    """A few SGD steps on the pairs of one new feedback item plus a small replay of older
    labels (of items in the catalog), so one like visibly moves the feed without forgetting the rest.
    `labels` may be a `LabelledRows` of the scorer's catalog, which saves working out the rows."""
    updated = adapter.copy()
    catalog = scorer.catalog
    labels = LabelledRows.over(catalog, labels)
    others = labels.rows()
    others = others[others != catalog.row(item_id)] if item_id in labels else others
    replayed = catalog.ids[rng.choice(others, size=min(replay, len(others)), replace=False)] if len(others) else []
    settings = TrainingSettings()
    for _ in range(steps):
        pairs = sample_pairs(labels, scorer, rng, 16, only=[item_id, *replayed])
        if len(pairs.win) == 0:
            break
        _, grad_p, _, grad_B, grad_w = gradients(updated, scorer, pairs, settings)
        updated.p -= _project_off(learning_rate * grad_p, fixed).astype(np.float32)
        updated.B -= learning_rate * grad_B
        updated.signal_weights -= (learning_rate * grad_w).astype(np.float32)
        bound_adapter(updated)
    return updated
