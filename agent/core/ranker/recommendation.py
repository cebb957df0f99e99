"""One entry of what the ranker puts forward, as the person is shown it."""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.store import Item


@dataclass(frozen=True)
class Recommendation:
    item: Item
    score: float
    reason: str
    exploring: bool
    because: Item | None
    seen: bool = False  # the person has opened it (opening is not a judgement: it stays in the feed)
