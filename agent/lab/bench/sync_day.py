"""A simulated day of a large federation, for `ownrec bench sync --day`: many devices, the real coordinator,
time scaled.

What is real: the coordinator (`agent.server.coordinator.Coordinator`, its round logic, admission of cohorts,
release periods, accounting, purging) on a SQLite file, and each device's part of secure aggregation (the
product's `check_round_config`, `floor_noise` and `ClientRound`: keys, Shamir shares, sealed envelopes,
clipping, noise, quantization and masking over the whole shared layout), with the refusal rules of the
product scheduler (`scheduler.come_back_in`, the interval, the stopping codes).

What is simulated: the clock (a `SimClock` the coordinator reads, moved from event to event, so a day takes
what its requests cost, not 24 hours); HTTP, TLS, request signing and enrolment (measured over real HTTPS by
`bench sync` and `--throughput`); local training (each update is a random vector, clipped like any other);
when devices are on (each has one window a day, see `online_windows`); and polling: one status request per
cohort every `POLL_SECONDS`, where each member of a real cohort long-polls on its own (the report counts
what real members would send). A device leaves a round with probability `dropout`, after one of its first
four steps, as the throughput bench's devices do; it is back for its next round.

Every request's cost is the coordinator's own, measured (`coordinator_seconds`: the wall time of its calls,
in this one-threaded process; other load on the machine adds to it), apart from the devices' work
(`device_seconds`): the coordinator's share of a simulated day is what one worker would spend on it, HTTP
and TLS aside.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.sync.client import STOPPING_CODES
from agent.core.sync.policy import ClientPolicy, check_round_config, floor_noise
from agent.core.sync.scheduler import come_back_in
from agent.federation import protocol
from agent.federation.errors import PolicyViolation
from agent.federation.signing import verify_release
from agent.federation.stages import ClientRound
from agent.lab.people import single_blas_thread
from agent.server.coordinator import Coordinator, CoordinatorError
from agent.server.release import smallest_releasable_cohort
from agent.server.settings import CoordinatorSettings

Log = Callable[[str], None]

POLL_SECONDS = 1.5  # the product client's long-poll interval
DAY_SECONDS = 86_400.0
LEAVE_AFTER = (0, 1, 2, 3)  # stages completed before leaving: checked in, advertised, shared, masked
ACT_LATENCY = (0.2, 2.0)  # seconds from a stage opening to a member's upload (network, wake-up, its own work)
STAGE_OF = {"advertise": protocol.Stage.ADVERTISE_KEYS, "share": protocol.Stage.SHARE_KEYS,
            "masked": protocol.Stage.MASKED_INPUT, "unmask": protocol.Stage.UNMASKING}
ENDED = ("done", "aborted", "withheld")


class SimClock:
    """The simulated time, in seconds since the start of the day; the coordinator reads it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Device:
    name: str
    windows: list[tuple[float, float]]
    last_start: float = -math.inf
    retry_at: float | None = None
    refusals: int = 0
    round_id: str | None = None
    stopped: bool = False


@dataclass
class Cohort:
    """A cohort as its members see it, while one of them still polls it."""

    round_id: str
    members: dict[int, tuple[Device, int]] = field(default_factory=dict)  # index -> (device, stages before leaving)
    state: str = "forming"
    stages: dict[int, ClientRound] = field(default_factory=dict)
    config: dict[str, Any] | None = None


