"""`ownrec` with no command: the terminal app.

The first frame appears at once; the agent opens (and the encoder loads) in a worker behind
the start screen, which then gives way to onboarding or the feed."""

from __future__ import annotations

import contextlib

from textual import events, work
from textual.app import App
from textual.binding import Binding

from agent.core.api import Agent, SyncScheduler
from agent.tui.screens import FeedScreen, OnboardingScreen, StartScreen


class OwnrecApp(App):
    CSS_PATH = "ownrec.tcss"
    TITLE = "ownrec"
    SUB_TITLE = "your recommendations, on your machine"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", show=False),
                Binding("question_mark", "help", "Help", key_display="?")]

    def __init__(self, agent: Agent | None = None) -> None:
        super().__init__()
        self.agent = agent
        self.opened_agent = agent is None  # only an agent the app opened is the app's to close
        self.feed_ready = False  # set once the first feed is on screen
        self.lora_job = None  # a personal-LoRA training running in the background (ModelScreen)
        self.chat_conversation: int | None = None  # the conversation the Chat screen shows when it opens again
        self.sync_scheduler: SyncScheduler | None = None  # federated rounds, only when sync is on and idle

    def on_mount(self) -> None:
        self.push_screen(StartScreen())
        self.open_agent()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def open_agent(self) -> None:
        try:
            agent = self.agent or Agent.open(background_refit=True)  # the app stays open: refit off the feed's path
            agent.encoder  # load it now, so a missing encoder is reported here, with its fix
            if agent.item_count():
                encoding = lambda done, total: self.call_from_thread(  # noqa: E731
                    self._starting, f"encoding the catalog: {done}/{total}")
                # An import cut short after writing its rows: its items encoded and the model retrained now.
                agent.finish_interrupted_imports(encoding, say=lambda text: self.call_from_thread(self._starting, text))
                agent.ensure_embeddings(encoding)
            onboarding = agent.needs_onboarding()
        except Exception as error:  # whatever it is, say it on screen rather than crash
            self.call_from_thread(self._cannot_start, str(error) or type(error).__name__)
            return
        self.call_from_thread(self._opened, agent, onboarding)

    def _starting(self, text: str) -> None:
        self.screen.show_progress(text)

    def _cannot_start(self, message: str) -> None:
        self.screen.show_problem(message)

    def _opened(self, agent: Agent, onboarding: bool) -> None:
        self.agent = agent
        self.sync_scheduler = agent.sync_scheduler()
        self.sync_scheduler.start()
        self.switch_screen(OnboardingScreen() if onboarding else FeedScreen())

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and self.sync_scheduler is not None:
            self.sync_scheduler.touch()  # the person is here: rounds wait until the app is idle
        await super().on_event(event)

    def on_unmount(self) -> None:
        self.stop_sync()

    def stop_sync(self) -> None:
        """Stop the scheduler and cancel a round in flight (before the agent it uses is closed)."""
        if self.sync_scheduler is not None:
            self.sync_scheduler.stop()

    def action_help(self) -> None:
        """Every key of the screen in front, with what it does."""
        from agent.tui.screens.help import HelpScreen, keys_of

        screen = self.screen
        if not isinstance(screen, HelpScreen):
            title = getattr(screen, "HELP_TITLE", type(screen).__name__.removesuffix("Screen").lower())
            self.push_screen(HelpScreen(title, keys_of(screen)))

    def show_feed(self) -> None:
        self.switch_screen(FeedScreen())


def run() -> None:
    app = OwnrecApp()
    try:
        app.run()
    finally:
        app.stop_sync()
        if app.lora_job is not None:  # stop after the current step: the checkpoint lets it resume
            app.lora_job.cancel()
            with contextlib.suppress(Exception):  # its error was the screen's to show; quitting goes on
                app.lora_job.wait(timeout=30)
        if app.opened_agent and app.agent is not None:
            app.agent.close()
