"""(c) through the product, on a simulated person of mixed taste (`Traits.set`, read back, undone), and (d) an
edit's effect on the feed: raising "dark" and seeing how far darker films move up."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.lab.validation.traits.common import (DARK_GENRES, EDIT_BOUNDS, EDIT_STEP, FEED_SIZE, MIXED_GENRES, Context,
                                                Log, rounded)


def _values(agent) -> dict[str, float]:
    return {r.id: r.value for r in agent.traits.readings()}


def _mixed_person(ctx: Context, agent, rng: np.random.Generator) -> list[int]:
    chosen: list[int] = []
    for genre in MIXED_GENRES:
        pool = [r for r in np.flatnonzero(ctx.has_genre([genre])) if r not in chosen]
        chosen += [int(r) for r in rng.choice(pool, 2, replace=False)]
    for row in chosen:
        agent.feedback(int(ctx.ids[row]), "like", origin="validation")
    agent.retrain()
    return chosen


def _feed_state(ctx: Context, agent, dark: int) -> dict[str, Any]:
    catalog = agent.scorer().catalog
    feed = agent.recommend(FEED_SIZE)
    rows = np.array([catalog.row(r.item.id) for r in feed], np.int64)
    is_dark = ctx.has_genre(DARK_GENRES)
    rated = {e.item_id for e in agent.store.interactions()}
    unrated = np.array([r for r in range(len(catalog)) if int(catalog.ids[r]) not in rated], np.int64)
    everything = agent.scores()  # as the feed scores them
    scores = everything[unrated]
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(unrated), np.int64)
    rank[order] = np.arange(1, len(unrated) + 1)
    return {"rows": rows, "titles": [r.item.display_title for r in feed],
            "dark_pct": ctx.percentiles[rows, dark], "dark_genre": is_dark[rows],
            "unrated": unrated, "rank": rank, "scores": everything}


def _feed_change(ctx: Context, before: dict[str, Any], after: dict[str, Any], dark: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in (10, 20, 50):
        out[f"top{k}_dark_percentile"] = [rounded(before["dark_pct"][:k].mean()),
                                          rounded(after["dark_pct"][:k].mean())]
    for k in (10, 20):
        out[f"top{k}_dark_genre_share"] = [rounded(before["dark_genre"][:k].mean()),
                                           rounded(after["dark_genre"][:k].mean())]
    out["top20_kept"] = int(len(set(before["rows"][:20]) & set(after["rows"][:20])))
    position = ctx.percentiles[before["unrated"], dark]
    for name, chosen in (("darkest100", np.argsort(-position)[:100]), ("lightest100", np.argsort(position)[:100])):
        up = before["rank"][chosen] - after["rank"][chosen]  # positive: moved up
        out[name] = {"median_rank": [float(np.median(before["rank"][chosen])), float(np.median(after["rank"][chosen]))],
                     "median_moved_up": float(np.median(up)), "share_moved_up": rounded(np.mean(up > 0))}
    out["unrated_items"] = int(len(before["unrated"]))
    out["score_change"] = rounded(float((after["scores"] - before["scores"]).std())
                                  / max(float(before["scores"].std()), 1e-12))
    return out


def check_feed_edit(ctx: Context, seeds: int, log: Log) -> tuple[dict[str, Any], dict[str, Any]]:
    dark = ctx.trait_ids.index("dark")
    feeds, product = [], []
    for s in range(seeds):
        rng = np.random.default_rng([ctx.seed, 4242, s])
        with ctx.person(f"mixed-{s}", seed=ctx.seed + s) as agent:
            agent.config.set("feed.exploration", 0.0)
            liked = _mixed_person(ctx, agent, rng)
            start = _values(agent)
            if s == 0:  # (c) through the product: every trait set, read back, undone
                for trait_id in ctx.trait_ids:
                    before = _values(agent)
                    sign = 1.0 if before[trait_id] <= 0.5 else -1.0
                    target = float(np.clip(before[trait_id] + sign * EDIT_STEP, *EDIT_BOUNDS))
                    agent.traits.set(trait_id, target)
                    after = _values(agent)
                    agent.traits.undo()
                    restored = _values(agent)
                    product.append({"trait": trait_id, "target": rounded(target), "reached": rounded(after[trait_id]),
                                    "others": rounded(np.mean([abs(after[k] - before[k]) for k in ctx.trait_ids
                                                          if k != trait_id]), 6),
                                    "undo_error": rounded(max(abs(restored[k] - before[k]) for k in ctx.trait_ids), 6)})
            before = _feed_state(ctx, agent, dark)
            target = min(start["dark"] + EDIT_STEP, EDIT_BOUNDS[1])
            agent.traits.set("dark", target)
            end = _values(agent)
            after = _feed_state(ctx, agent, dark)
            change = _feed_change(ctx, before, after, dark)
            change.update(liked=len(liked), dark_before=rounded(start["dark"]), dark_after=rounded(end["dark"]),
                          dark_asked=rounded(target),
                          others_moved=rounded(np.mean([abs(end[k] - start[k]) for k in ctx.trait_ids if k != "dark"]), 6))
            if s == 0:
                change["titles_before"] = before["titles"][:8]
                change["titles_after"] = after["titles"][:8]
            feeds.append(change)
            log(f"  mixed user {s}: dark {start['dark']:.2f} -> {end['dark']:.2f}, top-10 dark share "
                f"{change['top10_dark_genre_share'][0]:.1f} -> {change['top10_dark_genre_share'][1]:.1f}")
    summary = {"seeds": seeds, "feed_size": FEED_SIZE, "step": EDIT_STEP, "dark_genres": list(DARK_GENRES),
               "mixed_genres": list(MIXED_GENRES), "per_seed": feeds}
    for key in ("top10_dark_percentile", "top20_dark_percentile", "top50_dark_percentile", "top10_dark_genre_share",
                "top20_dark_genre_share"):
        summary[key] = [rounded(np.mean([f[key][0] for f in feeds])), rounded(np.mean([f[key][1] for f in feeds]))]
    for name in ("darkest100", "lightest100"):
        summary[name] = {"median_moved_up": rounded(np.mean([f[name]["median_moved_up"] for f in feeds]), 1),
                         "share_moved_up": rounded(np.mean([f[name]["share_moved_up"] for f in feeds]))}
    summary["top20_kept"] = rounded(np.mean([f["top20_kept"] for f in feeds]), 1)
    summary["score_change"] = rounded(np.mean([f["score_change"] for f in feeds]))
    product_summary = {
        "traits": len(product),
        "mean_other_change": rounded(np.mean([p["others"] for p in product]), 6) if product else None,
        "max_other_change": rounded(max(p["others"] for p in product), 6) if product else None,
        "mean_target_miss": rounded(np.mean([abs(p["reached"] - p["target"]) for p in product]), 6) if product else None,
        "max_undo_error": rounded(max(p["undo_error"] for p in product), 6) if product else None,
        "per_trait": product,
    }
    return summary, product_summary

