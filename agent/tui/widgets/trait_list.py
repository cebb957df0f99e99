"""The traits, one row each under a heading per kind, with a cursor.

A row: name, the low pole's phrase, a bar for the value (0 at the low pole, 1 at the high one)
with the value printed, the high pole's phrase (both, so that neither reads as a description of the
person on its own), a thinner bar for the confidence, a sparkline of the trend and the
markers (📌 pinned, edited). A hidden trait is one dim line without any number."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from agent.core.api import TraitReading

PIN = "📌"
TREND_WIDTH = 10
KIND_TITLES = {"personality": ("Personality", "the Big Five"), "taste": ("Taste", "")}


def _kind_order(kind: str) -> int:
    return list(KIND_TITLES).index(kind) if kind in KIND_TITLES else len(KIND_TITLES)


class ValueBar(Widget):
    """A one-line bar filled from the left in proportion to a value in 0..1 (half-cell steps)."""

    COMPONENT_CLASSES = {"value-bar--filled", "value-bar--track"}
    value: reactive[float | None] = reactive(None)

    def __init__(self, glyph: str = "━", half: str = "╸", **kwargs) -> None:
        super().__init__(**kwargs)
        self.glyph, self.half = glyph, half

    def render(self) -> Text:
        width = self.size.width
        if self.value is None or width <= 0:
            return Text()
        halves = round(min(max(self.value, 0.0), 1.0) * width * 2)
        full, half = divmod(halves, 2)
        filled = self.get_component_rich_style("value-bar--filled")
        track = self.get_component_rich_style("value-bar--track")
        text = Text(self.glyph * full, filled, no_wrap=True, overflow="crop")
        if half:
            text.append(self.half, filled)
        text.append(self.glyph * (width - full - half), track)
        return text


class TraitRow(Horizontal):
    """One trait. `reading` is replaced in place when the traits reload."""

    def __init__(self, reading: TraitReading) -> None:
        super().__init__(classes="trait-row")
        self.reading = reading

    def compose(self) -> ComposeResult:
        yield Static(classes="name")
        yield Static(classes="low")
        yield ValueBar(classes="bar")
        yield Static(classes="value")
        yield Static(classes="high")
        yield ValueBar(classes="confidence-bar")
        yield Static(classes="confidence")
        with Horizontal(classes="trend"):
            yield Sparkline([])
        yield Static(classes="flags")
        yield Static(classes="hidden-note")

    def on_mount(self) -> None:
        self.update_reading(self.reading)

    def update_reading(self, reading: TraitReading) -> None:
        self.reading = reading
        self.set_class(reading.hidden, "-hidden")
        if reading.hidden:
            self.query_one(".hidden-note", Static).update(
                Text(f"{reading.name} — hidden (press v to show)", no_wrap=True, overflow="ellipsis"))
            return
        self.query_one(".name", Static).update(Text(reading.name, no_wrap=True, overflow="ellipsis"))
        self.query_one(".low", Static).update(Text(reading.low, no_wrap=True, overflow="ellipsis", justify="right"))
        self.query_one(".bar", ValueBar).value = reading.value
        self.query_one(".value", Static).update(f"{reading.value:.2f}")
        self.query_one(".high", Static).update(Text(reading.high, no_wrap=True, overflow="ellipsis"))
        confidence = reading.confidence or 0.0
        self.query_one(".confidence-bar", ValueBar).value = confidence
        self.query_one(".confidence", Static).update(Text(f"{confidence:.0%}", justify="right"))
        trend = self.query_one(Sparkline)
        trend.data = [value for _, value in reading.trend]
        trend.styles.width = min(len(reading.trend), TREND_WIDTH)  # a cell a point, up to the column's width
        trend.display = len(reading.trend) >= 2
        flags = Text(no_wrap=True, overflow="crop")
        if reading.pinned:
            flags.append(PIN)
        if reading.edited:
            flags.append((" " if flags else "") + "edited", "italic")
        self.query_one(".flags", Static).update(flags)

    def on_click(self, event: events.Click) -> None:
        self.post_message(TraitList.Clicked(self.reading.id))


class TraitHeading(Horizontal):
    """A kind's heading; the first one also labels the columns."""

    def __init__(self, kind: str, labels: bool) -> None:
        super().__init__(classes="trait-heading")
        self.kind, self.labels = kind, labels

    def compose(self) -> ComposeResult:
        title, note = KIND_TITLES.get(self.kind, (self.kind.capitalize(), ""))
        yield Static(Text(title, no_wrap=True), classes="name")
        yield Static(Text(note, no_wrap=True, overflow="ellipsis"), classes="note")
        yield Static("value" if self.labels else "", classes="bar-label")
        yield Static("", classes="high-label")
        yield Static("sure" if self.labels else "", classes="confidence-label")
        yield Static("trend" if self.labels else "", classes="trend-label")


