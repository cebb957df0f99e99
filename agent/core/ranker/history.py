"""The person's feedback history as the ranker uses it, kept up to date one event at a time.

`FeedbackHistory` holds what `ranker.feedback` derives from a whole history (the preference labels, the
latest judgements, the latest likes in order, the items judged) and folds each new event into it with that
module's per-event rules, so that a feedback update and a feed cost the same with 100 events or 10,000. It
always equals what the functions over the whole history give for the events it was given, in any order:
an event older than the ones before it (an imported history) is placed by its time, at the cost of its
item's own weak signals or of one sort of the likes before they are next read.

`FeedbackRows` lays that state over one catalog's rows (labels, likes, the items to leave out of the
feed), and `LabelledRows` is the labels with their rows, which `ranker.training` samples pairs from without
walking the labels.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from agent.core.ranker.feedback import (
    JUDGEMENT_KINDS,
    UNJUDGED_KINDS,
    WEAK_SIGNAL,
    add_weak_signal,
    event_order,
    item_label,
    judgement,
    stated_preference,
)
from agent.core.ranker.model import Catalog
from agent.core.store import Interaction

Key = tuple[float, int]  # `event_order` of an event


class _ItemState:
    """One item's share of the history: its latest event, its latest stated preference and judgement, and
    its weak signals (kept in time order, to add them up again when an older one arrives)."""

    __slots__ = ("latest", "stated", "stated_at", "verdict", "verdict_at", "weak", "weak_events", "judged", "seen",
                 "wanted")

    def __init__(self) -> None:
        self.latest: Key | None = None
        self.stated: float | None = None
        self.stated_at: Key | None = None
        self.verdict: bool | None = None
        self.verdict_at: Key | None = None
        self.weak = 0.0
        self.weak_events: list[tuple[Key, Interaction]] = []
        self.judged = False
        self.seen = False  # any feedback but a want: wanting an item is not having seen it
        self.wanted = False

    def add(self, event: Interaction, key: Key) -> None:
        if self.latest is None or key > self.latest:
            self.latest = key
        preference = stated_preference(event)
        if preference is not None:
            if self.stated_at is None or key > self.stated_at:
                self.stated, self.stated_at = preference, key
        elif event.kind in WEAK_SIGNAL:
            if not self.weak_events or key > self.weak_events[-1][0]:
                self.weak_events.append((key, event))
                self.weak = add_weak_signal(self.weak, event)
            else:  # capping makes the sum depend on the order: add them up again
                bisect.insort(self.weak_events, (key, event), key=lambda pair: pair[0])
                self.weak = 0.0
                for _, earlier in self.weak_events:
                    self.weak = add_weak_signal(self.weak, earlier)
        if event.kind in JUDGEMENT_KINDS and (self.verdict_at is None or key > self.verdict_at):
            self.verdict, self.verdict_at = judgement(event), key
        if event.kind not in UNJUDGED_KINDS:
            self.judged = True
        if event.kind != "want":
            self.seen = True
        else:
            self.wanted = True


class FeedbackHistory:
    """The derived state of a feedback history (see the module): `labels` equals `preference_labels`,
    `judged` the items with any feedback but an open or a want, `recent_likes()` equals `recent_likes` and
    `latest_judgements()` equals `latest_judgements`, for the events added so far. Events are added once
    each (`add`); `last_id` is the largest id seen, so a store can be asked for what came after it."""

    def __init__(self, events: Iterable[Interaction] = ()) -> None:
        self._items: dict[int, _ItemState] = {}
        self.labels: dict[int, float] = {}
        self.judged: set[int] = set()
        # The liked items, each with the key of its latest event; in key order unless `_likes_sorted` is False.
        self._likes: dict[int, Key] = {}
        self._likes_sorted = True
        self.count = 0
        self.last_id = 0
        self.add(events)

    def add(self, events: Iterable[Interaction]) -> list[int]:
        """Fold events in; the items whose state they touched, in the order first touched."""
        touched: dict[int, None] = {}
        for event in events:
            state = self._items.get(event.item_id)
            if state is None:
                state = self._items[event.item_id] = _ItemState()
            state.add(event, event_order(event))
            touched[event.item_id] = None
            self.count += 1
            self.last_id = max(self.last_id, event.id)
        for item in touched:
            self._settle(item, self._items[item])
        return list(touched)

    def _settle(self, item: int, state: _ItemState) -> None:
        label = item_label(state.stated, state.weak)
        if label is None:
            self.labels.pop(item, None)
        else:
            self.labels[item] = label
        if state.judged:
            self.judged.add(item)
        placed = self._likes.get(item)
        if not state.verdict:
            if placed is not None:
                del self._likes[item]
            return
        if placed == state.latest:
            return
        if placed is not None:
            del self._likes[item]
        if self._likes and state.latest < next(reversed(self._likes.values())):
            self._likes_sorted = False  # placed by time before the likes are next read
        self._likes[item] = state.latest

    def _sorted_likes(self) -> dict[int, Key]:
        if not self._likes_sorted:
            self._likes = dict(sorted(self._likes.items(), key=lambda pair: pair[1]))
            self._likes_sorted = True
        return self._likes

    def items(self) -> Iterator[int]:
        """Every item with any feedback."""
        return iter(self._items)

    def seen(self, item: int) -> bool:
        """Whether the person has given this item any feedback but a want (in the feed: opened it). An item
        only on a watchlist has not been seen."""
        state = self._items.get(item)
        return state is not None and state.seen

    def wanted(self, item: int) -> bool:
        """Whether the item is on the person's want list (a watchlist or to-read shelf they imported) and
        not judged since."""
        state = self._items.get(item)
        return state is not None and state.wanted and not state.judged

    def liked(self, item: int) -> bool:
        return item in self._likes

    def recent_likes(self) -> list[int]:
        """The items liked now, by their latest event, oldest first (`feedback.recent_likes`)."""
        return list(self._sorted_likes())

    def latest_likes(self, count: int, keep: Callable[[int], bool] = lambda item: True) -> list[int]:
        """The last `count` of `recent_likes()` that `keep` accepts, oldest first, without walking the rest."""
        found = []
        for item in reversed(self._sorted_likes()):
            if len(found) == count:
                break
            if keep(item):
                found.append(item)
        return found[::-1]

    def latest_judgements(self) -> dict[int, bool | None]:
        """Per item, its latest judgement, newest first (`feedback.latest_judgements`)."""
        judged = sorted((item for item, state in self._items.items() if state.verdict_at is not None),
                        key=lambda item: self._items[item].verdict_at, reverse=True)
        return {item: self._items[item].verdict for item in judged}


class LabelledRows(Mapping[int, float]):
    """Preference labels (item id -> label, a mapping like `preference_labels`' dict) with their rows in one
    catalog: `value` and `labelled` per row. `refresh(item)` after an item's label changed keeps them in step
    with the mapping they read."""

    def __init__(self, catalog: Catalog, labels: Mapping[int, float]) -> None:
        self.catalog = catalog
        self._labels = labels
        self.value = np.zeros(len(catalog), np.float64)
        self.labelled = np.zeros(len(catalog), bool)
        for item, label in labels.items():
            row = catalog.row(item)
            if row is not None:
                self.value[row], self.labelled[row] = label, True
        self._rows: np.ndarray | None = None

    @classmethod
    def over(cls, catalog: Catalog, labels: Mapping[int, float]) -> "LabelledRows":
        """`labels` itself when it already carries this catalog's rows, else its rows worked out once."""
        return labels if isinstance(labels, LabelledRows) and labels.catalog is catalog else cls(catalog, labels)

    def refresh(self, item: int) -> None:
        row = self.catalog.row(item)
        if row is not None:
            label = self._labels.get(item)
            self.value[row], self.labelled[row] = (0.0, False) if label is None else (label, True)
            self._rows = None

    def rows(self) -> np.ndarray:
        """The labelled rows, in row order."""
        if self._rows is None:
            self._rows = np.flatnonzero(self.labelled)
        return self._rows

    def snapshot(self) -> "LabelledRows":
        """A copy that later changes to the labels do not reach (for training outside the lock)."""
        return LabelledRows(self.catalog, dict(self._labels))

    def __getitem__(self, item: int) -> float:
        return self._labels[item]

    def __contains__(self, item: object) -> bool:
        return item in self._labels

    def __iter__(self) -> Iterator[int]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)


