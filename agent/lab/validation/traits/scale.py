"""Does one trait edit change the feed in proportion to the edit? For simulated people of varied taste on the demo
catalog, each trait of `EDITED` is set `EDIT_STEP` up and down with `Traits.set` (then undone), and the feed is
measured before and after: how many of its top 20 are replaced, the spread (std over the unrated items) and the top
of the total score the feed ranks by (every part: taste, item residual, public signals), whether the edited trait
reached what was asked, and how far the other traits moved.

`measure_edit_scale(template, encoder)` returns one row per person and edit; `scale_summary` the worst and mean
figures. The issue's failure: an edit of 0.3 that replaces more than half of the top 20, or moves the scores off
their scale."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agent.lab import people
from agent.lab.validation.traits.common import EDIT_BOUNDS, EDIT_STEP, rounded

TOP = 20
EDITED = ("dark", "agreeableness", "cerebral")
# Simulated people: the genres they like (LIKES films of them) and dislike (DISLIKES films of them).
PEOPLE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "horror": (("Horror", "Thriller"), ("Children's", "Musical")),
    "family": (("Children's", "Animation", "Musical"), ("Horror",)),
    "drama": (("Drama", "Romance"), ("Action",)),
    "action": (("Action", "Sci-Fi", "Adventure"), ("Romance",)),
    "comedy": (("Comedy",), ("Drama", "War")),
    "mixed": (("Action", "Comedy", "Drama", "Romance", "Thriller", "Sci-Fi", "Children's", "Crime", "Horror"), ()),
}
LIKES, DISLIKES = 16, 6


def _feed(agent) -> dict[str, Any]:
    rated = {e.item_id for e in agent.store.interactions()}
    catalog = agent.scorer().catalog
    unrated = np.array([r for r in range(len(catalog)) if int(catalog.ids[r]) not in rated], np.int64)
    scores = agent.scores()[unrated]
    return {"top": [r.item.id for r in agent.recommend(TOP)], "spread": float(scores.std()),
            "best": float(scores.max()), "values": {r.id: r.value for r in agent.traits.readings()}}


def _teach(agent, liked: tuple[str, ...], disliked: tuple[str, ...], rng: np.random.Generator) -> None:
    items = agent.store.items()

    def pick(genres: tuple[str, ...], count: int, exclude: set[int]) -> list[int]:
        pool = [i.id for i in items if set(genres) & set(i.metadata.get("genres", [])) and i.id not in exclude]
        return [int(i) for i in rng.choice(pool, min(count, len(pool)), replace=False)] if genres else []

    likes = pick(liked, LIKES, set())
    dislikes = pick(disliked, DISLIKES, set(likes))
    rows = [(i, "like", None, float(n), "lab") for n, i in enumerate(likes)]
    rows += [(i, "dislike", None, float(100 + n), "lab") for n, i in enumerate(dislikes)]
    agent.store.add_interactions(rows)
    agent.retrain()


def measure_person(agent, name: str, seed: int = 0, step: float = EDIT_STEP,
                   edited: tuple[str, ...] = EDITED) -> list[dict[str, Any]]:
    """Teach `agent` person `name`'s taste, then set each trait of `edited` `step` up and down (each undone after)."""
    liked, disliked = PEOPLE[name]
    agent.config.set("feed.exploration", 0.0)
    _teach(agent, liked, disliked, np.random.default_rng([seed, len(name)]))
    rows = []
    for trait in edited:
        for sign in (1.0, -1.0):
            before = _feed(agent)
            start = before["values"][trait]
            target = float(np.clip(start + sign * step, *EDIT_BOUNDS))
            if abs(target - start) < step / 2:
                continue  # too close to the edge to move by much
            edit = agent.traits.set(trait, target)
            after = _feed(agent)
            agent.traits.undo()
            others = [abs(after["values"][k] - before["values"][k]) for k in before["values"] if k != trait]
            rows.append({
                "person": name, "trait": trait, "from": rounded(start), "asked": rounded(target),
                "reached": rounded(after["values"][trait]), "reported": rounded(edit.detail["to"]),
                "replaced": TOP - len(set(before["top"]) & set(after["top"])),
                "spread": [rounded(before["spread"]), rounded(after["spread"])],
                "spread_ratio": rounded(after["spread"] / max(before["spread"], 1e-12)),
                "top_score": [rounded(before["best"]), rounded(after["best"])],
                "others": rounded(float(np.mean(others)), 5),
            })
    return rows


def measure_edit_scale(template: Path, encoder: Any, names: tuple[str, ...] = tuple(PEOPLE), seed: int = 0,
                       step: float = EDIT_STEP) -> list[dict[str, Any]]:
    """Every person of `names` on a copy of the demo `template` (in a temporary folder), each edit measured."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ownrec-edit-scale-") as folder:
        for n, name in enumerate(names):
            with people.person(Path(folder), template, encoder, name, seed + n) as agent:
                rows += measure_person(agent, name, seed, step)
    return rows


def scale_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The worst and mean figures over the edits: replaced of the top 20, spread ratio, distance from the target
    (asked - reached, in the edit's direction), the other traits' mean change, and whether `set` said the truth."""
    if not rows:
        return {"edits": 0}
    ratios = np.array([r["spread_ratio"] for r in rows])
    short = np.array([abs(r["asked"] - r["reached"]) for r in rows])
    toward = [np.sign(r["asked"] - r["from"]) * (r["reached"] - r["from"]) for r in rows]
    return {"edits": len(rows), "max_replaced": max(r["replaced"] for r in rows),
            "mean_replaced": rounded(np.mean([r["replaced"] for r in rows]), 2),
            "spread_ratio": [rounded(ratios.min()), rounded(ratios.max())],
            "mean_short_of_target": rounded(short.mean()), "max_short_of_target": rounded(short.max()),
            "min_moved_toward": rounded(min(toward)),
            "mean_others": rounded(np.mean([r["others"] for r in rows]), 5),
            "max_report_error": rounded(max(abs(r["reported"] - r["reached"]) for r in rows), 5)}