class TraitList(VerticalScroll, can_focus=True, inherit_bindings=False):
    """The rows and a cursor over them (up/down; left and right are the screen's)."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("home", "cursor_to(0)", show=False),
        Binding("end", "cursor_to(-1)", show=False),
        Binding("pageup", "cursor(-5)", show=False),
        Binding("pagedown", "cursor(5)", show=False),
    ]

    cursor = reactive(0, init=False)

    class Highlighted(Message):
        def __init__(self, reading: TraitReading | None) -> None:
            super().__init__()
            self.reading = reading

    class Clicked(Message):
        def __init__(self, trait_id: str) -> None:
            super().__init__()
            self.trait_id = trait_id

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.readings: list[TraitReading] = []

    @property
    def rows(self) -> list[TraitRow]:
        return list(self.query(TraitRow))

    @property
    def current(self) -> TraitReading | None:
        return self.readings[self.cursor] if 0 <= self.cursor < len(self.readings) else None

    def show(self, readings: list[TraitReading]) -> None:
        """Show new readings: in place when the traits are the same ones, else rebuilt.
        The cursor stays on the same trait."""
        current = self.current.id if self.current else None
        ordered = sorted(readings, key=lambda r: _kind_order(r.kind))  # stable: catalog order within a kind
        same = [r.id for r in ordered] == [r.id for r in self.readings]
        self.readings = ordered
        if same:
            for row, reading in zip(self.rows, ordered):
                row.update_reading(reading)
        else:
            self.remove_children()
            widgets: list[Widget] = []
            kind = None
            for reading in ordered:
                if reading.kind != kind:
                    kind = reading.kind
                    widgets.append(TraitHeading(kind, labels=not widgets))
                widgets.append(TraitRow(reading))
            self.mount_all(widgets)
        ids = [r.id for r in ordered]
        self.select(current if current in ids else None, post=True)

    def select(self, trait_id: str | None, post: bool = True) -> None:
        ids = [r.id for r in self.readings]
        index = ids.index(trait_id) if trait_id in ids else min(self.cursor, max(len(ids) - 1, 0))
        if index != self.cursor:
            self.cursor = index  # the watcher posts Highlighted
        else:
            self._mark()
            if post:
                self.post_message(self.Highlighted(self.current))

    def watch_cursor(self) -> None:
        self._mark()
        self.post_message(self.Highlighted(self.current))

    def _mark(self) -> None:
        def mark() -> None:
            for index, row in enumerate(self.rows):
                row.set_class(index == self.cursor, "-selected")
                if index == self.cursor:
                    self.scroll_to_widget(row, animate=False)

        self.call_after_refresh(mark)  # rows mounted just now exist after the refresh

    def action_cursor(self, step: int) -> None:
        if self.readings:
            self.cursor = min(max(self.cursor + step, 0), len(self.readings) - 1)

    def action_cursor_to(self, index: int) -> None:
        if self.readings:
            self.cursor = index % len(self.readings)

    def on_trait_list_clicked(self, event: Clicked) -> None:
        event.stop()
        self.focus()
        self.select(event.trait_id)
