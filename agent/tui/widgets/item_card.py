"""Everything ownrec knows about one item: title, year, genres, text, and why it is shown."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from agent.core.api import Item, Recommendation
from agent.tui.common import genres_of


class ItemCard(Static):
    def __init__(self, item: Item, recommendation: Recommendation | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.item = item
        self.recommendation = recommendation

    def render(self) -> Group:
        item, rec = self.item, self.recommendation
        facts = [str(item.year) if item.year else "", genres_of(item), item.source]
        parts = [
            Text(item.display_title, style="bold"),
            Text(" · ".join(f for f in facts if f), style="dim"),
            Text(),
            Text(item.text),
        ]
        if rec is not None:
            parts += [Text(), Text.assemble(("score ", "dim"), f"{rec.score:.2f}", ("  ·  ", "dim"),
                                            (rec.reason, "italic magenta" if rec.exploring else "italic"))]
        return Group(*parts)
