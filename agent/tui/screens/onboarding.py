"""First run: import the demo catalog if there is none, pick favourites, describe your taste."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Header, Input, ProgressBar, SelectionList, Static
from textual.widgets.selection_list import Selection
from textual.worker import get_current_worker

from agent.core.api import HOW_TO_JOIN, WHAT_LEAVES, Item
from agent.tui.common import genres_of, reported, title_with_year

CHOICES = 24
TICK = "✓"  # a ticked favourite, beside the colour the list gives it


class ImportCancelled(Exception):
    pass


class FavouritesList(SelectionList[str]):
    """Space toggles; enter means done, as everywhere on this screen; m shows more."""

    BINDINGS = [Binding("space", "select", "Toggle"), Binding("enter", "screen.done", "Done", show=False),
                Binding("m", "screen.more", "More")]


class OnboardingScreen(Screen):
    DEFAULT_CSS = """
    OnboardingScreen #federation { margin: 1 2 0 2; border: none; padding: 0; }
    OnboardingScreen #federation-note { margin: 0 2 0 8; height: auto; color: $text-muted; }
    """

    BINDINGS = [
        Binding("ctrl+s", "done", "Done", priority=True),
        Binding("escape", "skip", "Skip"),
        Binding("i", "import_demo", "Import demo catalog"),
        Binding("slash", "find", "Search", key_display="/"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.catalog_empty = False
        self.shown: dict[str, Item] = {}  # ref -> item, every choice in the list

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            "Welcome to ownrec. Mark a few favourites (space toggles; / searches, m shows more), describe your "
            "taste if you like, then press ctrl+s. Everything stays on this machine.", id="intro")
        with Vertical(id="import"):
            yield Static("Your catalog is empty. Import the demo catalog: 1,682 films from MovieLens-100K.")
            yield Button("Import the demo catalog (i)", id="import-button", variant="primary")
            yield Static("", id="import-step")
            yield ProgressBar(id="import-progress", show_eta=False)
        yield Input(placeholder="/ search for a favourite, then enter", id="find")
        yield FavouritesList(id="choices")
        yield Input(placeholder="describe your taste in a sentence (optional)", id="taste")
        # Consent to federated sync: asked once here, off unless ticked; the Privacy screen (p) changes it.
        yield Checkbox("Join the federation that improves the shared model (optional; off unless you tick it)",
                       value=False, id="federation")
        yield Static(Text.assemble(WHAT_LEAVES + " Details: ", ("docs/threat-model.md", "underline"),
                                   "."), id="federation-note")
        with Horizontal(id="buttons"):
            yield Button("Done (ctrl+s)", id="done", variant="success")
            yield Button("Skip (esc)", id="skip")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#choices").border_title = "favourites"
        self.query_one("#import").display = False
        self.query_one("#import-progress").display = False
        self.query_one("#import-step").display = False
        self.load_choices()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "import_demo":
            return self.catalog_empty
        if action in ("more", "find"):
            return not self.catalog_empty
        return True

    # -- actions ------------------------------------------------------------------------

    def action_import_demo(self) -> None:
        if self.catalog_empty:
            self.query_one("#import-button").disabled = True
            self.query_one("#import-progress").display = True
            self.query_one("#import-step").display = True
            self.import_demo()

    def action_done(self) -> None:
        liked = list(self.query_one("#choices", SelectionList).selected)
        self.finish(liked, self.query_one("#taste", Input).value.strip() or None,
                    self.query_one("#federation", Checkbox).value)

    def action_skip(self) -> None:
        if isinstance(self.focused, Input):  # escape leaves the text field before it skips
            self.query_one("#choices").focus()
        else:
            self.finish([], None, False)  # skipping answers "no" to the federation as well

    def action_more(self) -> None:
        self.load_more([item.id for item in self.shown.values()])

    def action_find(self) -> None:
        self.query_one("#find", Input).focus()

    @on(SelectionList.SelectedChanged)
    def _count_selected(self, event: SelectionList.SelectedChanged) -> None:
        choices = event.selection_list
        count = len(choices.selected)
        choices.border_subtitle = f"{count} selected" if count else ""
        selected = set(choices.selected)
        for index in range(choices.option_count):
            ref = choices.get_option_at_index(index).value
            choices.replace_option_prompt_at_index(index, _prompt(self.shown[ref], ref in selected))

    @on(Button.Pressed, "#import-button")
    def _import_pressed(self) -> None:
        self.action_import_demo()

    @on(Button.Pressed, "#done")
    @on(Input.Submitted, "#taste")
    def _done_pressed(self) -> None:
        self.action_done()

    @on(Input.Submitted, "#find")
    def _find_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.find(event.value.strip())

    @on(Button.Pressed, "#skip")
    def _skip_pressed(self) -> None:
        self.action_skip()

    # -- workers ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="choices")
    @reported
    def load_choices(self) -> None:
        agent = self.app.agent
        empty = agent.item_count() == 0
        self.app.call_from_thread(self._show_choices, empty, [] if empty else agent.onboarding_choices(CHOICES))

    @work(thread=True, exclusive=True, group="choices")
    @reported
    def load_more(self, shown: list[int]) -> None:
        items = self.app.agent.onboarding_choices(CHOICES, shown)
        if not items:
            self.app.call_from_thread(self.notify, "that is every item in the catalog", markup=False)
        self.app.call_from_thread(self._add_choices, items, False)

    @work(thread=True, exclusive=True, group="find")
    @reported
    def find(self, text: str) -> None:
        items = self.app.agent.search(text, 20)
        if not items:
            self.app.call_from_thread(self.notify, f"nothing in the catalog matches “{text}”", markup=False)
            return
        self.app.call_from_thread(self._add_choices, items, True)

    @work(thread=True, exclusive=True, group="import")
    @reported
    def import_demo(self) -> None:
        worker = get_current_worker()

        def step(label: str):
            def progress(done: int, total: int) -> None:
                if worker.is_cancelled:  # the app is closing: stop (what is done is kept)
                    raise ImportCancelled
                self.app.call_from_thread(self._progress, label, done, total)
            return progress

        try:
            report = self.app.agent.import_demo(
                progress=step("Encoding the films' text"),
                prior_progress=step("Learning from the public MovieLens ratings (release 0; other people's, never yours)"))
            choices = self.app.agent.onboarding_choices(CHOICES)
        finally:
            self.app.call_from_thread(self._import_ended)
        self.app.call_from_thread(self.notify, f"imported {report.items_added} items")
        self.app.call_from_thread(self._show_choices, not choices, choices)

    @work(thread=True, exclusive=True, group="finish")
    @reported
    def finish(self, liked: list[str], description: str | None, join_federation: bool) -> None:
        agent = self.app.agent
        agent.finish_onboarding(liked, description)
        agent.set_sync(join_federation, "onboarding")
        if join_federation and agent.sync_pin() is None:
            self.app.call_from_thread(self.app.notify, f"Sync is on; nothing is sent until a coordinator is pinned: "
                                      f"{HOW_TO_JOIN}.", markup=False)
        self.app.call_from_thread(self.app.show_feed)

    def _progress(self, label: str, done: int, total: int) -> None:
        self.query_one("#import-step", Static).update(label)
        self.query_one("#import-progress", ProgressBar).update(total=total, progress=done)

    def _import_ended(self) -> None:
        self.query_one("#import-button").disabled = False
        self.query_one("#import-progress").display = False
        self.query_one("#import-step").display = False

    def _show_choices(self, empty: bool, items: list[Item]) -> None:
        self.catalog_empty = empty
        self.query_one("#import").display = empty
        self.query_one("#choices").display = self.query_one("#taste").display = not empty
        self.query_one("#federation").display = self.query_one("#federation-note").display = not empty
        self.query_one("#find").display = not empty
        self.shown = {}
        self.query_one("#choices", SelectionList).clear_options()
        self._add_choices(items, False)
        if not items:
            self.query_one("#import-button").focus()
        self.refresh_bindings()

    def _add_choices(self, items: list[Item], first: bool) -> None:
        """Add the items not in the list yet: found ones at the top (highlighted), more at the end."""
        choices = self.query_one("#choices", SelectionList)
        new = [item for item in items if item.ref not in self.shown]
        for item in new:
            self.shown[item.ref] = item
        if first and new:
            kept = [(self.shown[choices.get_option_at_index(i).value], choices.get_option_at_index(i).value in
                     choices.selected) for i in range(choices.option_count)]
            choices.clear_options()
            choices.add_options([Selection(_prompt(item, False), item.ref) for item in new]
                                + [Selection(_prompt(item, ticked), item.ref, ticked) for item, ticked in kept])
            choices.highlighted = 0
        else:
            at = choices.option_count
            choices.add_options(Selection(_prompt(item, False), item.ref) for item in new)
            if new and at:
                choices.highlighted = at
            elif new:
                choices.highlighted = 0
        if first and not new and items:  # everything found is already listed: go to the first of them
            for index in range(choices.option_count):
                if choices.get_option_at_index(index).value == items[0].ref:
                    choices.highlighted = index
        if choices.option_count:
            choices.focus()


def _prompt(item: Item, ticked: bool) -> Text:
    return Text.assemble((f"{TICK} " if ticked else "  ", "bold"), title_with_year(item), "  ",
                         (genres_of(item), "dim"))
