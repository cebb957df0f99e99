"""What the person's feedback means, in one place: the ranker's per-item preference labels (a graded
training signal, weak signals such as opens included), and the one rule for which items the person likes
or dislikes (`judgement`), used by the latest likes that steer the feed, the judge's profile and the LoRA's
examples.

The functions over a whole history (`preference_labels`, `latest_judgements`, `recent_likes`) are the
definition; they are built from per-event rules (`stated_preference`, `add_weak_signal`, `item_label`,
`judgement`) that `ranker.history.FeedbackHistory` applies one event at a time, so that the feed and the
online update need not read the whole history.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.core.store import Interaction

# A rating of at least this many stars is a like, and of at most DISLIKED_STARS a dislike; between
# them it is neither.
LIKED_STARS = 4.0
DISLIKED_STARS = 2.0
# The kinds of feedback that judge an item (`latest_judgements`); opens and skips do not.
JUDGEMENT_KINDS = ("like", "dislike", "rating")
# The kinds that leave an item unjudged, so that it stays in the feed: opening it, and wanting it (on a
# watchlist or a to-read shelf). A want is not a like and not a watch: it carries no label at all.
UNJUDGED_KINDS = ("open", "want")


def event_order(event: Interaction) -> tuple[float, int]:
    """When an event happened, for ordering a history: its time, then its id (events imported with the same
    time keep the order they were recorded in)."""
    return (event.at, event.id)


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
    for event in sorted(interactions, key=event_order, reverse=True):
        if event.item_id not in latest and event.kind in JUDGEMENT_KINDS:
            latest[event.item_id] = judgement(event)
    return latest


# How strongly each kind of feedback says "more like this" (+) or "less like this" (-).
WEAK_SIGNAL = {"open": 0.3, "skip": -0.3}
EXPLICIT_SIGNAL = {"like": 1.0, "dislike": -1.0}
WEAK_CAP = 0.6  # how far weak signals alone can go, either way


def rating_signal(stars: float) -> float:
    """0.5-5 stars onto -1..1, with 3 stars neutral: 5 -> 1.0, 4 -> 0.5, 2 -> -0.5, 1 -> -1.0."""
    return min(max((stars - 3.0) / 2.0, -1.0), 1.0)


def stated_preference(event: Interaction) -> float | None:
    """The preference an explicit event states (a like, a dislike, a rating), or None for any other event
    (an open, a skip, a rating without stars)."""
    if event.kind in EXPLICIT_SIGNAL:
        return EXPLICIT_SIGNAL[event.kind]
    if event.kind == "rating" and event.value is not None:
        return rating_signal(event.value)
    return None


def add_weak_signal(total: float, event: Interaction) -> float:
    """An item's weak signals after one more (`event` an open or a skip), in time order, capped at WEAK_CAP."""
    return min(max(total + WEAK_SIGNAL[event.kind], -WEAK_CAP), WEAK_CAP)


def item_label(stated: float | None, weak: float) -> float | None:
    """An item's label from its latest stated preference and its weak signals: the stated one, unless it is
    neutral (3 stars) or missing; then the weak signals, unless they cancel out; else no label."""
    if stated:
        return stated
    return weak if weak != 0.0 else None


def preference_labels(interactions: Iterable[Interaction]) -> dict[int, float]:
    """Per item, a signed preference in -1..1. The latest explicit judgement (like, dislike,
    rating) wins; without one, weak signals (open, skip) add up, capped at their own size."""
    stated: dict[int, float] = {}
    weak: dict[int, float] = {}
    for event in sorted(interactions, key=event_order):
        preference = stated_preference(event)
        if preference is not None:
            stated[event.item_id] = preference
        elif event.kind in WEAK_SIGNAL:
            weak[event.item_id] = add_weak_signal(weak.get(event.item_id, 0.0), event)
    labels = {}
    for item in {**weak, **stated}:
        label = item_label(stated.get(item), weak.get(item, 0.0))
        if label is not None:
            labels[item] = label
    return labels


def recent_likes(interactions: Iterable[Interaction]) -> list[int]:
    """The items the person likes now (their latest judgement is a like: `judgement`), in the order of their
    latest event, oldest first: what `Scorer.steer` takes the last RECENT_ITEMS of. Opening an item, or
    rating it between DISLIKED_STARS and LIKED_STARS, never makes it a like."""
    events = sorted(interactions, key=event_order)
    liked = {item for item, verdict in latest_judgements(events).items() if verdict}
    latest = {event.item_id: index for index, event in enumerate(events)}
    return [item for item in sorted(latest, key=latest.__getitem__) if item in liked]