class FeedbackRows:
    """A `FeedbackHistory` over one catalog's rows: the labels (`LabelledRows`), the liked rows, and the rows
    the feed leaves out (every judged item and every item with the same text as one: `twins`, item id ->
    the other items with its text). `update(items)` with what `FeedbackHistory.add` returned keeps it in step."""

    def __init__(self, catalog: Catalog, history: FeedbackHistory, twins: Mapping[int, Sequence[int]]) -> None:
        self.catalog = catalog
        self.history = history
        self.twins = twins
        self.labels = LabelledRows(catalog, history.labels)
        self._liked = np.zeros(len(catalog), bool)
        self._excluded = np.zeros(len(catalog), bool)
        self.update(history.items())

    def update(self, items: Iterable[int]) -> None:
        for item in items:
            self.labels.refresh(item)
            row = self.catalog.row(item)
            if row is not None:
                self._liked[row] = self.history.liked(item)
            if item in self.history.judged:
                for same in (item, *self.twins.get(item, ())):
                    row = self.catalog.row(same)
                    if row is not None:
                        self._excluded[row] = True

    def liked_rows(self) -> np.ndarray:
        """The rows of the items liked now, in row order."""
        return np.flatnonzero(self._liked)

    def excluded_rows(self) -> np.ndarray:
        """The rows the feed leaves out: judged items and their twins, in row order."""
        return np.flatnonzero(self._excluded)
