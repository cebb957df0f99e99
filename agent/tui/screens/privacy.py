"""Privacy: the consent switch for federated sync, the pinned coordinator, and the ledger of uploads.

Turning sync on asks first (what would leave the device, in one sentence); turning it off is
immediate and cancels a round in flight. Everything shown comes from the agent (`Agent.sync_status`,
`Agent.sync_log`), read in a worker; the scheduler's own words are shown while sync is on."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from agent.core.api import HOW_TO_JOIN, WHAT_LEAVES, LedgerRow, SyncStatus
from agent.tui.common import reported
from agent.tui.screens.confirm import ConfirmScreen

REFRESH_SECONDS = 2.0  # while sync is on, the ledger and the scheduler's state are re-read this often


def _epsilon(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


class PrivacyScreen(Screen[bool]):
    """Dismisses with True when a new global adapter may have been loaded (the feed re-ranks)."""

    DEFAULT_CSS = """
    PrivacyScreen #privacy { padding: 1 2 0 2; height: 1fr; }
    PrivacyScreen #sync-switch { height: auto; }
    PrivacyScreen #what-leaves { height: auto; margin-top: 1; color: $text-muted; }
    PrivacyScreen #coordinator { height: auto; margin-top: 1; }
    PrivacyScreen #scheduler { height: auto; color: $text-muted; }
    PrivacyScreen #ledger { height: 1fr; margin-top: 1; }
    PrivacyScreen #total { height: auto; margin-bottom: 1; }
    """

    BINDINGS = [
        Binding("o", "toggle", "Sync on/off"),
        Binding("r", "reload", "Refresh"),
        Binding("escape,p", "back", "Back", key_display="esc"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.enabled: bool | None = None  # None until the first read
        self.rows: list[LedgerRow] = []
        self._releases_seen: int | None = None
        self.release_arrived = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="privacy"):
            yield Static(id="sync-switch")
            yield Static(Text.assemble(WHAT_LEAVES + " What the coordinator, a network observer and "
                                       "other clients can learn: ", ("docs/threat-model.md", "underline"), "."),
                         id="what-leaves")
            yield Static(id="coordinator")
            yield Static(id="scheduler")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="ledger")
            yield Static(id="total")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "privacy"
        table = self.query_one("#ledger", DataTable)
        table.border_title = "uploads, newest first"
        for label, key in (("when", "at"), ("round", "round"), ("state", "state"), ("bytes", "bytes"),
                           ("pre-clip norm", "norm"), ("C", "clip"), ("noise σ (z)", "noise"),
                           ("ε server", "eps_server"), ("ε here", "eps_client")):
            table.add_column(label, key=key)
        self.load()
        self.set_interval(REFRESH_SECONDS, self._refresh_while_on)

    # -- actions ------------------------------------------------------------------------

    def action_toggle(self) -> None:
        if self.enabled is None:
            return  # not read yet
        if self.enabled:
            self.set_consent(False)
            return
        minutes = float(self.app.agent.config.get("sync.interval_minutes"))

        def answered(yes: bool | None) -> None:
            if yes:
                self.set_consent(True)

        self.app.push_screen(ConfirmScreen(
            "Turn federated sync on?",
            f"{WHAT_LEAVES}\n\nRounds run while the app is open and idle, at most one every "
            f"{minutes:g} minutes. You can turn it off here at any time, or with `ownrec sync off`. "
            "What each party can learn: docs/threat-model.md.", confirm="Turn on"), answered)

    def action_reload(self) -> None:
        self.load()

    def action_back(self) -> None:
        self.dismiss(self.release_arrived)

    def _refresh_while_on(self) -> None:
        if self.enabled:
            self.load()

    # -- workers ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="privacy-consent")
    @reported
    def set_consent(self, on: bool) -> None:
        agent = self.app.agent
        agent.set_sync(on, "tui")
        scheduler = getattr(self.app, "sync_scheduler", None)
        cancelled = not on and scheduler is not None and scheduler.cancel_round()
        if on:
            note = "sync on" if agent.sync_pin() is not None else \
                f"sync on, but no coordinator is pinned: {HOW_TO_JOIN}"
        else:
            note = "sync off: the round in flight is cancelled" if cancelled else "sync off: no connection is opened"
        self.app.call_from_thread(self.notify, note, markup=False)
        self._read()

    @work(thread=True, exclusive=True, group="privacy-load")
    @reported
    def load(self) -> None:
        self._read()

    def _read(self) -> None:
        agent = self.app.agent
        found = agent.sync_status()
        rows = agent.sync_log(50)
        releases = agent.sync_release_count()
        self.app.call_from_thread(self._show, found, rows, releases)

    def _show(self, found: SyncStatus, rows: list[LedgerRow], releases: int) -> None:
        if self._releases_seen is not None and releases > self._releases_seen:
            self.release_arrived = True
        self._releases_seen = releases
        self.enabled, self.rows = found.enabled, rows
        state = ("ON", "bold green") if found.enabled else ("OFF", "bold")
        action = "o turns it off" if found.enabled else "o turns it on (asks first)"
        self.query_one("#sync-switch", Static).update(Text.assemble(
            "Federated sync: ", state, f"   ({action})"))
        if found.pin_problem:
            coordinator = Text(f"Coordinator: {found.pin_problem}", style="red")
        elif found.coordinator_host is None:
            coordinator = Text(f"Coordinator: none pinned; {HOW_TO_JOIN}.")
        else:
            coordinator = Text.assemble("Coordinator: ", (found.coordinator_host, "bold"),
                                        f" · release-signing key {found.key_fingerprint}")
        self.query_one("#coordinator", Static).update(coordinator)
        scheduler = getattr(self.app, "sync_scheduler", None)
        if not found.enabled:
            line = "Sync is off: ownrec opens no network connection."
        elif scheduler is None:
            line = "Rounds run only while the app is open."
        else:
            now = f"round running ({scheduler.stage or 'starting'})" if scheduler.round_running else scheduler.phase
            line = f"Rounds: {now}"
            if scheduler.last_report is not None:
                line += f" · last: {scheduler.last_report.message}"
        if found.enabled and found.blocked is not None:
            line += ("\nNo rounds until you join again: " if found.blocked_for_good
                     else "\nThe last round could not form: ") + found.blocked
        self.query_one("#scheduler", Static).update(Text(line))
        table = self.query_one("#ledger", DataTable)
        table.clear()
        for row in rows:
            table.add_row(datetime.fromtimestamp(row.at).strftime("%Y-%m-%d %H:%M"), row.round, row.state,
                          f"{row.bytes_sent:,}", f"{row.pre_clip_norm:.3f}", f"{row.clip_norm:g}",
                          f"{row.noise_std:.4f} ({row.noise_multiplier:g})", _epsilon(row.epsilon_server),
                          _epsilon(row.epsilon_client), key=f"{row.coordinator_key}:{row.round_id}")
        self.query_one("#total", Static).update(Text(self._total_line(found, rows)))

    @staticmethod
    def _total_line(found: SyncStatus, rows: list[LedgerRow]) -> str:
        if not rows:
            return "No uploads yet: nothing derived from your data has left this device."
        total = found.total
        if total is None or total.counted_rounds == 0:
            aborted = "" if total is None or not total.uploads else \
                f" ({total.uploads} uploads, none of them summed by the coordinator)"
            return f"Privacy spent with this coordinator: none yet{aborted}."
        server = "" if total.epsilon_server is None else f"; the coordinator reports ε = {total.epsilon_server:.2f}"
        newest = rows[0]
        alone = "" if newest.epsilon_round_worst is None else (
            f" The newest upload's round alone: ε = {_epsilon(newest.epsilon_round_honest)} with an honest cohort, "
            f"at most {_epsilon(newest.epsilon_round_worst)} even if every other member were fake.")
        return (f"Privacy spent with this coordinator: ε = {total.epsilon_client:.2f} at δ = {total.delta:g} over "
                f"{total.rounds_phrase()} (computed here{server}).{alone}")
