"""Shown while the agent opens, and instead of the app when it cannot start."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Middle
from textual.screen import Screen
from textual.widgets import Footer, Static


class StartScreen(Screen):
    BINDINGS = [Binding("q", "app.quit", "Quit")]

    # No Header here: this screen may be replaced before a Header's first title update runs,
    # which Textual 8 reports as an error.
    def compose(self) -> ComposeResult:
        with Middle(), Center():
            yield Static("opening ownrec…", id="message")
        yield Footer()

    def show_progress(self, text: str) -> None:
        self.query_one("#message", Static).update(text)

    def show_problem(self, text: str) -> None:
        message = self.query_one("#message", Static)
        message.border_title = "ownrec cannot start"
        message.add_class("problem")
        message.update(Text(text))
