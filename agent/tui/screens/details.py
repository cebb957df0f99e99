"""One item in full. Dismisses with the feedback kind chosen (like/dislike/skip) or None;
the screen that opened it records that feedback."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer

from agent.core.api import Item, Recommendation
from agent.tui.common import reported
from agent.tui.widgets import ItemCard


class DetailsScreen(ModalScreen[str | None]):
    BINDINGS = [
        Binding("l", "dismiss('like')", "Like"),
        Binding("d", "dismiss('dislike')", "Dislike"),
        Binding("s", "dismiss('skip')", "Skip"),
        Binding("escape", "dismiss(None)", "Back"),
    ]

    def __init__(self, item: Item, recommendation: Recommendation | None = None) -> None:
        super().__init__()
        self.item = item
        self.recommendation = recommendation

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details") as panel:
            panel.border_title = "details"
            yield ItemCard(self.item, self.recommendation)
        yield Footer()

    def on_mount(self) -> None:
        self.record_open()

    @work(thread=True)
    @reported
    def record_open(self) -> None:
        self.app.agent.feedback(self.item.ref, "open", origin="tui")
