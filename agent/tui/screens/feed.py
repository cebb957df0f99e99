"""The main screen: the ranked feed. Feedback re-ranks it at once; rated items leave it."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from agent.core.api import Interaction, Item, Recommendation
from agent.tui.common import PAST_TENSE, reported, title_with_year
from agent.tui.screens.chat import ChatScreen
from agent.tui.screens.details import DetailsScreen
from agent.tui.screens.search import SearchScreen
from agent.tui.screens.traits import TraitsScreen
from agent.tui.widgets import FeedTable


class FeedScreen(Screen):
    BINDINGS = [
        Binding("l", "feedback('like')", "Like"),
        Binding("d", "feedback('dislike')", "Dislike"),
        Binding("s", "feedback('skip')", "Skip"),
        Binding("u", "undo", "Undo"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("t", "traits", "Traits"),
        Binding("c", "chat", "Chat"),
        Binding("m", "model", "Model"),
        Binding("p", "privacy", "Privacy"),
        Binding("r", "refresh", "Refresh", show=False),  # the feed re-ranks by itself; r stays for habit
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        # Every ranking request gets a ticket; an answer older than the one shown is dropped.
        self._tickets = 0
        self._shown = 0
        # The feedback given last on this screen (its item and stored row), which `u` takes back.
        self._last: tuple[Item, Interaction] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield FeedTable(id="feed")
        yield Static("ranking…", id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()

    @property
    def table(self) -> FeedTable:
        return self.query_one(FeedTable)

    # -- actions ------------------------------------------------------------------------

    def action_refresh(self, note: str | None = None) -> None:
        self._tickets += 1
        self.rank(self._tickets, note)

    def action_feedback(self, kind: str) -> None:
        rec = self.table.current
        if rec is not None:
            self.give(rec.item, kind)

    def action_undo(self) -> None:
        if self._last is None:
            self.notify("nothing to undo: no feedback given on this screen yet", markup=False)
            return
        item, interaction = self._last
        self._last = None
        self._tickets += 1
        self.take_back(item, interaction, self._tickets)

    def action_details(self) -> None:
        rec = self.table.current
        if rec is not None:
            self.app.push_screen(DetailsScreen(rec.item, rec), lambda kind: kind and self.give(rec.item, kind))

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_details()

    def action_search(self) -> None:
        self.app.push_screen(SearchScreen(), lambda rated: rated and self.give(*rated))

    def action_traits(self) -> None:
        def back(changed: bool | None) -> None:
            if changed:
                self.action_refresh("re-ranked after your trait edits")

        self.app.push_screen(TraitsScreen(), back)

    def action_chat(self) -> None:
        def back(rated: bool | None) -> None:
            if rated:
                self.action_refresh("re-ranked after your feedback in chat")

        self.app.push_screen(ChatScreen(self.app.chat_conversation), back)

    def action_model(self) -> None:
        from agent.tui.screens.model import ModelScreen

        def back(changed: bool | None) -> None:
            if changed:
                self.action_refresh("re-ranked with the language model's setting changed")

        self.app.push_screen(ModelScreen(), back)

    def action_privacy(self) -> None:
        from agent.tui.screens.privacy import PrivacyScreen

        def back(release_arrived: bool | None) -> None:
            if release_arrived:
                self.action_refresh("re-ranked with the federation's new shared adapter")

        self.app.push_screen(PrivacyScreen(), back)

    def give(self, item: Item, kind: str) -> None:
        if item.ref in self.table.rows:
            self.table.drop(item.ref)  # at once: the re-ranked feed follows from the worker
        self._tickets += 1
        self.send_feedback(item, kind, self._tickets)

    # -- workers ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="rank")
    @reported
    def rank(self, ticket: int, note: str | None = None) -> None:
        agent = self.app.agent
        if agent.config.get("llm.rerank") and not agent.llm_loaded:  # the first rerank loads the model: say so
            self.app.call_from_thread(self._working, "ranking… the language model reranks the top of your feed "
                                                     "(llm.rerank is on; the Model screen, m, turns it off): loading it first")
        recs = agent.recommend()
        self.app.call_from_thread(self._show, ticket, recs, note, agent.rated_count())

    # Not exclusive: cancelling a worker that has not started yet would lose the feedback.
    @work(thread=True, group="feedback")
    @reported
    def send_feedback(self, item: Item, kind: str, ticket: int) -> None:
        agent = self.app.agent
        try:
            result = agent.feedback(item.ref, kind, origin="tui")
        except Exception:
            self.app.call_from_thread(self.action_refresh)  # bring back the row dropped in advance
            raise
        self._last = (item, result.interaction)
        note = f"{PAST_TENSE[kind]} {title_with_year(item)} · model updated in {result.update_ms:.1f} ms"
        if result.retrained:
            note += " (full retrain)"
        elif result.refitting:
            note += " (full retrain under way)"
        recs = agent.recommend()
        self.app.call_from_thread(self._show, ticket, recs, note, agent.rated_count())

    @work(thread=True, group="feedback")
    @reported
    def take_back(self, item: Item, interaction: Interaction, ticket: int) -> None:
        agent = self.app.agent
        agent.undo_feedback(interaction.id)
        note = f"took back: {PAST_TENSE[interaction.kind]} {title_with_year(item)}"
        recs = agent.recommend()
        self.app.call_from_thread(self._show, ticket, recs, note, agent.rated_count())

    def _working(self, text: str) -> None:
        if not self.table.recommendations:  # only before a feed is on screen: later, the feed stays readable
            self.query_one("#status", Static).update(Text(text))

    def _show(self, ticket: int, recs: list[Recommendation], note: str | None, rated: int) -> None:
        if ticket < self._shown:
            return
        self._shown = ticket
        self.table.show(recs)
        self.app.feed_ready = True  # `ownrec bench` times launch-to-first-feed by this flag
        if not recs:
            note = note or "nothing to recommend: import a catalog with `ownrec import` (or --demo)"
        status = " · ".join(part for part in (note, f"{rated} rated", f"{len(recs)} in the feed") if part)
        self.query_one("#status", Static).update(Text(status))
