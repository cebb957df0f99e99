"""Feedback and feed with a long history: the person's costs at 100, 1,000 and 10,000 feedback events on the
demo catalog, side by side in one run, so that a cost that grows with the history shows as a trend.

The history is written through the store in bulk (a realistic mix of kinds, spread over the past); the
measured calls go through the real `Agent.feedback` and `Agent.recommend`, as the feed screen makes them: a
judgement, then the feed again, each timed from the caller's side. The agent is opened as the app opens it
(the periodic full refit in the background), and every judgement counts, the ones that start a refit too;
a full retrain is timed on its own at each size.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

HISTORY_SIZES = (100, 1_000, 10_000)
TARGET_EVENTS = 10_000  # where the targets apply (TARGETS in agent.lab.bench.product)
# The mix of a long history: mostly ratings and likes, some opens and skips.
KINDS = ("rating", "like", "dislike", "open", "skip")
KIND_SHARES = (0.4, 0.2, 0.1, 0.2, 0.1)
SECONDS_APART = 60.0


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = np.asarray(samples_ms, np.float64)
    return {"p50_ms": round(float(np.percentile(ordered, 50)), 3),
            "p95_ms": round(float(np.percentile(ordered, 95)), 3), "n": int(len(ordered))}


def synthetic_history(item_ids: list[int], count: int, rng: np.random.Generator,
                      end: float) -> list[tuple[int, str, float | None, float, str]]:
    """`count` feedback rows (item_id, kind, value, at, origin) over `item_ids`, oldest first, the newest a
    minute before `end`."""
    kinds = rng.choice(len(KINDS), size=count, p=KIND_SHARES)
    items = rng.choice(np.asarray(item_ids, np.int64), size=count)
    stars = rng.integers(1, 11, size=count) / 2.0
    start = end - SECONDS_APART * (count + 1)
    return [(int(item), KINDS[k], float(star) if KINDS[k] == "rating" else None, start + SECONDS_APART * i, "bench")
            for i, (item, k, star) in enumerate(zip(items, kinds, stars))]


def bench_history(agent, sizes: tuple[int, ...] = HISTORY_SIZES, repeats: int = 40, seed: int = 0) -> dict[str, Any]:
    """At each history size (smallest first, one agent whose history grows): `repeats` judgements through
    `Agent.feedback`, each followed by a feed through `Agent.recommend`, after a few unmeasured ones; the wall
    time of each call, which is what the person waits for. Then one full retrain (`Agent.retrain`). The agent
    should be opened as the app opens it (`background_refit=True`), so the periodic refit runs as it would."""
    rng = np.random.default_rng(seed)
    item_ids = [int(i) for i in agent.catalog().ids]
    results: dict[str, Any] = {"items": len(item_ids), "sizes": list(sizes), "repeats": repeats,
                               "background_refit": bool(agent.background_refit)}
    warm = 3
    for size in sizes:
        missing = size - agent.store.interaction_count()
        if missing > 0:
            # Older than anything so far: a history imported at once.
            oldest = min((e.at for e in agent.store.interactions()), default=time.time())
            agent.store.add_interactions(synthetic_history(item_ids, missing, rng, oldest))
        feedback_ms, feed_ms, refits = [], [], 0
        for index in range(warm + repeats):
            item = item_ids[int(rng.integers(len(item_ids)))]
            kind = ("like", "dislike", "rating")[index % 3]
            started = time.perf_counter()
            result = agent.feedback(item, kind, 4.5 if kind == "rating" else None, origin="bench")
            middle = time.perf_counter()
            agent.recommend()
            ended = time.perf_counter()
            if index >= warm:
                feedback_ms.append((middle - started) * 1000)
                feed_ms.append((ended - middle) * 1000)
                refits += result.retrained or result.refitting
        agent.wait_for_refit()
        started = time.perf_counter()
        retrain = agent.retrain()
        results[str(size)] = {"events": agent.store.interaction_count(), "feedback": _percentiles(feedback_ms),
                              "feed": _percentiles(feed_ms), "refits_started": int(refits),
                              "full_retrain_s": round(time.perf_counter() - started, 3),
                              "full_retrain_labels": retrain["labels"]}
    return results


def bench_history_on_copy(agent, folder: Path, repeats: int) -> dict[str, Any]:
    """`bench_history` on a copy of `agent`'s database (its catalog encoded, no feedback yet) in `folder`,
    opened as the app opens it, so that `agent` itself keeps its empty history."""
    from agent.core.api import Agent

    agent.store.checkpoint()
    home = Path(folder)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(agent.home.database, home / agent.home.database.name)
    copy = Agent.open(home=home, background_refit=True, seed=0)
    try:
        return bench_history(copy, repeats=repeats)
    finally:
        copy.close()
