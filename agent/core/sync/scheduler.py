"""Federated rounds in the background, only while the person allows it and is not using the app.

`SyncScheduler` runs in a thread of its own (no UI; the TUI starts it when the app opens and stops it
when it closes), or headless (`ownrec sync run`: `run_once`, in the caller's thread). Every
`tick_seconds` it decides, in this order (`decide`):
    1. a round is running  -> if sync was turned off (here or by `ownrec sync off` in another process,
                              both write the store), cancel it; otherwise let it run
    2. sync is off         -> nothing; no connection is opened
    3. no coordinator      -> nothing (`ownrec sync join PATH` pins one); the same while the last attempt
                              found that asking this coordinator again cannot help (client.STOPPING_CODES:
                              not enrolled, its budget spent, ...) until the person joins again
    4. not idle            -> a key was pressed in the app less than `idle_seconds` ago: wait (the app
                              keeps its last key press in the store, so a headless run waits for it too)
    5. too soon            -> the coordinator refused the last check-in and named a time to come back:
                              wait until then (and no longer: a refused check-in ran no round); otherwise
                              the last round started less than `interval_minutes` ago: wait
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

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from agent.core.sync import consent
from agent.federation.errors import SyncError

if TYPE_CHECKING:  # the client loads with the first round: the app's start does not wait for it
    from agent.core.paths import Home
    from agent.core.store import Store
    from agent.core.sync.client import ClientPolicy, LocalTrainingData

TICK_SECONDS = 1.0
# Wall-clock seconds, in the store's state table (shared by the app and a headless run):
LAST_START_STATE = "sync_last_round_started_at"
RETRY_AT_STATE = "sync_retry_at"  # when the coordinator that refused the last check-in asked to be asked again
APP_ACTIVE_STATE = "sync_app_active_at"  # the app's last key press
ACTIVITY_WRITE_SECONDS = 5.0  # the app writes its last key press at most this often
MIN_RETRY_SECONDS = 1.0  # a retry time of zero ("fetch the new release and come back") still waits a moment
REFUSALS_STATE = "sync_refusals_in_a_row"  # refused or not-formed check-ins since the last one that joined a round
RETRY_SPREAD = 0.25  # the first refusal's spread, as a fraction of the coordinator's time (doubling after each)


def come_back_in(retry_after: float | None, refusals_in_a_row: int, interval_seconds: float,
                 rng: random.Random | None = None) -> float:
    """Seconds to wait after a refused check-in that named `retry_after`: never less than that, plus a random
    part whose range starts at a quarter of it and doubles with each refusal in a row, up to one interval.
    The coordinator gives every device it turns away the same time (when the running cohort should end), so
    without the random part they would all come back in the same second; without the doubling, a
    coordinator that can take few of many would be asked again by all of them every few minutes."""
    base = max(retry_after or 0.0, MIN_RETRY_SECONDS)
    spread = min(interval_seconds, RETRY_SPREAD * base * 2.0 ** min(max(refusals_in_a_row, 1) - 1, 40))
    return base + (rng or random).uniform(0.0, spread)


@dataclass(frozen=True)
class RoundReport:
    """How the last round this scheduler started ended."""

    started_at: float
    state: str  # released | summed | withheld | not formed | aborted | refused | cancelled | failed
    message: str
    released_version: int | None = None
    adoption: str | None = None  # what the device decided about a new release, in words
    # refused / not formed: the coordinator's reason code, "policy" (this device's policy refused the round),
    # or why no round could include this device (client.RoundCannotForm.code)
    refusal: str | None = None
    retry_after: float | None = None  # refused / not formed: the seconds the coordinator asked this device to wait
    wait_seconds: float | None = None  # ...and how long it waits (`come_back_in`: that, spread)


@dataclass(frozen=True)
class Decision:
    """What a tick decided while no round runs: `kind` is off, not_joined, stopped (asking this coordinator
    again cannot help), busy (the app is in use), wait (the interval, or the coordinator's retry time) or start; `phase` says it in words; `wait_seconds` is
    how long until it changes on its own (None: only the person can change it)."""

    kind: str
    phase: str
    wait_seconds: float | None = None
    pin: Any = None


class SyncScheduler:
    def __init__(self, store: "Store", home: "Home", training_data: Callable[[], "LocalTrainingData"], *,
                 idle_seconds: float, interval_minutes: float, check_releases: Callable[[], Any] = lambda: None,
                 policy: "ClientPolicy | None" = None, tick_seconds: float = TICK_SECONDS,
                 on_round_end: Callable[[RoundReport], None] | None = None, in_app: bool = True) -> None:
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
        # The last key press (`touch`): rounds wait for idleness. Headless (not `in_app`) there are none here;
        # the app's, kept in the store, still count.
        self.in_app = in_app
        self.last_activity = time.monotonic() if in_app else float("-inf")
        self._activity_written: float | None = None
        self.decision: Decision | None = None  # the last tick's, while no round ran
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
        if self.round_running:
            return self._watch_round()
        self._write_activity()
        self.decision = self.decide()
        self.phase = self.decision.phase
        if self.decision.kind == "start":
            self._start_round(self.decision.pin)
            self.phase = "round starting"
        return self.phase

    def _watch_round(self) -> str:
        """Step 1 of the module docstring's list: cancel the round in flight if sync was turned off."""
        if not consent.is_enabled(self.store) and self.cancel_round():
            self.phase = "sync turned off: cancelling the round in flight"
        else:
            self.phase = f"round running ({self.stage or 'starting'})"
        return self.phase

    def decide(self) -> Decision:
        """Steps 2 to 6 of the module docstring's list, as of now; opens no connection."""
        store = self.store
        if not consent.is_enabled(store):
            return Decision("off", "sync is off: no connection is opened")
        try:
            pin = consent.stored_pin(self.home)
        except consent.SyncSetupError as error:
            return Decision("not_joined", str(error))
        if pin is None:
            return Decision("not_joined", "no coordinator pinned: `ownrec sync join PATH`")
        stopped = consent.blocked(store, pin.signing_public_key.hex())
        if stopped is not None and not stopped.get("retry", True):  # asking again cannot help (client.STOPPING_CODES)
            return Decision("stopped", f"no rounds: {stopped['message']}")
        now = time.time()
        idle_for = float(self.idle_seconds)
        # In the app, its own last key press; headless, the one the app kept in the store.
        idle_since = (now - (time.monotonic() - self.last_activity) if self.in_app
                      else float(store.get_state(APP_ACTIVE_STATE, 0.0)))
        if now - idle_since < idle_for:
            return Decision("busy", f"waiting until the app is idle for {idle_for:.0f} s",
                            idle_since + idle_for - now)
        retry_at = store.get_state(RETRY_AT_STATE)
        if retry_at is not None:
            if now < float(retry_at):
                return Decision("wait", f"the coordinator turned this device away: next check-in in "
                                f"{float(retry_at) - now:.0f} s",
                                float(retry_at) - now)
        else:
            interval = 60.0 * float(self.interval_minutes)
            last = store.get_state(LAST_START_STATE)
            if last is not None and now - float(last) < interval:
                remaining = float(last) + interval - now
                return Decision("wait", f"next round in {remaining / 60:.0f} min", remaining)
        return Decision("start", "round starting", pin=pin)

    def _write_activity(self) -> None:
        """Keep the app's last key press in the store, for a headless run to wait on (at most every
        ACTIVITY_WRITE_SECONDS: a key press must not cost a write)."""
        if not self.in_app:
            return
        at = time.time() - (time.monotonic() - self.last_activity)
        if self._activity_written is None or at - self._activity_written >= ACTIVITY_WRITE_SECONDS:
            self.store.set_state(APP_ACTIVE_STATE, at)
            self._activity_written = at

    def run_once(self) -> tuple[Decision, RoundReport | None]:
        """Headless: one decision and, if it starts a round, that round to its end (watched meanwhile as a
        tick watches it, so `ownrec sync off` cancels it; no second round starts). A KeyboardInterrupt
        while it runs cancels the round, waits for it to stop (within the client's poll interval) and is
        raised again."""
        # Sleeping, not Thread.join: a join that a KeyboardInterrupt breaks into can leave the thread reported
        # as ended while it still runs, and the round's end would then go unrecorded. The tick is inside the
        # try too: an interrupt that lands just after it started a round must cancel that round as well.
        try:
            self.tick()
            decision = self.decision
            assert decision is not None
            if decision.kind != "start":
                return decision, None
            while self.round_running:
                time.sleep(min(self.tick_seconds, 0.2))
                self._watch_round()
        except KeyboardInterrupt:
            self.cancel_round()
            stop_by = time.monotonic() + 60.0
            while self.round_running and time.monotonic() < stop_by:
                time.sleep(0.1)
            raise
        return decision, self.last_report

    def _start_round(self, pin: Any) -> None:
        started = time.time()
        with self.store.transaction():
            self.store.set_state(LAST_START_STATE, started)
            self.store.set_state(RETRY_AT_STATE, None)
        with self._round_guard:
            self._cancel = threading.Event()
            self.stage = None
            self._round = threading.Thread(target=self._run_round, args=(pin, self._cancel, started),
                                           name="ownrec-sync-round", daemon=True)
            self._round.start()

    def _come_back_after(self, retry_after: float | None) -> float | None:
        """After a refusal: when to check in again (`come_back_in`), kept in the store; the seconds, or None
        when the coordinator named no time (then the interval applies)."""
        refusals = int(self.store.get_state(REFUSALS_STATE) or 0) + 1
        self.store.set_state(REFUSALS_STATE, refusals)
        if retry_after is None:
            return None
        wait = come_back_in(retry_after, refusals, 60.0 * float(self.interval_minutes))
        self.store.set_state(RETRY_AT_STATE, time.time() + wait)
        return wait

    def _run_round(self, pin: Any, cancel: threading.Event, started: float) -> None:
        from agent.core.sync.client import CoordinatorRefused, RoundCancelled, RoundCannotForm, RoundWithheld, run_round
        from agent.federation.errors import PolicyViolation

        def progress(stage: str) -> None:
            self.stage = stage

        try:
            outcome = run_round(self.store, pin, self.training_data(), consent.device_key_path(self.home),
                                policy=self.policy, cancel=cancel, progress=progress)
            version = "" if outcome.released_version is None else f" as version {outcome.released_version}"
            report = RoundReport(started, outcome.state, f"round {outcome.round_id[:8]} {outcome.state}{version}",
                                 outcome.released_version)
        except RoundCancelled as error:
            report = RoundReport(started, "cancelled", str(error))
        except RoundWithheld as error:
            report = RoundReport(started, "withheld", str(error))
        except RoundCannotForm as error:
            wait = self._come_back_after(error.retry_after)
            # A check-in the coordinator refused is said as any refusal; otherwise no round could include this device.
            report = RoundReport(started, "refused" if error.refused_check_in else "not formed", str(error),
                                 refusal=error.code, retry_after=error.retry_after, wait_seconds=wait)
        except CoordinatorRefused as error:
            wait = self._come_back_after(error.retry_after)
            report = RoundReport(started, "refused", f"refused by the coordinator: {error.reason} ({error.code})",
                                 refusal=error.code, retry_after=error.retry_after, wait_seconds=wait)
        except PolicyViolation as error:
            report = RoundReport(started, "refused", f"refused by this device's policy: {error}", refusal="policy")
        except Exception as error:  # noqa: BLE001 - every failure is reported and logged, none ends the app
            state = "aborted" if isinstance(error, SyncError) else "failed"
            report = RoundReport(started, state, f"{type(error).__name__}: {error}")
        try:
            if report.state not in ("refused", "not formed"):  # the check-in joined a round: no longer turned away
                self.store.set_state(REFUSALS_STATE, None)
            self.store.log_event("sync_round", {"state": report.state, "message": report.message,
                                                "released_version": report.released_version})
        except Exception:  # noqa: BLE001 - the store may be closing with the app; the report is kept below
            pass
        if report.state != "cancelled":  # cancelled: sync was turned off, or the app is closing
            try:
                decision = self.check_releases()
                if decision is not None:
                    report = replace(report, message=f"{report.message}; {decision.message}",
                                     adoption=decision.message)
            except Exception as error:  # noqa: BLE001 - reported; the version in use stays as it was
                report = replace(report, message=f"{report.message} (the check of a new release failed: "
                                 f"{type(error).__name__}: {error})")
        self.last_report = report
        self.stage = None
        if self.on_round_end is not None:
            self.on_round_end(report)