class RoundEvents(logging.Handler):
    """The coordinator's own structured round events (`observability`), stamped with the simulated time: how
    cohorts ended and what each release combined, whether or not a member was still polling."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__(logging.INFO)
        self.clock = clock
        self.ended: Counter = Counter()
        self.summed_updates = 0  # in cohorts summed (released or still waiting for their period's release)
        self.withheld: Counter = Counter()
        self.releases: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "ownrec", None) or {}
        event = fields.get("event")
        if event == "release_published":
            self.releases.append({"version": fields["version"], "at": self.clock.now, "summands": fields["summands"],
                                  "cohorts": fields["cohorts"], "round_ids": fields["round_ids"]})
        elif event in ("round_summed", "round_withheld", "round_aborted"):
            self.ended[event.removeprefix("round_")] += 1
            if event == "round_summed":
                self.summed_updates += int(fields.get("summands") or 0)
            if event == "round_withheld":
                self.withheld[re.sub(r"[0-9a-f]{32}|\d[\d.,]*\d|\d", "N", fields.get("reason") or "")] += 1


def online_windows(rng: random.Random, day: float = DAY_SECONDS) -> list[tuple[float, float]]:
    """When one device may take part in rounds: one window a day of 1 to 4 hours (sync on, the laptop awake,
    the app idle or a timer), starting at a uniformly random time for half the devices and around 8 pm
    (normal, sd 2.5 h) for the other half; a window past midnight goes on at the start of the day."""
    start = rng.uniform(0, day) if rng.random() < 0.5 else (rng.gauss(20, 2.5) * 3600.0) % day
    end = start + rng.uniform(1, 4) * 3600.0
    return [(start, min(end, day))] + ([(0.0, end - day)] if end > day else [])


def simulate_day(settings: CoordinatorSettings, devices: int = 100_000, hours: float = 24.0, dropout: float = 0.2,
                 interval_minutes: float = 60.0, seed: int = 0, layout=None, max_wall_seconds: float | None = None,
                 changed: dict[str, Any] | None = None, log: Log = print, from_hour: float = 0.0) -> dict[str, Any]:
    """Run `hours` of the day from `from_hour` (the coordinator starting then); its figures (see
    `day_markdown`). `layout`: the shared layout (default: the coordinator's, MovieLens-100K, 61,650
    parameters); `changed`: the settings that differ from `coordinator serve`'s defaults, by option name,
    for the report."""
    if not (0 <= from_hour and hours > 0 and from_hour + hours <= 24):
        raise ValueError(f"hours {from_hour:g} to {from_hour + hours:g} are not within one day")
    with tempfile.TemporaryDirectory(prefix="ownrec-day-") as folder:
        day = DaySimulation(settings, Path(folder), devices, hours, dropout, interval_minutes, seed, layout, log,
                            from_hour)
        coordinator_log = logging.getLogger("ownrec.coordinator")
        saved = coordinator_log.level, coordinator_log.propagate
        # The events go to the simulation, not to the terminal: thousands of lines, counted instead.
        coordinator_log.setLevel(logging.INFO)
        coordinator_log.propagate = False
        coordinator_log.addHandler(day.events)
        try:
            # Every device's vector work runs in turn here: OpenBLAS's threads cost more than they save on it.
            with single_blas_thread():
                day.run(max_wall_seconds)
        finally:
            coordinator_log.removeHandler(day.events)
            coordinator_log.setLevel(saved[0])
            coordinator_log.propagate = saved[1]
            day.storage.close()
        return day.figures(changed or {})


class DaySimulation:
    def __init__(self, settings: CoordinatorSettings, folder: Path, devices: int, hours: float, dropout: float,
                 interval_minutes: float, seed: int, layout, log: Log, from_hour: float = 0.0) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from agent.server.app import default_layout
        from agent.server.state import open_storage

        self.settings, self.folder, self.hours, self.dropout, self.log = settings, folder, hours, dropout, log
        self.interval_minutes, self.seed = interval_minutes, seed
        self.rng, self.np_rng = random.Random(seed), np.random.default_rng(seed)
        self.clock = SimClock()
        self.start = self.clock.now = from_hour * 3600.0
        self.end, self.interval = self.start + hours * 3600.0, 60.0 * interval_minutes
        self.policy = ClientPolicy()
        self.storage = open_storage(f"sqlite:///{folder / 'coordinator.sqlite'}")
        self.coordinator = Coordinator(self.storage, Ed25519PrivateKey.generate(), settings,
                                       default_layout=layout or default_layout(), clock=self.clock)
        self.parameters = self.coordinator.info()["parameters"]
        self.events = RoundEvents(self.clock)
        self.costs = {"coordinator": 0.0, "device": 0.0}
        self.requests: Counter = Counter()
        self.refusals: Counter = Counter()
        self.hourly: list[dict[str, Any]] = []
        self.member_polls = 0
        self.budget_exhausted_at: float | None = None
        self.stopped_early_at: float | None = None
        self.wall_seconds = 0.0
        self.masked: dict[str, list[str]] = {}  # round id -> devices whose masked input the coordinator took
        self.cohorts: dict[str, Cohort] = {}
        self._release: Any = None
        self.fleet = [Device(f"d{i:06d}", online_windows(self.rng)) for i in range(devices)]
        with self.storage.write() as tx:  # enrolled before the day (enrolment is measured over HTTPS elsewhere)
            tx.executemany("insert into devices (device_id, public_key, registered_at) values (?, ?, ?)",
                           [(device.name, os.urandom(32), 0.0) for device in self.fleet])
        self.queue: list[tuple[float, int, str, Any]] = []
        self.sequence = 0
        for device in self.fleet:
            for start, end in device.windows:
                if end > self.start:
                    self.at(max(start, self.start), "wake", device)
        for hour in range(1, int(math.ceil(hours)) + 1):
            self.at(min(self.start + hour * 3600.0, self.end - 1e-6), "hour", hour)

    # -- the event loop ----------------------------------------------------------------------------

    def at(self, when: float, kind: str, what: Any) -> None:
        if when < self.end:
            self.sequence += 1
            heapq.heappush(self.queue, (when, self.sequence, kind, what))

    def run(self, max_wall_seconds: float | None) -> None:
        started = time.perf_counter()
        self._wall_start = started
        try:
            while self.queue:
                when, _, kind, what = heapq.heappop(self.queue)
                self.clock.now = when
                if kind == "act":
                    self.act(*what)
                else:
                    getattr(self, kind)(what)
                if max_wall_seconds is not None and time.perf_counter() - started > max_wall_seconds:
                    self.stopped_early_at = self.clock.now
                    break
        except KeyboardInterrupt:  # Ctrl-C: a whole day takes hours; report the part simulated (the coordinator
            self.stopped_early_at = self.clock.now  # rolled back the request it was in)
            self.log(f"  stopped at {_clock(self.clock.now)}: reporting the hours simulated so far")
        self.wall_seconds = time.perf_counter() - started
        info = self.coordinator.info()
        self.epsilon, self.devices_at_budget = info["epsilon"], info["devices_at_budget"]

    def call(self, kind: str, function, *args):
        """One request's worth of the coordinator's work, timed."""
        self.requests[kind] += 1
        started = time.perf_counter()
        try:
            return function(*args)
        finally:
            self.costs["coordinator"] += time.perf_counter() - started

    # -- a device, as the app's scheduler and client drive it -----------------------------------

    def window_now(self, device: Device) -> tuple[float, float] | None:
        return next(((s, e) for s, e in device.windows if s <= self.clock.now < e), None)

    def wake(self, device: Device) -> None:
        now = self.clock.now
        if device.stopped or device.round_id is not None:
            return
        window = self.window_now(device)
        if window is None:
            return  # its next window (if any today) has a wake of its own
        wait_until = device.retry_at if device.retry_at is not None else device.last_start + self.interval
        if now < wait_until:
            if wait_until < window[1]:
                self.at(wait_until, "wake", device)
            return
        device.last_start, device.retry_at = now, None
        # As the product client: the latest release, the coordinator's announcements, then the check-in.
        self.call("release", self.coordinator.latest_release_bytes)
        info = self.call("info", self.coordinator.info)
        if info["no_round_fits_budget"]:
            device.stopped = True
            self.refusals["no round fits the budget (announced)"] += 1
            return
        try:
            joined = self.call("checkin", self.coordinator.check_in, device.name, info["latest_version"])
        except CoordinatorError as error:
            self.refusals[error.code] += 1
            if error.code in STOPPING_CODES:
                device.stopped = True
                if error.code == "budget_exhausted" and self.budget_exhausted_at is None:
                    self.budget_exhausted_at = now
                return
            device.refusals += 1
            if error.retry_after is not None:
                device.retry_at = now + come_back_in(error.retry_after, device.refusals, self.interval, self.rng)
                self.at(device.retry_at, "wake", device)
            else:
                self.at(device.last_start + self.interval, "wake", device)
            return
        device.refusals = 0
        round_id, index = joined["round_id"], int(joined["index"])
        device.round_id = round_id
        leave = self.rng.choice(LEAVE_AFTER) if self.rng.random() < self.dropout else 4
        cohort = self.cohorts.get(round_id)
        if cohort is None:
            cohort = self.cohorts[round_id] = Cohort(round_id)
            self.at(now + POLL_SECONDS, "poll", cohort)
        cohort.members[index] = (device, leave)

    def poll(self, cohort: Cohort) -> None:
        """One status request for the cohort, standing for every member's long poll."""
        device = next(iter(cohort.members.values()))[0]
        status = self.call("status", self.coordinator.status, cohort.round_id, device.name)
        self.member_polls += len(cohort.members)
        state = status["state"]
        if state != cohort.state:
            cohort.state = state
            if state in STAGE_OF:
                cohort.config = cohort.config or status["config"]
                for member, (_, leave) in cohort.members.items():
                    if leave >= int(STAGE_OF[state]):
                        self.at(self.clock.now + self.rng.uniform(*ACT_LATENCY), "act", (cohort, member, state))
        started = min(d.last_start for d, _ in cohort.members.values())
        # As the client: a summed cohort's members wait for the release only if it is due within their round's
        # time; otherwise the round ends for them (its ledger rows settle at the next contact).
        gives_up = state == "summed" and (status["release_at"] is None or status["release_at"] - self.clock.now >
                                          self.policy.round_timeout - (self.clock.now - started))
        if state in ENDED or gives_up:
            for device, _ in cohort.members.values():
                device.round_id = None
                self.at(max(self.clock.now, device.last_start + self.interval), "wake", device)
            del self.cohorts[cohort.round_id]
        else:
            self.at(self.clock.now + POLL_SECONDS, "poll", cohort)

    def release_for(self, version: int):
        if self._release is None or self._release.version != version:
            body = self.call("release", self.coordinator.latest_release_bytes)
            self._release = verify_release(body, self.coordinator.public_key)
        return self._release

    def act(self, cohort: Cohort, member: int, state: str) -> None:
        """One member's upload for `state`, with what it fetches first."""
        if cohort.state != state or cohort.round_id not in self.cohorts:
            return
        device, _ = cohort.members[member]
        round_id, coordinator = cohort.round_id, self.coordinator
        fetch = {"share": ("neighbour-keys", coordinator.neighbour_keys),
                 "masked": ("envelopes", coordinator.envelopes_for),
                 "unmask": ("survivors", coordinator.survivors_for)}.get(state)
        try:
            fetched = self.call(fetch[0], fetch[1], round_id, device.name) if fetch else None
            started = time.perf_counter()
            if state == "advertise":
                config = cohort.config
                try:
                    plan, noise, quantization = check_round_config(config, self.policy, self.release_for(
                        int(config["base_version"])))
                    own = floor_noise(noise, quantization, self.policy, float(config["target_delta"]))
                except PolicyViolation:
                    self.refusals["declined by the device"] += 1
                    return
                cohort.stages[member] = ClientRound(round_id, member, bytes.fromhex(config["graph_seed"]), plan,
                                                    own, quantization, self.np_rng)
                message = cohort.stages[member].advertise()
            elif member not in cohort.stages:
                return
            elif state == "share":
                message = cohort.stages[member].share(fetched)
            elif state == "masked":
                delta = self.np_rng.normal(size=self.parameters)  # a trained update's stand-in: clipped to C anyway
                delta *= self.rng.uniform(0.2, 3.0) / np.linalg.norm(delta)
                message = cohort.stages[member].masked_input(fetched, delta)
            else:
                if member not in set(fetched["survivors"]):
                    return
                message = cohort.stages[member].unmasking(fetched)
            body = protocol.encode(message)
            self.costs["device"] += time.perf_counter() - started
            self.call(state, coordinator.submit, round_id, device.name, STAGE_OF[state], body)
            if state == "masked":
                self.masked.setdefault(round_id, []).append(device.name)
        except CoordinatorError as error:  # a stage that ended before this upload arrived
            self.refusals[f"{error.code} (upload)"] += 1

    # -- figures -------------------------------------------------------------------------------

    def released(self) -> tuple[int, int]:
        """Updates released, and the distinct devices whose update went into a release."""
        contributed: set[str] = set()
        for release in self.events.releases:
            for round_id in release["round_ids"]:
                contributed.update(self.masked.get(round_id, ()))
        return sum(r["summands"] for r in self.events.releases), len(contributed)

    def hour(self, hour: int) -> None:
        stored = sum(p.stat().st_size for p in self.folder.glob("coordinator.sqlite*"))
        online = sum(1 for d in self.fleet if self.window_now(d) is not None and not d.stopped)
        released, _ = self.released()
        self.hourly.append({"hour": hour, "wall_s": round(time.perf_counter() - self._wall_start, 1),
                            "coordinator_s": round(self.costs["coordinator"], 2),
                            "device_s": round(self.costs["device"], 2), "checkins": self.requests["checkin"],
                            "releases": len(self.events.releases), "released": released, "online": online,
                            "stored_bytes": stored, "cohorts_polled": len(self.cohorts)})
        self.log(f"  hour {hour}: {self.requests['checkin']:,} check-ins, {len(self.events.releases)} releases, "
                 f"{released:,} updates released, {online:,} devices on, {stored / 1e6:.1f} MB stored, "
                 f"wall {self.hourly[-1]['wall_s']:.0f} s")

    def figures(self, changed: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings
        sim_seconds = (self.stopped_early_at if self.stopped_early_at is not None else self.end) - self.start
        released, contributed = self.released()
        return {
            "changed_settings": changed, "devices": len(self.fleet), "hours": self.hours, "dropout": self.dropout,
            "from_hour": self.start / 3600.0,
            "interval_minutes": self.interval_minutes, "seed": self.seed, "parameters": self.parameters,
            "poll_seconds": POLL_SECONDS,
            "settings": {k: getattr(settings, k) for k in (
                "min_cohort", "max_cohort", "checkin_window", "stage_timeout", "noise_multiplier", "epsilon_budget",
                "max_concurrent_rounds", "release_period", "withhold_noisy", "max_round_epsilon")},
            "smallest_releasable_cohort": smallest_releasable_cohort(settings, self.parameters),
            "stopped_early_at": self.stopped_early_at, "sim_seconds": sim_seconds,
            "wall_seconds": round(self.wall_seconds, 1), "time_scale": round(sim_seconds / max(self.wall_seconds, 1e-9), 1),
            "coordinator_seconds": round(self.costs["coordinator"], 1), "device_seconds": round(self.costs["device"], 1),
            "requests": dict(self.requests), "member_polls": self.member_polls, "refusals": dict(self.refusals),
            "cohorts": dict(self.events.ended), "withheld_reasons": dict(self.events.withheld),
            "releases": [{k: v for k, v in r.items() if k != "round_ids"} for r in self.events.releases],
            "device_rounds_released": released, "devices_contributed": contributed,
            "updates_summed": self.events.summed_updates,
            "first_at_budget": self.budget_exhausted_at, "epsilon_most_spent": self.epsilon,
            "devices_at_budget": self.devices_at_budget,
            "max_stored_bytes": max((h["stored_bytes"] for h in self.hourly), default=0), "hourly": self.hourly,
            "cpus": os.cpu_count(),
        }


def scenario_label(run: dict[str, Any]) -> str:
    changed = run.get("changed_settings") or {}
    return "serve's defaults" if not changed else \
        "defaults but " + ", ".join(f"{name.replace('_', '-')}={value}" for name, value in sorted(changed.items()))


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"


def _summed(run: dict[str, Any]) -> int:
    """Updates in summed cohorts (runs before that figure was kept: the masked inputs taken, an upper bound)."""
    return run["updates_summed"] if "updates_summed" in run else run["requests"].get("masked", 0)


def day_summary_rows(runs: list[dict[str, Any]]) -> list:
    from agent.lab.bench.product import SummaryRow

    rows = []
    for run in runs:
        released = run["device_rounds_released"]
        rows.append(SummaryRow(
            f"federated sync: {run['devices']:,} devices simulated from {_clock(run.get('from_hour', 0) * 3600)} to "
            f"{_clock((run.get('from_hour', 0) + run['hours']) * 3600)}, {scenario_label(run)} (`bench sync --day`)",
            f"**{len(run['releases'])} releases**, {released:,} updates released of {_summed(run):,} "
            f"{'summed' if 'updates_summed' in run else 'uploaded'} "
            f"({run['smallest_releasable_cohort'] or 0:,} make a release), {run['devices_contributed']:,} devices "
            f"contributed; coordinator time {100 * run['coordinator_seconds'] / run['sim_seconds']:.1f}% of one core"))
    return rows


def day_markdown(runs: list[dict[str, Any]]) -> str:
    """The report's section: one column per scenario simulated."""
    head = "| | " + " | ".join(scenario_label(run) for run in runs) + " |"
    lines = ["## Federated sync: a simulated day", "",
             "Written by `ownrec bench sync --day`: the real coordinator (round logic, cohorts, periods, accounting, "
             "purging) on SQLite and each device's real secure-aggregation work, in one process on a simulated "
             "clock; HTTP, TLS, signing, enrolment and local training are not simulated (the other sync sections "
             "measure them over HTTPS). Each device is on for one window a day (1 to 4 hours; half start at a random "
             "time, half around 8 pm), starts at most one round an hour (sync.interval_minutes), waits as the app's "
             "scheduler does when turned away, and leaves a round midway with the probability given.", "",
             head, "|---" * (len(runs) + 1) + "|"]

    def row(label: str, cell) -> None:
        lines.append(f"| {label} | " + " | ".join(str(cell(run)) for run in runs) + " |")

    def simulated(r: dict[str, Any]) -> str:
        start, end = r.get("from_hour", 0) * 3600, (r.get("from_hour", 0) + r["hours"]) * 3600
        if r["stopped_early_at"] is None:
            return f"{_clock(start)}-{_clock(end)}"
        return f"{_clock(start)}-{_clock(r['stopped_early_at'])} (stopped; asked for {_clock(start)}-{_clock(end)})"

    row("devices; hours simulated; dropout", lambda r: f"{r['devices']:,}; {simulated(r)}; {r['dropout']:g}")
    row("cohort (min-max); check-in window; stage timeout", lambda r: (
        f"{r['settings']['min_cohort']}-{r['settings']['max_cohort']}; {r['settings']['checkin_window']:g} s; "
        f"{r['settings']['stage_timeout']:g} s"))
    row("release period; cohorts at once; noise multiplier; epsilon budget", lambda r: (
        f"{r['settings']['release_period']:g} s; {r['settings']['max_concurrent_rounds']}; "
        f"{r['settings']['noise_multiplier']:g}; {r['settings']['epsilon_budget']:g}"))
    row("shared parameters; smallest cohort whose average is not withheld", lambda r: (
        f"{r['parameters']:,}; {r['smallest_releasable_cohort']:,}" if r["smallest_releasable_cohort"] else
        f"{r['parameters']:,}; none"))
    row("check-ins", lambda r: f"{r['requests'].get('checkin', 0):,}")
    row("refusals", lambda r: ", ".join(f"{code} {count:,}" for code, count in sorted(r["refusals"].items()))
        or "none")
    row("cohorts: summed, withheld, aborted", lambda r: ", ".join(
        f"{r['cohorts'].get(state, 0):,}" for state in ("summed", "withheld", "aborted")))
    row("why withheld", lambda r: "; ".join(f"{count:,} x {reason}" for reason, count in sorted(
        r["withheld_reasons"].items(), key=lambda item: -item[1])[:2]) or "-")
    row("**releases** (first, last)", lambda r: (
        f"**{len(r['releases'])}** ({_clock(r['releases'][0]['at'])}, {_clock(r['releases'][-1]['at'])})"
        if r["releases"] else "**0**"))
    row("updates summed" + ("" if all("updates_summed" in r for r in runs) else " (or uploaded)")
        + "; released; devices that contributed", lambda r: (
            f"{_summed(r):,}; {r['device_rounds_released']:,}; {r['devices_contributed']:,} "
            f"({100 * r['devices_contributed'] / r['devices']:.1f}%)"))
    row("epsilon: the most any device spent; devices at the budget (first refused at)", lambda r: (
        f"{r['epsilon_most_spent']:.2f}; {r['devices_at_budget']:,} ({_clock(r['first_at_budget'])})"))
    row("coordinator stored bytes (largest hourly)", lambda r: f"{r['max_stored_bytes'] / 1e6:.1f} MB")
    row("coordinator time (in process: no HTTP or TLS); share of one core over the hours simulated", lambda r: (
        f"{r['coordinator_seconds']:,.0f} s; {100 * r['coordinator_seconds'] / r['sim_seconds']:.2f}%"))
    row("status requests: simulated (one per cohort) / real members' long polls", lambda r: (
        f"{r['requests'].get('status', 0):,} / {r['member_polls']:,}"))
    row("devices' secure-aggregation work", lambda r: f"{r['device_seconds']:,.0f} s")
    row("wall time; time scale", lambda r: f"{r['wall_seconds']:,.0f} s; {r['time_scale']:,.0f}x"
        + (f" (stopped at {_clock(r['stopped_early_at'])})" if r["stopped_early_at"] is not None else ""))
    return "\n".join(lines)
