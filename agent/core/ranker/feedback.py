"""What the person's feedback means, in one place: the ranker's per-item preference labels (a graded
training signal, weak signals such as opens included), and the one rule for which items the person likes
or dislikes (`judgement`), used by the latest likes that steer the feed, the judge's profile and the LoRA's
examples.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from agent.core.store import Interaction

# A rating of at least this many stars is a like, and of at most DISLIKED_STARS a dislike; between
# them it is neither.
LIKED_STARS = 4.0
DISLIKED_STARS = 2.0


def judgement(event: Interaction) -> bool | None:
    """True when this event says the person liked the item (a like, or a rating of LIKED_STARS or more),
    False when it says they did not (a dislike, or DISLIKED_STARS or fewer), None when it says neither
    (a middling rating, an open, a skip)."""
    if event.kind == "like" or (event.kind == "rating" and (event.value or 0) >= LIKED_STARS):
        return True
    if event.kind == "dislike" or (event.kind == "rating" and (event.value or 5) <= DISLIKED_STARS):
        return False
    return None


def latest_judgements(interactions: Iterable[Interaction]) -> dict[int, bool | None]:
    """Per item, its latest explicit judgement (a like, a dislike or a rating), newest item first: True
    liked, False disliked, None a middling rating. Opens and skips judge nothing."""
    latest: dict[int, bool | None] = {}
    for event in sorted(interactions, key=lambda e: (e.at, e.id), reverse=True):
        if event.item_id not in latest and event.kind in ("like", "dislike", "rating"):
            latest[event.item_id] = judgement(event)
    return latest


# How strongly each kind of feedback says "more like this" (+) or "less like this" (-).
WEAK_SIGNAL = {"open": 0.3, "skip": -0.3}
EXPLICIT_SIGNAL = {"like": 1.0, "dislike": -1.0}


def rating_signal(stars: float) -> float:
    """0.5-5 stars onto -1..1, with 3 stars neutral: 5 -> 1.0, 4 -> 0.5, 2 -> -0.5, 1 -> -1.0."""
    return float(np.clip((stars - 3.0) / 2.0, -1.0, 1.0))


def preference_labels(interactions: Iterable[Interaction]) -> dict[int, float]:
    """Per item, a signed preference in -1..1. The latest explicit judgement (like, dislike,
    rating) wins; without one, weak signals (open, skip) add up, capped at their own size."""
    explicit: dict[int, float] = {}
    weak: dict[int, float] = {}
    for event in sorted(interactions, key=lambda e: (e.at, e.id)):
        if event.kind in EXPLICIT_SIGNAL:
            explicit[event.item_id] = EXPLICIT_SIGNAL[event.kind]
        elif event.kind == "rating" and event.value is not None:
            explicit[event.item_id] = rating_signal(event.value)
        elif event.kind in WEAK_SIGNAL:
            weak[event.item_id] = float(np.clip(weak.get(event.item_id, 0.0) + WEAK_SIGNAL[event.kind], -0.6, 0.6))
    labels = {item: value for item, value in weak.items() if value != 0.0}
    labels.update({item: value for item, value in explicit.items() if value != 0.0})
    return labels


def recent_likes(interactions: Iterable[Interaction]) -> list[int]:
    """The items the person likes now (their latest judgement is a like: `judgement`), in the order of their
    latest event, oldest first: what `Scorer.steer` takes the last RECENT_ITEMS of. Opening an item, or
    rating it between DISLIKED_STARS and LIKED_STARS, never makes it a like."""
    events = sorted(interactions, key=lambda e: (e.at, e.id))
    liked = {item for item, verdict in latest_judgements(events).items() if verdict}
    latest = {event.item_id: index for index, event in enumerate(events)}
    return [item for item in sorted(latest, key=latest.__getitem__) if item in liked]
