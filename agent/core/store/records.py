"""What the store holds, as plain data: items (as importers make them and as stored), feedback rows, and the
store's errors."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from agent.core.store.signals import PublicSignals

# "want": on a watchlist or a to-read shelf; wanting to see something says nothing yet about liking it, so
# the ranker learns nothing from it (agent.core.ranker.feedback) and it never counts as a judgement.
FEEDBACK_KINDS = ("like", "dislike", "skip", "rating", "open", "want")


class StoreError(RuntimeError):
    pass


class UnknownItem(StoreError):
    pass


class SearchError(StoreError):
    """A search that cannot be run as given (too long, or not text)."""


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewItem:
    """An item as an importer produces it, before it has a local id."""

    source: str
    external_id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    signals: PublicSignals = field(default_factory=PublicSignals)


@dataclass(frozen=True)
class Item:
    id: int
    source: str
    external_id: str
    title: str
    text: str
    text_hash: str
    metadata: dict[str, Any]
    signals: PublicSignals = field(default_factory=PublicSignals)

    @property
    def ref(self) -> str:
        """A stable, human-typeable reference: `source:external_id`."""
        return f"{self.source}:{self.external_id}"

    @property
    def display_title(self) -> str:
        """The title as people write it ("The Usual Suspects", not "Usual Suspects, The")."""
        return self.metadata.get("display_title") or self.title

    @property
    def year(self) -> int | None:
        year = self.metadata.get("year")
        return int(year) if year not in (None, "") else None


@dataclass(frozen=True)
class Interaction:
    id: int
    item_id: int
    kind: str
    value: float | None
    at: float
    origin: str


@dataclass(frozen=True)
class UpsertResult:
    added: int
    updated: int
    unchanged: int
    item_ids: list[int]


def item_from_row(row: dict[str, Any]) -> Item:
    return Item(
        id=row["id"],
        source=row["source"],
        external_id=row["external_id"],
        title=row["title"],
        text=row["text"],
        text_hash=row["text_hash"],
        metadata=json.loads(row["metadata"] or "{}"),
        signals=PublicSignals(row.get("popularity"), row.get("avg_rating"), row.get("published")),
    )


def interaction_from_row(row: dict[str, Any]) -> Interaction:
    return Interaction(row["id"], row["item_id"], row["kind"], row["value"], row["at"], row["origin"])
