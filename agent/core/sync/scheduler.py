"""Federated rounds in the background, only while the person allows it and is not using the app.

`SyncScheduler` runs in a thread of its own (no UI; the TUI starts it when the app opens and stops it
when it closes). Every `tick_seconds` it decides, in this order:
    1. a round is running  -> if sync was turned off (here or by `ownrec sync off` in another process,
                              both write the store), cancel it; otherwise let it run
    2. sync is off         -> nothing; no connection is opened
    3. no coordinator      -> nothing (`ownrec sync join PATH` pins one)
    4. not idle            -> a key was pressed less than `idle_seconds` ago: wait
    5. too soon            -> the last round started less than `interval_minutes` ago: wait
    6. otherwise           -> start one round (`client.run_round`) in a second thread, with a cancel event
So at most one round runs at a time and at most one starts per interval (the start time is kept in the
store, so reopening the app does not start another). After a round that was not cancelled, whatever its
end (a round that fails may still have fetched a newer release to train on), `check_releases` decides on a
new release before the feed uses it (the facade's adoption check, agent.core.sync.adoption), and the report
says what it decided.

The scheduler sees the person's store and data folder (`Home`: the pin and the device key), the
sync.* settings as values, and callables: `training_data` (what the round trains on, read from the
ranker when a round starts) and `check_releases`. The facade (agent.core.api) makes one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.core.sync import consent
from agent.federation.errors import SyncError

if TYPE_CHECKING:  # the client loads with the first round: the app's start does not wait for it
    from agent.core.paths import Home
    from agent.core.store import Store
    from agent.core.sync.client import ClientPolicy, LocalTrainingData

TICK_SECONDS = 1.0
LAST_START_STATE = "sync_last_round_started_at"  # wall-clock seconds, in the store's state table


@dataclass(frozen=True)
class RoundReport:
    """How the last round this scheduler started ended."""

    started_at: float
    state: str  # released | withheld | not formed | aborted | cancelled | failed
    message: str
    released_version: int | None = None
    adoption: str | None = None  # what the device decided about a new release, in words


class SyncScheduler:
    def __init__(self, store: "Store", home: "Home", training_data: Callable[[], "LocalTrainingData"], *,
                 idle_seconds: float, interval_minutes: float, check_releases: Callable[[], Any] = lambda: None,
                 policy: "ClientPolicy | None" = None, tick_seconds: float = TICK_SECONDS,
                 on_round_end: Callable[[RoundReport], None] | None = None) -> None:
        self.store = store
        self.home = home
        self.training_data = training_data
        self.idle_seconds = idle_seconds  # sync.idle_seconds
        self.interval_minutes = interval_minutes  # sync.interval_minutes
        self.check_releases = check_releases  # returns a decision with a `message`, or None
        self.policy = policy
        self.tick_seconds = tick_seconds
        self.on_round_end = on_round_end
        self.ticks = 0
        self.phase = "not started"  # what the last tick decided, in words (the Privacy screen shows it)
        self.stage: str | None = None  # the round's last stage, while one runs
        self.last_report: RoundReport | None = None
        self.last_activity = time.monotonic()  # the last key press (`touch`): rounds wait for idleness
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._round: threading.Thread | None = None
        self._cancel: threading.Event | None = None
        self._round_guard = threading.Lock()  # guards the round thread and its cancel event

    # -- what the app calls ---------------------------------------------------------------------

    def touch(self) -> None:
        """The person pressed a key: the app is not idle."""
        self.last_activity = time.monotonic()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ownrec-sync-scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop ticking and cancel a round in flight; wait for both (a round stops within the client's
        poll interval)."""
        self._stopping.set()
        self.cancel_round()
        for thread in (self._thread, self._round):
            if thread is not None:
                thread.join(timeout)
        self.phase = "stopped"

    def cancel_round(self) -> bool:
        """Cancel the round in flight, if any (sync turned off, app closing). True if one was running."""
        with self._round_guard:
            if self._cancel is not None and self.round_running:
                self._cancel.set()
                return True
            return False

    def wait_for_round(self, timeout: float | None = None) -> RoundReport | None:
        """Wait for the round in flight to end; its report (None if none ran)."""
        if self._round is not None:
            self._round.join(timeout)
        return self.last_report

    @property
    def round_running(self) -> bool:
        return self._round is not None and self._round.is_alive()

    # -- the decision ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.wait(self.tick_seconds):
            try:
                self.tick()
            except Exception as error:  # a store error must not end the thread silently
                self.phase = f"error: {error}"

    def tick(self) -> str:
        """One decision (the module docstring's list); returns and records it as `phase`."""
        self.ticks += 1
        store = self.store
        enabled = consent.is_enabled(store)
        if self.round_running:
            if not enabled and self.cancel_round():
                self.phase = "sync turned off: cancelling the round in flight"
            else:
                self.phase = f"round running ({self.stage or 'starting'})"
            return self.phase
        if not enabled:
            self.phase = "sync is off: no connection is opened"
            return self.phase
        try:
            pin = consent.stored_pin(self.home)
        except consent.SyncSetupError as error:
            self.phase = str(error)
            return self.phase
        if pin is None:
            self.phase = "no coordinator pinned: `ownrec sync join PATH`"
            return self.phase
        stopped = consent.blocked(store, pin.signing_public_key.hex())
        if stopped is not None and not stopped.get("retry", True):  # asking again cannot help (client.STOPPING_CODES)
            self.phase = f"no rounds: {stopped['message']}"
            return self.phase
        idle_for = float(self.idle_seconds)
        if time.monotonic() - self.last_activity < idle_for:
            self.phase = f"waiting until the app is idle for {idle_for:.0f} s"
            return self.phase
        interval = 60.0 * float(self.interval_minutes)
        last = store.get_state(LAST_START_STATE)
        if last is not None and time.time() - float(last) < interval:
            minutes = (float(last) + interval - time.time()) / 60
            self.phase = f"next round in {minutes:.0f} min"
            return self.phase
        self._start_round(pin)
        self.phase = "round starting"
        return self.phase

    def _start_round(self, pin: Any) -> None:
        started = time.time()
        self.store.set_state(LAST_START_STATE, started)
        with self._round_guard:
            self._cancel = threading.Event()
            self.stage = None
            self._round = threading.Thread(target=self._run_round, args=(pin, self._cancel, started),
                                           name="ownrec-sync-round", daemon=True)
            self._round.start()

    def _run_round(self, pin: Any, cancel: threading.Event, started: float) -> None:
        from agent.core.sync.client import RoundCancelled, RoundCannotForm, RoundWithheld, run_round

        def progress(stage: str) -> None:
            self.stage = stage

        try:
            outcome = run_round(self.store, pin, self.training_data(), consent.device_key_path(self.home),
                                policy=self.policy, cancel=cancel, progress=progress)
            report = RoundReport(started, outcome.state, f"round {outcome.round_id[:8]} {outcome.state}",
                                 outcome.released_version)
        except RoundCancelled:
            report = RoundReport(started, "cancelled", "the round was cancelled")
        except RoundWithheld as error:
            report = RoundReport(started, "withheld", str(error))
        except RoundCannotForm as error:
            report = RoundReport(started, "not formed", str(error))
        except Exception as error:  # noqa: BLE001 - every failure is reported and logged, none ends the app
            state = "aborted" if isinstance(error, SyncError) else "failed"
            report = RoundReport(started, state, f"{type(error).__name__}: {error}")
        try:
            self.store.log_event("sync_round", {"state": report.state, "message": report.message,
                                                "released_version": report.released_version})
        except Exception:  # noqa: BLE001 - the store may be closing with the app; the report is kept below
            pass
        if report.state != "cancelled":  # cancelled: sync was turned off, or the app is closing
            try:
                decision = self.check_releases()
                if decision is not None:
                    report = RoundReport(report.started_at, report.state, f"{report.message}; {decision.message}",
                                         report.released_version, decision.message)
            except Exception as error:  # noqa: BLE001 - reported; the version in use stays as it was
                report = RoundReport(report.started_at, report.state, f"{report.message} (the check of a new "
                                     f"release failed: {type(error).__name__}: {error})", report.released_version)
        self.last_report = report
        self.stage = None
        if self.on_round_end is not None:
            self.on_round_end(report)
