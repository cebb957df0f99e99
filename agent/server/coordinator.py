"""The coordinator's round logic: cohorts, the four secure-aggregation stages, recovery, release periods.

HTTP-free and thread-safe: every public method runs in `storage.write()` transactions (or reads) that lock
only what they change (`state`), so several workers sharing a PostgreSQL database run different cohorts'
stages at once and agree on each transition. No background task is needed: deadlines are checked whenever
a client asks (long polls ask every 1.5 s, check-ins look at every overdue cohort); a stage ends early once
all have submitted.

Cohorts run concurrently (`periods` describes how they become releases): a check-in joins the forming
cohort, or opens one if none is forming, fewer than `max_concurrent_rounds` are running and the period on
the latest release is still open; otherwise it is refused with the time to come back (`retry_after`:
when a running cohort should end, or when the period's release is expected, or later when many devices
wait: `pacing`). A device takes part in at most
one summed cohort per period. Locks, in this order only: membership (check-in, forming, publishing a
release) -> round rows (in round id order when several) -> admission rows; a stage submission or status
advance locks its round alone, so stages of different cohorts never wait for each other.

Round states (`cohort`): forming -> advertise -> share -> masked -> unmask -> summed -> done; `aborted` from any
before summed; `withheld` when the noise in the average would exceed any signal it could carry (`NoiseCheck`,
on by default). What is released is a period's combined average: a cohort is withheld as it forms (nothing
uploaded yet) only if even every registered device could not carry that average, and a period stays open
until its summed cohorts can (`periods.waits_for_more`), so a cohort too small or left too small by
dropouts waits for more instead of being thrown away. A withheld cohort goes into no release and keeps no
sum. Once summed, a cohort's masked inputs, envelopes and revealed shares
are deleted; its sum is kept until its period's release is published.
Participants' `stage` column counts the stages they completed (0 checked in .. 4 answered unmasking): U1 =
advertised keys, U2 = sent share envelopes, U3 = sent a masked input, U4 = answered unmasking.
A stage that ends with fewer than `min_survivors` participants aborts the round: the noise and the neighbourhood
analysis assume at least that many. Every rejection is a CoordinatorError with an HTTP status and a specific
message, raised before anything is written, so the round and the stored state stay as they were.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict
from collections.abc import Callable
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.federation import protocol
from agent.federation.accounting import device_noise
from agent.federation.clipping import DistributedNoise, NoiseCheck
from agent.federation.errors import ShamirError, SyncError
from agent.federation.neighbourhood import plan_neighbourhood
from agent.federation.layout import SharedLayout
from agent.federation.quantize import QuantizationPlan
from agent.federation.signing import AUTH_HEADER, MalformedAuth, SignatureError, device_id_of, parse_request_auth
from agent.federation.signing import sign_release, verify_release, verify_request
from agent.server import admission, observability, periods
from agent.server.cohort import ACTIVE, FINISHED, RUNNING, STAGE_OF_STATE, STATES, RoundConfig, expected_end
from agent.server.cohort import unmask_cohort
from agent.server.pacing import RefusalPace
from agent.server.views import RoundViews, _marks
from agent.server.release import shrinks_items, smallest_releasable_cohort
from agent.server.settings import CoordinatorSettings
from agent.server.state import Storage, Transaction

__all__ = ["ACTIVE", "FINISHED", "STAGE_OF_STATE", "STATES", "Coordinator", "CoordinatorError", "RoundConfig"]
REQUEST_WINDOW_SECONDS = 300.0
log = logging.getLogger("ownrec.coordinator")


class CoordinatorError(Exception):
    """A refused request: `status` is the HTTP status, `code` a stable machine-readable reason, and
    `retry_after` (seconds), when given, when the client should ask again (sent as Retry-After)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class Coordinator(RoundViews):
    def __init__(self, storage: Storage, signing_key: Ed25519PrivateKey, settings: CoordinatorSettings,
                 default_layout: SharedLayout | None = None, initial_vector: np.ndarray | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """Opens (or on first use initialises, with `default_layout` and `initial_vector`, a public prior, or
        zeros as release 1). `clock` gives every deadline and timestamp (a simulation passes its own)."""
        self.clock = clock
        self.storage = storage
        self.signing_key = signing_key
        self.settings = settings
        self.public_key = signing_key.public_key().public_bytes_raw()
        self._release_cache = None
        self._spent = periods.SpentCache()
        self._pace = RefusalPace(settings)
        self._needed: tuple[int, int | None] | None = None
        with storage.write() as tx:
            stored = tx.one("select value from coordinator_settings where key = 'signing_public_key'")
            if stored is None:
                if default_layout is None:
                    raise ValueError("a new coordinator needs a shared layout (the item vocabulary and projection)")
                if initial_vector is not None and not np.all(np.isfinite(initial_vector)):
                    raise ValueError("the starting vector holds NaN or infinite values: no client could use it")
                tx.execute("insert into coordinator_settings (key, value) values ('signing_public_key', ?)",
                           [self.public_key])
                start = default_layout.zeros() if initial_vector is None else initial_vector
                meta = {"round_id": None, "created": self.clock(), "epsilon": 0.0, "delta": 0.0, "rounds": 0}
                body = sign_release(signing_key, 1, meta | {"prior": initial_vector is not None}, default_layout, start)
                tx.execute("insert into releases (version, round_id, created_at, noise_multiplier, clamp_probability,"
                           " epsilon, delta, body) values (1, null, ?, null, null, 0, 0, ?)", [self.clock(), body])
            elif bytes(stored[0]) != self.public_key:
                raise ValueError("this database was created with another signing key: its releases would not verify")
            # Sums computed before release periods existed: each was a composition step of its own.
            for round_id, config_json in tx.all("select round_id, config from rounds where summands is not null "
                                                "and period is null"):
                config = RoundConfig(**json.loads(config_json))
                tx.execute("update rounds set period = ?, noise_multiplier = ?, clamp_probability = ? "
                           "where round_id = ?", [round_id, config.noise_multiplier, config.clamp_probability(),
                                                  round_id])
            periods.count_earlier_steps(tx)
            # ...and what they kept: masked inputs of ended rounds, the sums of released ones.
            tx.execute(f"delete from masked_inputs where round_id in (select round_id from rounds where state in "
                       f"({_marks(FINISHED)}))", list(FINISHED))
            tx.execute("update rounds set sum_vector = null where state = 'done' and sum_vector is not null")
            self._latest = self._latest_release(tx)

    # -- releases and accounting --------------------------------------------------------------

    def _latest_release(self, tx: Transaction):
        # Verified once per version (every check-in and stage needs it; verifying is not free).
        (version,) = tx.one("select max(version) from releases")
        cached = self._release_cache
        if cached is None or cached.version != version:
            (body,) = tx.one("select body from releases where version = ?", [version])
            cached = self._release_cache = verify_release(bytes(body), self.public_key)
        return cached

    def latest_release_bytes(self) -> bytes:
        with self.storage.read() as tx:
            return bytes(tx.one("select body from releases order by version desc limit 1")[0])

    def info(self) -> dict[str, Any]:
        with self.storage.read() as tx:
            release = self._latest_release(tx)
            step = (self.settings.noise_multiplier, 0.0)
            most, at_budget = self._spent.most_spent(tx, self.settings.target_delta, self.settings.epsilon_budget,
                                                     step)
        return {"signing_public_key": self.public_key.hex(), "latest_version": release.version,
                "layout_digest": release.layout.digest(), "parameters": release.layout.size,
                # the most any device has spent (`periods`: per device, one step per period its update was
                # summed in); `rounds`: that device's steps
                "epsilon": most.epsilon, "delta": most.delta, "rounds": most.rounds,
                "devices_at_budget": at_budget,
                # the fewest updates whose average is not withheld (`withhold_noisy`): what a release needs
                "updates_per_release": self._updates_per_release(release.layout.size),
                "max_concurrent_rounds": self.settings.max_concurrent_rounds,
                "release_period": self.settings.release_period,
                "epsilon_budget": self.settings.epsilon_budget, "target_delta": self.settings.target_delta,
                "server_learning_rate": self.settings.server_learning_rate,
                "item_learning_rate": self.settings.item_learning_rate,
                "withhold_noisy": self.settings.withhold_noisy,
                # what a device checks before taking part (agent.core.sync.client)
                "min_cohort": self.settings.min_cohort, "max_cohort": self.settings.max_cohort,
                "checkin_window": self.settings.checkin_window, "noise_multiplier": self.settings.noise_multiplier,
                "clip_norm": self.settings.clip_norm, "max_round_epsilon": self.settings.max_round_epsilon,
                # even a device that has spent nothing could not take part: one round costs more than the budget
                "no_round_fits_budget": self._spent.of([step], self.settings.target_delta).epsilon >
                self.settings.epsilon_budget,
                # the item rows too, only when the federation refines a public prior (`shrinkage`)
                "shrink_noise": self.settings.shrink_noise, "shrink_items": shrinks_items(self.settings, release)}

    def smallest_releasable_cohort(self, parameters: int, limit: int = 10**7) -> int | None:
        """The fewest clients (at least min_cohort) whose completed round is not withheld (`release`)."""
        return smallest_releasable_cohort(self.settings, parameters, limit)

    def _updates_per_release(self, parameters: int) -> int | None:
        if self._needed is None or self._needed[0] != parameters:  # the settings are fixed; the layout rarely changes
            self._needed = (parameters, self.smallest_releasable_cohort(parameters))
        return self._needed[1]

    def _next_step(self, version: int) -> tuple[str, float, float]:
        """A cohort on `version` at the configured noise, as `SpentCache.device_spent` counts it in (clamp aside)."""
        return str(version), self.settings.noise_multiplier, 0.0

    # -- authentication -------------------------------------------------------------------------

    def authenticate(self, method: str, target: str, body: bytes, headers: dict[str, str],
                     register_public: bytes | None = None, enrolment_token: str | None = None,
                     address: str | None = None) -> str:
        """The device id of a correctly signed, fresh, never-seen request; CoordinatorError otherwise.
        `target` is the path and query as received (what the client signed). At check-in (`register_public`
        given) the device must be enrolled: an unknown device is registered with that key only with a valid
        `enrolment_token` (`admission`), and check-ins and registrations are rate-limited per client `address`
        and per token."""
        value = headers.get(AUTH_HEADER)
        if value is None:
            raise CoordinatorError(401, "unauthenticated", f"missing authentication header {AUTH_HEADER!r}")
        try:
            auth = parse_request_auth(value)
        except MalformedAuth as error:
            code = {"timestamp": "bad_timestamp", "nonce": "bad_nonce", "device": "bad_device"}.get(
                error.field, "malformed_auth")
            raise CoordinatorError(401, code, f"malformed {AUTH_HEADER} header: {error}") from None
        device, nonce = auth.device_id, auth.nonce
        age = abs(self.clock() - auth.seconds)
        if not age <= REQUEST_WINDOW_SECONDS:
            raise CoordinatorError(401, "bad_timestamp", f"the request timestamp is {age:.0f} s off the coordinator's "
                                   f"clock (window {REQUEST_WINDOW_SECONDS:.0f} s): replayed or clock skew")
        refusal = None
        with self.storage.write() as tx:
            row = tx.one("select public_key from devices where device_id = ?", [device])
            public = bytes(row[0]) if row else register_public
            if public is None:
                raise CoordinatorError(401, "unknown_device", f"device {device} is not registered: check in first")
            if device_id_of(public) != device:
                raise CoordinatorError(401, "wrong_device", "the device id does not belong to that public key")
            try:
                verify_request(public, method, target, body, auth)
            except SignatureError as error:
                raise CoordinatorError(401, "bad_signature", str(error)) from None
            now = self.clock()
            tx.execute("delete from request_nonces where seen_at < ?", [now - 2 * REQUEST_WINDOW_SECONDS])
            if tx.execute("insert into request_nonces (device_id, nonce, seen_at) values (?, ?, ?) "
                          "on conflict do nothing", [device, nonce, now]) != 1:
                raise CoordinatorError(409, "replayed_request", "this request (device, nonce) was already received: "
                                       "replay refused")
            if register_public is not None:
                # A refusal from here on is raised after the commit: the nonce and the rate-limit buckets a
                # refused attempt used up must stay used up.
                refused = admission.admit(tx, self.settings, device, public, row is None, enrolment_token,
                                          address or "unknown", now)
                refusal = None if refused is None else CoordinatorError(*refused)
        if refusal is not None:
            raise refusal
        return device

    # -- check-in and round formation ------------------------------------------------------------

    def check_in(self, device: str, base_version: int | None = None) -> dict[str, Any]:
        """Join the forming cohort, or open one (the module docstring says when); CoordinatorError if neither."""
        now = self.clock()
        self._advance_overdue(now)
        self.publish_if_due(now)
        with self.storage.write() as tx:
            tx.lock("membership")
            mine = tx.one("select r.round_id, r.state, r.deadline from participants p join rounds r on "
                          f"r.round_id = p.round_id where p.device_id = ? and r.state in ({_marks(RUNNING)})",
                          [device, *RUNNING])
            if mine:
                raise CoordinatorError(409, "already_in_cohort", f"this device is already in round {mine[0]} "
                                       f"({mine[1]}): a client takes part in one cohort at a time",
                                       retry_after=max(0.0, expected_end(mine[1], mine[2],
                                                                         self.settings.stage_timeout) - now))
            latest = self._latest_release(tx)
            if base_version is not None and base_version != latest.version:
                raise CoordinatorError(409, "stale_base", f"you trained on version {base_version}; the current "
                                       f"global adapter is version {latest.version}: fetch it and train again",
                                       retry_after=0.0)
            spent, after = self._spent.device_spent(tx, self.settings.target_delta, device,
                                                    self._next_step(latest.version))
            if after.epsilon > self.settings.epsilon_budget:
                raise CoordinatorError(403, "budget_exhausted", f"this device's updates are in {spent.rounds} "
                                       f"release period(s), epsilon {spent.epsilon:.2f}; another round would take it "
                                       f"to {after.epsilon:.2f}, above this coordinator's budget of "
                                       f"{self.settings.epsilon_budget:g} per device: no more rounds for this device")
            cohorts = periods.period_cohorts(tx, latest.version)
            if tx.one("select 1 from device_steps where device_id = ? and period = ?", [device, str(latest.version)]):
                release_at = periods.release_at(tx, self.settings, cohorts, now)
                # No time promised (no period open, or one that waits for more cohorts): a cohort's time, or
                # the period's, or for a period that waits for more, how long it needs at its pace so far: the
                # device has nothing to add before the release, and asking again sooner only adds load.
                unknown = max(self.settings.release_period, expected_end(
                    "forming", now + self.settings.checkin_window, self.settings.stage_timeout) - now,
                    periods.summing_pace_wait(tx, cohorts, self._updates_per_release(latest.layout.size), now) or 0.0)
                raise CoordinatorError(409, "already_in_period", f"this device's update is already summed for the "
                                       f"release after version {latest.version}: one cohort per release period",
                                       retry_after=max(0.0, release_at - now) if release_at else unknown)
            forming = self._cohort_to_join(tx, latest.version, cohorts, now, device)
            count = tx.one("select count(*) from participants where round_id = ?", [forming])[0]
            tx.execute("insert into participants (round_id, idx, device_id, stage) values (?, ?, ?, 0)",
                       [forming, count + 1, device])
            self._advance(tx, forming, now)
            # What this device will have spent if the cohort sums its update (the coordinator's count).
            return {"round_id": forming, "index": count + 1, "base_version": latest.version,
                    "epsilon_after": after.epsilon, "delta_after": after.delta}

    def _cohort_to_join(self, tx: Transaction, version: int, cohorts: list[tuple], now: float, device: str) -> str:
        """The forming cohort on `version` (locked), or a new one if one may open (under the membership lock)."""
        for _ in range(2):  # a status poll may have formed the cohort before its lock was ours: look again
            forming = next((round_id for round_id, state, _, _ in cohorts if state == "forming"), None)
            if forming is not None:
                tx.lock_round(forming)
                if tx.one("select state from rounds where round_id = ?", [forming])[0] == "forming":
                    return forming
                cohorts = periods.period_cohorts(tx, version)
                continue
            running = [(state, deadline) for _, state, _, deadline in cohorts if state in ACTIVE]
            if len(running) >= self.settings.max_concurrent_rounds:
                ends = min(expected_end(state, deadline, self.settings.stage_timeout) for state, deadline in running)
                wait = self._pace.come_back_in(device, now, max(0.0, ends - now))
                raise CoordinatorError(409, "round_in_progress", f"{len(running)} cohort(s) are running, the "
                                       f"most this coordinator runs at once (the first ends in at most "
                                       f"{max(0.0, ends - now):.0f} s); check in again in {wait:.0f} s",
                                       retry_after=wait)
            if periods.closed(tx, self.settings, cohorts, now):
                due = max(0.0, periods.release_at(tx, self.settings, cohorts, now) - now)
                wait = self._pace.come_back_in(device, now, due)
                raise CoordinatorError(409, "release_pending", f"the release period on version {version} has closed "
                                       f"(no more cohorts open on it): check in again for the next release, "
                                       f"expected in {due:.0f} s" + (f"; come back in {wait:.0f} s" if wait > due
                                                                     else ""), retry_after=wait)
            forming = secrets.token_bytes(16).hex()
            tx.execute("insert into rounds (round_id, state, created_at, deadline, base_version) "
                       "values (?, 'forming', ?, ?, ?)", [forming, now, now + self.settings.checkin_window, version])
            observability.round_opened(forming)
            return forming
        raise CoordinatorError(409, "round_in_progress", "the cohort formed as this device checked in: check in "
                               "again", retry_after=0.0)

    def _form(self, tx: Transaction, round_id: str, base_version: int, now: float) -> None:
        n = tx.one("select count(*) from participants where round_id = ?", [round_id])[0]
        observability.stage_ended(tx, round_id, "forming", n, now)
        settings = self.settings
        plan = plan_neighbourhood(n, max_dropout_fraction=settings.max_dropout_fraction,
                                  max_corrupt_fraction=settings.max_corrupt_fraction)
        # Room in the quantization, and the noise figures, for devices that add their floor's noise.
        noise = device_noise(DistributedNoise(settings.clip_norm, settings.noise_multiplier, plan.min_survivors),
                             settings.max_round_epsilon, settings.target_delta)
        quantization = QuantizationPlan.for_cohort(noise, n)
        layout = self._latest_release(tx).layout
        clamp = quantization.clamp_failure_probability(layout.size, noise)
        # The most any member will have spent if the cohort sums its update.
        members = [device for (device,) in tx.all("select device_id from participants where round_id = ?", [round_id])]
        spent = max((self._spent.device_spent(tx, settings.target_delta, device,
                                              (str(base_version), settings.noise_multiplier, clamp))[1]
                     for device in members), key=lambda each: each.epsilon)
        config = RoundConfig(
            round_id=round_id, cohort_size=n, degree=plan.degree, threshold=plan.threshold,
            max_dropouts=plan.max_dropouts, max_corrupt=plan.max_corrupt, graph_seed=secrets.token_bytes(32).hex(),
            clip_norm=settings.clip_norm, noise_multiplier=settings.noise_multiplier,
            min_contributors=plan.min_survivors, clamp_bound=quantization.clamp_bound, scale=quantization.scale,
            max_summands=quantization.max_summands, parameters=layout.size, layout_digest=layout.digest(),
            base_version=base_version, target_delta=settings.target_delta, epsilon_after=spent.epsilon,
            delta_after=spent.delta, stage_timeout=settings.stage_timeout,
            max_round_epsilon=settings.max_round_epsilon)
        tx.execute("update rounds set state = 'advertise', deadline = ?, config = ? where round_id = ?",
                   [now + settings.stage_timeout, json.dumps(asdict(config)), round_id])
        best_case = NoiseCheck.of(noise, layout.size, n)  # every member completes: the least noise it can have
        if settings.withhold_noisy and best_case.noise_dominates:
            # The period's release averages all its cohorts (`periods.waits_for_more`): withheld now (nothing
            # uploaded yet) only if even every registered device, each once in the period, could not carry it.
            registered = int(tx.one("select count(*) from devices")[0])
            if registered <= n:
                self._withhold(tx, round_id, best_case, summed=False)
                return
            everyone = NoiseCheck.of(noise, layout.size, registered)
            if everyone.noise_dominates:
                self._withhold(tx, round_id, everyone, summed=False, reason=f"even if all {registered:,} registered "
                               f"devices took part in this release, {everyone.reason()}")

    # -- the state machine ------------------------------------------------------------------------

    def _advance_overdue(self, now: float) -> None:
        """Move on every running cohort past its deadline (one nobody polls any more would otherwise hold its
        place among the concurrent cohorts, and its period's release), each in its own transaction."""
        with self.storage.read() as tx:
            overdue = [r for (r,) in tx.all(f"select round_id from rounds where state in ({_marks(RUNNING)}) and "
                                            "deadline <= ? order by round_id", [*RUNNING, now])]
        for round_id in overdue:
            with self.storage.write() as tx:
                tx.lock_round(round_id)
                self._advance(tx, round_id, now)

    def publish_if_due(self, now: float | None = None) -> int | None:
        """Publish the current period's release if it is due (`periods`); its version, or None."""
        now = self.clock() if now is None else now
        with self.storage.read() as tx:  # most calls find nothing due: decide that without a lock
            latest = self._latest_release(tx)
            if tx.one(f"select 1 from rounds where base_version = ? and state in ({_marks(RUNNING)}) limit 1",
                      [latest.version, *RUNNING]):
                return None  # a cohort still running (nearly always, in a busy period): the period waits for it
            if not periods.closed(tx, self.settings, periods.period_cohorts(tx, latest.version), now):
                return None
        with self.storage.write() as tx:
            tx.lock("membership")
            return periods.publish_if_due(tx, self.signing_key, self.settings, self._latest_release(tx),
                                          self._spent, now)

    def _advance(self, tx: Transaction, round_id: str, now: float) -> bool:
        """Move the round on as far as its submissions and deadlines allow; True if its state changed."""
        changed = False
        while True:
            row = tx.one("select state, deadline, base_version, config from rounds where round_id = ?", [round_id])
            if row is None:
                return changed  # an unknown round: the caller reports it
            state, deadline, base_version, config_json = row
            if state in FINISHED or state == "summed":
                return changed
            counts = dict(tx.all("select stage, count(*) from participants where round_id = ? group by stage",
                                 [round_id]))
            total = sum(counts.values())
            if state == "forming":
                if total >= self.settings.max_cohort or (now >= deadline and total >= self.settings.min_cohort):
                    self._form(tx, round_id, base_version, now)
                    changed = True
                    continue
                if now >= deadline and self._period_waits(tx, base_version, now):
                    self._abort(tx, round_id, f"only {total} devices had checked in when the release period closed "
                                f"(a cohort needs {self.settings.min_cohort}); the period's release goes ahead")
                    return True
                if now >= deadline:  # too few so far: keep the window open for more
                    tx.execute("update rounds set deadline = ? where round_id = ?",
                               [now + self.settings.checkin_window, round_id])
                return changed
            config = RoundConfig(**json.loads(config_json))
            position = STATES.index(state)  # advertise=1 .. unmask=4: the stage being collected
            expected = sum(c for stage, c in counts.items() if stage >= position - 1)
            submitted = sum(c for stage, c in counts.items() if stage >= position)
            if submitted < expected and now < deadline:
                return changed
            observability.stage_ended(tx, round_id, state, submitted, now)
            min_survivors = config.plan().min_survivors
            if submitted < min_survivors:
                self._abort(tx, round_id, f"only {submitted} of {config.cohort_size} clients completed the "
                            f"{state} stage, fewer than the {min_survivors} the privacy analysis needs")
                return True
            # Those who did not submit in time have dropped: the stage is over, so a late message is refused
            # as one for the wrong stage, and their `stage` stays below the next stage's.
            if state == "unmask":
                self._finish(tx, round_id, config, now)
                return True
            tx.execute("update rounds set state = ?, deadline = ? where round_id = ?",
                       [STATES[position + 1], now + config.stage_timeout, round_id])
            changed = True

    def _period_waits(self, tx: Transaction, version: int, now: float) -> bool:
        """Whether summed cohorts on `version` wait for a release that only a forming cohort holds back."""
        cohorts = periods.period_cohorts(tx, version)
        return periods.closed(tx, self.settings, cohorts, now) and any(state == "summed" for _, state, _, _ in cohorts)

    def _abort(self, tx: Transaction, round_id: str, reason: str) -> None:
        tx.execute("update rounds set state = 'aborted', reason = ? where round_id = ?", [reason, round_id])
        self._purge_secrets(tx, round_id)  # the masked inputs: never to be summed now
        observability.round_ended(round_id, "aborted", reason)

    def _withhold(self, tx: Transaction, round_id: str, check: NoiseCheck, summed: bool,
                  reason: str | None = None) -> None:
        """End the round without a release. `summed`: its noised sum was computed (it counts as spent; the
        round keeps its summand count as the mark of that); otherwise nothing was uploaded yet."""
        reason = reason or check.reason()
        tx.execute("update rounds set state = 'withheld', reason = ?, summands = ? where round_id = ?",
                   [reason, check.summands if summed else None, round_id])
        if summed:
            periods.record_sum(tx, round_id, RoundConfig(**json.loads(tx.one(
                "select config from rounds where round_id = ?", [round_id])[0])))
        self._purge_secrets(tx, round_id)  # the masked inputs: never to be summed (again)
        observability.round_ended(round_id, "withheld", reason, summands=check.summands if summed else None)

    def _purge_secrets(self, tx: Transaction, round_id: str) -> None:
        # Revealed shares, envelopes and masked inputs have done their job once the round is summed or ends;
        # keeping them only adds to what a breach exposes and to what the coordinator stores.
        for table in ("revealed_shares", "envelopes", "masked_inputs"):
            tx.execute(f"delete from {table} where round_id = ?", [round_id])

    def _finish(self, tx: Transaction, round_id: str, config: RoundConfig, now: float) -> None:
        """Reconstruct the seeds and dropped keys and unmask the cohort's sum, kept for its period's release."""
        try:
            total, survivors = unmask_cohort(tx, round_id, config)
        except (SyncError, ShamirError) as error:
            self._abort(tx, round_id, f"the sum could not be unmasked: {error}")
            return
        check = NoiseCheck.of(config.device_noise(), config.parameters, len(survivors))
        if check.noise_dominates and not self.settings.withhold_noisy:
            log.warning("round %s summed though %s (--release-noisy)", round_id, check.reason())
        # With the rule on, a sum too noisy on its own waits in its period for more (`periods.waits_for_more`).
        tx.execute("update rounds set state = 'summed', sum_vector = ?, summands = ? where round_id = ?",
                   [total.astype("<u4").tobytes(), len(survivors), round_id])
        periods.record_sum(tx, round_id, config)
        observability.round_ended(round_id, "summed", summands=len(survivors))
        self._purge_secrets(tx, round_id)

    # -- what clients see ------------------------------------------------------------------------

    def _participant(self, tx: Transaction, round_id: str, device: str) -> tuple[int, int, str, RoundConfig | None]:
        round_row = tx.one("select state, config, reason from rounds where round_id = ?", [round_id])
        if round_row is None:
            raise CoordinatorError(404, "unknown_round", f"there is no round {round_id}")
        me = tx.one("select idx, stage from participants where round_id = ? and device_id = ?", [round_id, device])
        if me is None:
            raise CoordinatorError(403, "not_in_cohort", f"this device is not in round {round_id}")
        config = RoundConfig(**json.loads(round_row[1])) if round_row[1] else None
        return int(me[0]), int(me[1]), round_row[0], config

    def _advance_if_due(self, round_id: str, device: str) -> None:
        """Move the round on if a deadline has passed (reading first: most asks find nothing due)."""
        now = self.clock()
        with self.storage.read() as tx:
            _, _, state, _ = self._participant(tx, round_id, device)
            deadline = tx.one("select deadline from rounds where round_id = ?", [round_id])[0]
        if state in RUNNING and now >= deadline:
            with self.storage.write() as tx:
                tx.lock_round(round_id)
                self._advance(tx, round_id, now)
        if state in RUNNING or state == "summed":
            self.publish_if_due(now)

    def status(self, round_id: str, device: str) -> dict[str, Any]:
        self._advance_if_due(round_id, device)
        with self.storage.read() as tx:
            index, stage, state, config = self._participant(tx, round_id, device)
            row = tx.one("select reason, released_version, deadline, summands from rounds where round_id = ?",
                         [round_id])
            checked_in = tx.one("select count(*) from participants where round_id = ?", [round_id])[0]
            release_at = None
            if state == "summed":  # when its period's release is expected
                version = tx.one("select base_version from rounds where round_id = ?", [round_id])[0]
                release_at = periods.release_at(tx, self.settings, periods.period_cohorts(tx, version), self.clock())
        return {"round_id": round_id, "state": state, "index": index, "completed_stages": stage,
                "release_at": release_at,
                "reason": row[0], "released_version": row[1], "deadline": row[2], "summands": row[3],
                "config": asdict(config) if config else None,  # while forming: how far from min_cohort
                "checked_in": int(checked_in), "min_cohort": self.settings.min_cohort}

    def _require_state(self, state: str, wanted: tuple[str, ...], round_id: str) -> None:
        if state in FINISHED:
            raise CoordinatorError(409, "stale_round", f"round {round_id} is {state}: stale round id")
        if state not in wanted:
            raise CoordinatorError(409, "wrong_stage", f"round {round_id} is in the {state} stage, not {'/'.join(wanted)}")

    # -- the four uploads ----------------------------------------------------------------------

    def submit(self, round_id: str, device: str, stage: protocol.Stage, body: bytes) -> bool:
        """Validate and store one stage's message; True if the round moved on (so pollers should look)."""
        # A stage whose deadline has passed ends in a transaction of its own, committed: the late message is then
        # refused, and a refusal rolls back its transaction, which must not undo the round's move (the round
        # would stay in the stage for every later request).
        self._advance_if_due(round_id, device)
        now = self.clock()
        with self.storage.write() as tx:
            tx.lock_round(round_id)
            index, done, state, config = self._participant(tx, round_id, device)
            wanted = {protocol.Stage.ADVERTISE_KEYS: "advertise", protocol.Stage.SHARE_KEYS: "share",
                      protocol.Stage.MASKED_INPUT: "masked", protocol.Stage.UNMASKING: "unmask"}[stage]
            self._require_state(state, (wanted,), round_id)
            if done >= int(stage):
                raise CoordinatorError(409, "already_submitted", f"participant {index} already sent its {wanted} "
                                       f"message for round {round_id}")
            try:
                message = protocol.decode(body, expected_round=bytes.fromhex(round_id), expected_stage=stage,
                                          expected_length=config.parameters, max_parameters=config.parameters)
            except SyncError as error:
                raise CoordinatorError(400, "malformed_message", str(error)) from None
            if message.sender != index:
                raise CoordinatorError(403, "wrong_sender", f"the message claims sender {message.sender}, but this "
                                       f"device is participant {index}")
            graph = config.graph()
            neighbours = set(graph.neighbours(index))
            if isinstance(message, protocol.AdvertiseKeys):
                tx.execute("update participants set channel_public = ?, mask_public = ?, stage = 1 "
                           "where round_id = ? and idx = ?", [message.channel_public, message.mask_public, round_id, index])
            elif isinstance(message, protocol.ShareKeys):
                advertised = {int(i) for (i,) in tx.all(
                    "select idx from participants where round_id = ? and stage >= 1", [round_id])}
                receivers = {e.receiver for e in message.envelopes}
                if receivers != neighbours & advertised:
                    raise CoordinatorError(400, "wrong_receivers", f"envelopes go to {sorted(receivers)}; participant "
                                           f"{index} must send one to each advertised neighbour "
                                           f"{sorted(neighbours & advertised)}")
                tx.executemany("insert into envelopes (round_id, sender, receiver, nonce, ciphertext) values (?, ?, ?, ?, ?)",
                               [(round_id, index, e.receiver, e.nonce, e.ciphertext) for e in message.envelopes])
                tx.execute("update participants set stage = 2 where round_id = ? and idx = ?", [round_id, index])
            elif isinstance(message, protocol.MaskedInput):
                tx.execute("insert into masked_inputs (round_id, idx, vector) values (?, ?, ?)",
                           [round_id, index, message.values.astype("<u4").tobytes()])
                tx.execute("update participants set stage = 3 where round_id = ? and idx = ?", [round_id, index])
            else:
                self._store_shares(tx, round_id, index, neighbours, message)
            moved = self._advance(tx, round_id, now)
        if moved and stage == protocol.Stage.UNMASKING:
            self.publish_if_due(now)  # the cohort may have been the last its period's release waited for
        return moved

    def _store_shares(self, tx: Transaction, round_id: str, index: int, neighbours: set[int],
                      message: protocol.UnmaskingShares) -> None:
        rows = tx.all("select idx, stage from participants where round_id = ?", [round_id])
        survivors = {int(i) for i, s in rows if s >= 3}
        shared = {int(i) for i, s in rows if s >= 2}
        for share in message.shares:
            if share.owner not in neighbours or share.owner not in shared:
                raise CoordinatorError(400, "unexpected_share", f"participant {index} holds no shares of {share.owner}")
            wanted = protocol.ShareKind.SELF_MASK_SEED if share.owner in survivors else protocol.ShareKind.MASK_KEY
            if share.kind != wanted:
                raise CoordinatorError(400, "wrong_share_kind", f"for participant {share.owner} only its "
                                       f"{wanted.name} share may be revealed: never both secrets of one client")
        tx.executemany("insert into revealed_shares (round_id, holder, owner, kind, value) values (?, ?, ?, ?, ?)",
                       [(round_id, index, s.owner, int(s.kind), s.value.to_bytes(33, "big")) for s in message.shares])
        tx.execute("update participants set stage = 4 where round_id = ? and idx = ?", [round_id, index])

    def round_summary(self, round_id: str) -> dict[str, Any]:
        with self.storage.read() as tx:
            row = tx.one("select state, reason, released_version, summands from rounds where round_id = ?", [round_id])
        if row is None:
            raise CoordinatorError(404, "unknown_round", f"there is no round {round_id}")
        return {"state": row[0], "reason": row[1], "released_version": row[2], "summands": row[3]}
