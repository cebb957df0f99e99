"""Search the catalog as you type. Dismisses with (item, kind) when an item was rated from its
details, so the feed records it and re-ranks; with None on escape."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, OptionList, Static
from textual.widgets.option_list import Option

from agent.core.api import Item
from agent.tui.common import genres_of, reported, title_with_year
from agent.tui.screens.details import DetailsScreen

DEBOUNCE_SECONDS = 0.25


class SearchInput(Input):
    BINDINGS = [Binding("enter", "submit", "Open first")]


class SearchScreen(Screen[tuple[Item, str] | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Back"),
        Binding("enter", "open", "Details"),
        Binding("down", "focus_results", "Results", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.results: list[Item] = []
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield SearchInput(placeholder="search titles and descriptions", id="query")
        yield OptionList(id="results")
        yield Static("type to search", id="search-status")
        yield Footer()

    @on(Input.Changed)
    def _debounce(self, event: Input.Changed) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_SECONDS, lambda: self.search(event.value))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.search(event.value, open_first=True)

    @work(thread=True, exclusive=True)
    @reported
    def search(self, text: str, open_first: bool = False) -> None:
        items = self.app.agent.search(text) if text.strip() else []
        self.app.call_from_thread(self._show, text, items, open_first)

    def _show(self, text: str, items: list[Item], open_first: bool) -> None:
        self.results = items
        results = self.query_one("#results", OptionList)
        results.clear_options()
        results.add_options(
            Option(Text.assemble(title_with_year(item), "  ", (genres_of(item), "dim"))) for item in items)
        if items:
            results.highlighted = 0
        status = f"{len(items)} result{'' if len(items) == 1 else 's'} for “{text.strip()}”" if text.strip() else "type to search"
        self.query_one("#search-status", Static).update(Text(status))
        if open_first and items:
            self.open(items[0])

    def action_focus_results(self) -> None:
        self.query_one("#results").focus()

    def action_open(self) -> None:
        index = self.query_one("#results", OptionList).highlighted
        if index is not None and index < len(self.results):
            self.open(self.results[index])

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.open(self.results[event.option_index])

    def open(self, item: Item) -> None:
        def rated(kind: str | None) -> None:
            if kind:
                self.dismiss((item, kind))

        self.app.push_screen(DetailsScreen(item), rated)
