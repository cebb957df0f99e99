"""(a) Pole users: simulated people who like films from one end of a trait's axis, read through the product."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.lab.validation.traits.common import (PASS_HIGH, PASS_LOW, POLE_DISLIKES, POLE_LIKES, POLE_SHARE, Context,
                                                Log, rounded, summary)


def check_pole_users(ctx: Context, seeds: int, log: Log) -> dict[str, Any]:
    K = len(ctx.trait_ids)
    out: dict[str, Any] = {"likes": POLE_LIKES, "dislikes": POLE_DISLIKES, "pole_share": POLE_SHARE,
                           "seeds": seeds, "per_trait": {}}
    all_pass = []
    for t, trait_id in enumerate(ctx.trait_ids):
        high = np.flatnonzero(ctx.percentiles[:, t] >= 1 - POLE_SHARE)
        low = np.flatnonzero(ctx.percentiles[:, t] <= POLE_SHARE)
        entry: dict[str, Any] = {"pole_items": [int(len(high)), int(len(low))]}
        other_values = {pole: [] for pole in ("high", "low")}
        for variant_index, variant in enumerate(("likes", "likes_dislikes")):
            for pole_index, pole in enumerate(("high", "low")):
                liked_pool, disliked_pool = (high, low) if pole == "high" else (low, high)
                values, confidences = [], []
                for s in range(seeds):
                    rng = np.random.default_rng([ctx.seed, t, variant_index, pole_index, s])
                    with ctx.person(f"pole-{trait_id}-{variant}-{pole}-{s}", seed=ctx.seed + s) as agent:
                        for row in rng.choice(liked_pool, POLE_LIKES, replace=False):
                            agent.feedback(int(ctx.ids[row]), "like", origin="validation")
                        if variant == "likes_dislikes":
                            for row in rng.choice(disliked_pool, POLE_DISLIKES, replace=False):
                                agent.feedback(int(ctx.ids[row]), "dislike", origin="validation")
                        agent.retrain()
                        readings = {r.id: r for r in agent.traits.readings()}
                    values.append(readings[trait_id].value)
                    confidences.append(readings[trait_id].confidence)
                    other_values[pole].append([readings[k].value for k in ctx.trait_ids])
                passed = [v >= PASS_HIGH if pole == "high" else v <= PASS_LOW for v in values]
                all_pass += passed
                entry[f"{pole}_{variant}"] = {**summary(values), "passed": int(sum(passed)),
                                              "confidence": rounded(np.mean(confidences))}
        # Specificity: which other trait moves most with this one (mean over all pole users).
        high_others = np.array(other_values["high"])
        low_others = np.array(other_values["low"])
        gap = high_others.mean(axis=0) - low_others.mean(axis=0)  # how far apart the two poles' users read
        gap[t] = np.nan
        strongest = int(np.nanargmax(np.abs(gap)))
        entry["off_target_gap_mean"] = rounded(np.nanmean(np.abs(gap)))
        entry["most_moved_other"] = {"trait": ctx.trait_ids[strongest], "gap": rounded(gap[strongest])}
        entry["own_gap"] = rounded(high_others[:, t].mean() - low_others[:, t].mean())
        out["per_trait"][trait_id] = entry
        log(f"  {trait_id}: high {entry['high_likes']['mean']:.2f} low {entry['low_likes']['mean']:.2f}")
    out["passed"] = int(sum(all_pass))
    out["users"] = int(len(all_pass))
    out["K"] = K
    return out
