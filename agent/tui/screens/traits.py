"""The person's traits: what ownrec infers, why, and the person's own say over it.

Every edit runs in a thread worker, one after another in the order they were asked for (a nudge
reads the value the previous edit left), and the readings reload after each. Dismisses with
True when anything changed, so the feed re-ranks."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Header, Input, Static

from agent.core.api import NUDGE, REACHABLE, TraitEdit, TraitError, TraitReading, Traits
from agent.tui.common import reported
from agent.tui.screens.confirm import ConfirmScreen
from agent.tui.widgets import TraitDetail, TraitList

# An edit: given the traits, make it and say what happened, as (status line, whether anything
# changed, the trait to select).
Run = Callable[[Traits], tuple[str, bool, str | None]]
Done = Callable[[str | None], None]  # called with the error, or None when the edit was made

NOTE = "a number from 0 to 1, or a percentage; 0.50 is neutral"
EDITS_SHOWN = 3
HELP = "values run from the low pole (0) to the high pole (1); 0.50 is neutral"


@dataclass
class _Pending:
    run: Run
    done: Done | None = None


@dataclass
class _Outcome:
    status: str | None = None
    changed: bool = False
    select: str | None = None
    error: str | None = None
    unexpected: bool = False  # not a TraitError: also a notification
    readings: list[TraitReading] | None = None
    edits: list[TraitEdit] | None = None


def _name(traits: Traits, trait_id: str) -> str:
    try:
        return traits.resolve(trait_id).name
    except TraitError:  # an edit of a trait since removed from traits.toml
        return trait_id


def _said(traits: Traits, edit: TraitEdit) -> tuple[str, bool, str]:
    return f"{_name(traits, edit.trait_id)} {edit.describe()}", True, edit.trait_id


def _undo(traits: Traits) -> tuple[str, bool, str | None]:
    edit = traits.undo()
    if edit is None:
        return "nothing to undo", False, None
    return f"undid {_name(traits, edit.trait_id)}: {edit.describe().removesuffix(' (undone)')}", True, edit.trait_id


def parse_value(text: str) -> float | str:
    """A number (0.35, .35 or 35%); anything else is passed on as typed, for the core to refuse
    in its own words."""
    text = text.strip()
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return text


class Portrait(Static):
    """Room for a short written portrait of the person above the traits; empty (and taking no
    space) until there is something real to say."""

    def on_mount(self) -> None:
        self.set_text(None)

    def set_text(self, text: str | None) -> None:
        self.update(Text(text or ""))
        self.display = bool(text)


class TraitsScreen(Screen[bool]):
    SUB_TITLE = "your traits"
    NUDGE_GROUP = Binding.Group("Nudge", compact=True)
    BINDINGS = [
        Binding("left,minus", "nudge(-1)", "Lower", key_display="←", group=NUDGE_GROUP),
        Binding("right,plus", "nudge(1)", "Raise", key_display="→", group=NUDGE_GROUP),
        Binding("equals_sign,enter", "set_value", "Set", key_display="="),
        Binding("p", "pin", "Pin/unpin"),
        Binding("h", "hide", "Hide"),
        Binding("v", "show", "Show"),
        Binding("r", "reset", "Reset"),
        Binding("f", "forget", "Forget"),
        Binding("u", "undo", "Undo"),
        Binding("w", "portrait", "Portrait"),
        Binding("escape,t", "back", "Back", key_display="esc"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.changed = False  # anything edited: the feed re-ranks on the way back
        self._queue: deque[_Pending] = deque()
        self._busy = False
        self._leaving = False
        self._edits: dict[str, list[TraitEdit]] = {}  # per trait, newest first

    def compose(self) -> ComposeResult:
        yield Header()
        yield Portrait(id="portrait")
        yield TraitList(id="traits")
        with VerticalScroll(id="evidence") as panel:
            panel.border_title = "trait"
            yield TraitDetail()
        yield Static("reading your traits…", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.trait_list.focus()
        self.load()

    @property
    def trait_list(self) -> TraitList:
        return self.query_one(TraitList)

    @property
    def current(self) -> TraitReading | None:
        return self.trait_list.current

    def say(self, text: str, error: bool = False) -> None:
        if self.is_attached:
            self.query_one("#status", Static).update(Text(text, style="bold red" if error else ""))

    # -- the portrait (written by the local LLM from the numbers; never the reverse) ---------

    @work(thread=True, exclusive=True, group="portrait")
    @reported
    def show_cached_portrait(self) -> None:
        portrait = self.app.agent.cached_portrait()
        self.app.call_from_thread(self.query_one(Portrait).set_text, portrait.text if portrait else None)

    def action_portrait(self) -> None:
        self.say("writing a portrait with the local language model…")
        self.write_portrait()

    @work(thread=True, exclusive=True, group="portrait")
    @reported
    def write_portrait(self) -> None:
        portrait = self.app.agent.write_portrait()
        text = portrait.text or None
        self.app.call_from_thread(self.query_one(Portrait).set_text, text)
        self.app.call_from_thread(self.say, "portrait written by the local LLM from the numbers below" if text
                                  else "not enough clear traits yet for a portrait")

    # -- loading ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="trait-load")
    @reported
    def load(self) -> None:
        traits = self.app.agent.traits
        readings, edits = traits.readings(), traits.history()
        problems = [str(problem) for problem in traits.problems]
        self.app.call_from_thread(self._loaded, readings, edits, problems)

    def _loaded(self, readings: list[TraitReading], edits: list[TraitEdit], problems: list[str]) -> None:
        if not self.is_attached:  # left before the traits were read
            return
        self._present(readings, edits)
        self.show_cached_portrait()
        if problems:
            more = f" (and {len(problems) - 1} more: `ownrec doctor`)" if len(problems) > 1 else ""
            self.say(f"traits.toml: {problems[0]}{more}", error=True)
        else:
            self.say(HELP if readings else "no traits are defined")

    def _present(self, readings: list[TraitReading], edits: list[TraitEdit]) -> None:
        self._edits = {}
        for edit in edits:  # newest first
            self._edits.setdefault(edit.trait_id, []).append(edit)
        self.trait_list.show(readings)  # the detail follows from TraitList.Highlighted

    @on(TraitList.Highlighted)
    def _highlighted(self, event: TraitList.Highlighted) -> None:
        reading = event.reading
        edits = self._edits.get(reading.id, [])[:EDITS_SHOWN] if reading else []
        self.query_one(TraitDetail).show(reading, edits)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        reading = self.current
        # Every key stays in the footer; one that does nothing for this row is shown dimmed (None).
        if action == "show":
            return True if reading is not None and reading.hidden else None
        if action == "hide":
            return True if reading is not None and not reading.hidden else None
        if action in ("nudge", "set_value", "pin", "reset", "forget"):
            return None if reading is None or (reading.hidden and action != "forget") else True
        return True

    # -- actions ------------------------------------------------------------------------

    def _editable(self) -> TraitReading | None:
        reading = self.current
        if reading is not None and reading.hidden:
            self.say(f"{reading.name} is hidden: press v to show it first")
            return None
        return reading

    def action_nudge(self, direction: int) -> None:
        reading = self._editable()
        if reading is None or reading.value is None:
            return
        low, high = REACHABLE
        if (direction > 0 and reading.value >= high - 0.005) or (direction < 0 and reading.value <= low + 0.005):
            self.say(f"{reading.name} is already as {'high' if direction > 0 else 'low'} as it goes")
            return
        self.submit(lambda traits: _said(traits, traits.nudge(reading.id, direction * NUDGE)))

    def action_set_value(self) -> None:
        reading = self._editable()
        if reading is None:
            return

        def apply(value: float | str, done: Done) -> None:
            self.submit(lambda traits: _said(traits, traits.set(reading.id, value)), done)  # type: ignore[arg-type]

        self.app.push_screen(TraitValueScreen(reading, apply))

    def action_pin(self) -> None:
        reading = self._editable()
        if reading is not None:
            pinned = reading.pinned
            self.submit(lambda traits: _said(traits, traits.unpin(reading.id) if pinned else traits.pin(reading.id)))

    def action_hide(self) -> None:
        reading = self.current
        if reading is not None and not reading.hidden:
            self.submit(lambda traits: _said(traits, traits.hide(reading.id)))

    def action_show(self) -> None:
        reading = self.current
        if reading is not None and reading.hidden:
            self.submit(lambda traits: _said(traits, traits.show(reading.id)))

    def action_reset(self) -> None:
        reading = self._editable()
        if reading is not None:
            self.submit(lambda traits: _said(traits, traits.reset(reading.id)))

    def action_forget(self) -> None:
        reading = self.current
        if reading is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.submit(lambda traits: _said(traits, traits.forget(reading.id)))
            else:
                self.say(f"{reading.name} kept as it was")

        self.app.push_screen(ConfirmScreen(
            f"Forget {reading.name}?",
            f"This resets {reading.name}, takes out what your feedback taught about it (it reads neutral, "
            "0.50), and drops its evidence and its trend. Your feedback itself stays. u undoes it.",
            confirm="Forget"), confirmed)

    def action_undo(self) -> None:
        self.submit(_undo)

    def action_back(self) -> None:
        if self._busy:
            self._leaving = True  # once the edits asked for are made, so the feed ranks on them
            self.say("finishing the edit…")
        else:
            self.dismiss(self.changed)

    # -- the edit queue -----------------------------------------------------------------

    def submit(self, run: Run, done: Done | None = None) -> None:
        self._queue.append(_Pending(run, done))
        if not self._busy:
            self._next()

    def _next(self) -> None:
        if not self._queue:
            self._busy = False
            if self._leaving:
                self.dismiss(self.changed)
            return
        self._busy = True
        self.apply(self._queue.popleft())

    @work(thread=True, group="trait-edit")
    def apply(self, pending: _Pending) -> None:
        outcome = _Outcome()
        try:
            traits = self.app.agent.traits
            try:
                outcome.status, outcome.changed, outcome.select = pending.run(traits)
            except TraitError as error:
                outcome.error = str(error)
            outcome.readings, outcome.edits = traits.readings(), traits.history()
        except Exception as error:  # whatever it is, say it and keep the app (and the queue) going
            outcome.error = outcome.error or str(error) or type(error).__name__
            outcome.unexpected = True
        self.app.call_from_thread(self._applied, pending, outcome)

    def _applied(self, pending: _Pending, outcome: _Outcome) -> None:
        self.changed |= outcome.changed
        if outcome.readings is not None and self.is_attached:
            self._present(outcome.readings, outcome.edits or [])
            if outcome.select:
                self.trait_list.select(outcome.select)
        if outcome.error:
            self.say(outcome.error, error=True)
            if outcome.unexpected:
                self.app.notify(outcome.error, title="ownrec", severity="error", markup=False)
        elif outcome.status:
            self.say(outcome.status)
        if pending.done is not None:
            pending.done(outcome.error)
        self._next()


class ValueInput(Input):
    BINDINGS = [Binding("enter", "submit", "Set")]


class TraitValueScreen(ModalScreen[None]):
    """Type a value for one trait. A value the core refuses shows its reason and changes
    nothing; the modal stays open to try again."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, reading: TraitReading, apply: Callable[[float | str, Done], None]) -> None:
        super().__init__()
        self.reading = reading
        self.apply = apply
        self._open = True

    def compose(self) -> ComposeResult:
        r = self.reading
        with Vertical(id="value-box") as box:
            box.border_title = f"Set {r.name}"
            yield Static(Text.assemble(("0  ", "bold"), r.low, ("\n1  ", "bold"), r.high,
                                       ("\nnow ", "dim"), f"{r.value:.2f}"), id="value-poles")
            yield ValueInput(value=f"{r.value:.2f}", placeholder="a number from 0 to 1", id="value-input")
            yield Static(Text(NOTE, style="dim"), id="value-note")
        yield Footer()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.query_one("#value-note", Static).update(Text("setting…", style="dim"))  # edits take a moment
        self.apply(parse_value(event.value), self._done)

    def _done(self, error: str | None) -> None:
        if not self._open:
            return
        if error:
            self.query_one("#value-note", Static).update(Text(error, style="bold red"))
            self.query_one(Input).focus()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self._open = False
        self.dismiss()
