"""`?`: every key the current screen answers to, with what it does (the footer shows only the main ones)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer


def keys_of(screen: Screen) -> list[tuple[str, str]]:
    """(key as shown, what it does) for every enabled binding the screen's focused widget, the screen and
    the app answer to, in the order the footer would list them; bindings without a description, which
    Textual keeps for its own plumbing, are left out."""
    app = screen.app
    merged: dict[str, list[str]] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        if not active.enabled or not binding.description:
            continue
        key = binding.key_display or app.get_key_display(binding)
        keys = merged.setdefault(binding.description, [])
        if key not in keys:
            keys.append(key)
    return [(" / ".join(keys), description) for description, keys in merged.items()]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss(None)", "Close", key_display="esc")]

    def __init__(self, title: str, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text, self.keys = title, keys

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help") as box:
            box.border_title = f"keys: {self.title_text}"
            table = DataTable(show_cursor=False, zebra_stripes=True, id="help-keys")
            table.add_column("key")
            table.add_column("what it does")
            for key, description in self.keys:
                table.add_row(Text(key, style="bold"), description)
            yield table
        yield Footer()
