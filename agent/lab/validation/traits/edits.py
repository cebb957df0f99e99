"""(c) Edit independence on the MovieLens users' adapters: setting one trait the product's way, its exact-dual
variant and a naive push along the trait's axis, and how far each moves the other traits and the scores."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from agent.lab.validation.traits.common import EDIT_BOUNDS, EDIT_STEP, rounded


EDIT_METHODS = ("product", "unbounded", "exact_dual", "naive")


def _push_along_axis(space, p: np.ndarray, t: int, target: float) -> np.ndarray | None:
    """The naive edit: p + alpha * a_t with alpha found by bisection so that trait t reads
    `target` (None if no alpha within a wide range reaches it). Uses only `values`, so it works
    whatever the value's formula is."""
    axis = space.axes[t].astype(np.float64)
    base = np.asarray(p, np.float64)

    def miss(alpha: float) -> float:
        return float(space.values(base + alpha * axis)[t]) - target

    start = miss(0.0)
    if start == 0.0:
        return np.zeros_like(base)
    scale = float(np.linalg.norm(base)) + 1.0
    bracket = None
    for exponent in range(-12, 16):
        for alpha in (scale * 2.0 ** exponent, -scale * 2.0 ** exponent):
            if miss(alpha) * start < 0:
                bracket = (0.0, alpha)
                break
        if bracket:
            break
    if bracket is None:
        return None
    low, high = bracket
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if miss(mid) * start > 0 else (low, mid)
    return (high * axis).astype(np.float64)


def edit_effects(space, adapter, scorer, step: float = EDIT_STEP) -> dict[str, Any]:
    """For every trait, set it `step` up and down (within EDIT_BOUNDS) and measure how far the
    other traits' values move and how much the person's scores change (sd of the change across the
    catalog over the sd of the scores), for:
    - product: `space.edit`, what `ownrec traits set` does (bounded: it may stop short of the target);
    - unbounded: `space.move_to`, the exact edit without that bound;
    - exact_dual: `move_to` with no tolerance, where the space has one (a stricter variant);
    - naive: a push of p along the trait's own axis, scaled to reach the same target."""
    p = adapter.p
    K = space.size
    values = space.values(p).astype(np.float64)
    scores = scorer.scores(adapter)
    spread = max(float(scores.std()), 1e-12)
    moved = adapter.copy()

    def disruption(delta: np.ndarray) -> float:
        moved.p = (p + delta).astype(np.float32)
        return float((scorer.scores(moved) - scores).std()) / spread

    methods = {"product": lambda t, target: space.edit(p, t, target),
               "unbounded": lambda t, target: space.move_to(p, {t: target}),
               "naive": lambda t, target: _push_along_axis(space, p, t, target)}
    if "tolerance" in inspect.signature(space.move_to).parameters:
        methods["exact_dual"] = lambda t, target: space.move_to(p, {t: target}, tolerance=0.0)
    out: dict[str, Any] = {m: {"others": [], "miss": [], "progress": [], "scores": [], "unreachable": 0}
                           for m in EDIT_METHODS}
    drag = np.zeros((K, K))  # naive: summed |change of trait k| when trait t is set (row t)
    moves = np.zeros(K)
    for t in range(K):
        others = np.arange(K) != t
        for sign in (1.0, -1.0):
            target = float(np.clip(values[t] + sign * step, *EDIT_BOUNDS))
            if abs(target - values[t]) < step / 2:
                continue  # too close to the edge to move by much
            for name, method in methods.items():
                delta = method(t, target)
                if delta is None:
                    out[name]["unreachable"] += 1
                    continue
                after = space.values(p + delta).astype(np.float64)
                out[name]["others"].append(float(np.abs(after - values)[others].mean()))
                out[name]["miss"].append(float(abs(after[t] - target)))
                out[name]["progress"].append(float((after[t] - values[t]) / (target - values[t])))
                out[name]["scores"].append(disruption(np.asarray(delta, np.float64)))
                if name == "naive":
                    drag[t] += np.abs(after - values)
                    moves[t] += 1
    out["drag"], out["moves"] = drag, moves
    return out


def aggregate_edits(per_user: list[dict[str, Any]], trait_ids: list[str]) -> dict[str, Any]:
    if not per_user:
        return {"users": 0}
    K = len(trait_ids)
    drag = sum(e["drag"] for e in per_user) / np.maximum(sum(e["moves"] for e in per_user), 1)[:, None]
    np.fill_diagonal(drag, np.nan)
    flat = sorted(((drag[t, k], t, k) for t in range(K) for k in range(K) if t != k), reverse=True)
    methods: dict[str, Any] = {}
    for name in EDIT_METHODS:
        others = np.concatenate([e[name]["others"] for e in per_user])
        if len(others) == 0:
            continue
        miss = np.concatenate([e[name]["miss"] for e in per_user])
        scores = np.concatenate([e[name]["scores"] for e in per_user])
        progress = np.concatenate([e[name]["progress"] for e in per_user])
        methods[name] = {"edits": int(len(others)), "unreachable": int(sum(e[name]["unreachable"] for e in per_user)),
                         "mean_other_change": rounded(others.mean(), 6),
                         "p90_other_change": rounded(np.percentile(others, 90), 6), "max_other_change": rounded(others.max(), 6),
                         "mean_target_miss": rounded(miss.mean(), 6), "score_change": rounded(np.median(scores), 4),
                         "mean_progress": rounded(progress.mean(), 4), "min_progress": rounded(progress.min(), 4),
                         "max_score_change": rounded(scores.max(), 4)}
    return {
        "users": len(per_user),
        "step": EDIT_STEP,
        "methods": methods,
        "naive_by_trait": {trait_ids[t]: rounded(np.nanmean(drag[t])) for t in range(K)},
        "naive_worst_pairs": [{"set": trait_ids[t], "moves": trait_ids[k], "by": rounded(v)} for v, t, k in flat[:5]],
    }

