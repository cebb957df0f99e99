"""The coordinator's round logic: cohorts, the four secure-aggregation stages, recovery, release.

HTTP-free and thread-safe: every public method runs in one `storage.write()` transaction (or a read), so a stage
transition is atomic and several workers sharing a PostgreSQL database agree on it. No background task is needed:
deadlines are checked whenever a client asks (long polls ask every 1.5 s); a stage ends early once all have submitted.

Round states, in order: forming -> advertise -> share -> masked -> unmask -> done; `aborted` from any;
`withheld` when the noise in the round's average would exceed any signal it could carry (`NoiseCheck`, on by
default): decided as the cohort forms (nothing uploaded yet) or after unmasking (too few summands left); a withheld
round publishes nothing and keeps no sum, and one withheld after unmasking counts in the privacy spent.
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
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.federation import protocol
from agent.federation.accounting import device_noise, privacy_spent
from agent.federation.clipping import DistributedNoise, NoiseCheck
from agent.federation.errors import ShamirError, SyncError
from agent.federation.masking import recover_mask_secret, unmask_sum
from agent.federation.neighbourhood import NeighbourGraph, NeighbourhoodPlan, ThreatModel, plan_neighbourhood
from agent.federation.layout import SharedLayout
from agent.federation.quantize import QuantizationPlan, dequantize_sum
from agent.federation.shamir import Share, reconstruct_secret
from agent.federation.signing import AUTH_HEADER, MalformedAuth, SignatureError, device_id_of, parse_request_auth
from agent.federation.signing import sign_release, verify_release, verify_request
from agent.server import admission, observability
from agent.server.outcome import device_outcome
from agent.server.release import build_release, smallest_releasable_cohort
from agent.server.settings import CoordinatorSettings
from agent.server.state import Storage, Transaction

STATES = ("forming", "advertise", "share", "masked", "unmask", "done")
ACTIVE = ("advertise", "share", "masked", "unmask")
FINISHED = ("done", "withheld", "aborted")
STAGE_OF_STATE = {"advertise": protocol.Stage.ADVERTISE_KEYS, "share": protocol.Stage.SHARE_KEYS,
                  "masked": protocol.Stage.MASKED_INPUT, "unmask": protocol.Stage.UNMASKING}
REQUEST_WINDOW_SECONDS = 300.0
log = logging.getLogger("ownrec.coordinator")


def _marks(values) -> str:
    """Placeholders for an `in (...)` list of len(values) parameters (never empty: `in ()` is invalid SQL)."""
    return ", ".join("?" * len(values)) if len(values) else "null"


class CoordinatorError(Exception):
    """A refused request: `status` is the HTTP status, `code` a stable machine-readable reason, and
    `retry_after` (seconds), when given, when the client should ask again (sent as Retry-After)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True)
class RoundConfig:
    """Everything public about a formed round; sent to its participants and stored with it."""

    round_id: str
    cohort_size: int
    degree: int
    threshold: int
    max_dropouts: int
    max_corrupt: int
    graph_seed: str
    clip_norm: float
    noise_multiplier: float
    min_contributors: int
    clamp_bound: float
    scale: float
    max_summands: int
    parameters: int
    layout_digest: str
    base_version: int
    target_delta: float
    epsilon_after: float   # the coordinator's epsilon over all its releases, this round included
    delta_after: float
    stage_timeout: float
    max_round_epsilon: float | None = None  # the device floor the quantization and noise figures make room for

    def plan(self) -> NeighbourhoodPlan:
        return NeighbourhoodPlan(cohort_size=self.cohort_size, degree=self.degree, threshold=self.threshold,
                                 max_dropouts=self.max_dropouts, max_corrupt=self.max_corrupt,
                                 threat_model=ThreatModel.CURIOUS_SERVER)

    def noise(self) -> DistributedNoise:
        """The distributed noise the accounting counts: z*C/sqrt(n) from each of at least n honest devices."""
        return DistributedNoise(self.clip_norm, self.noise_multiplier, self.min_contributors)

    def device_noise(self) -> DistributedNoise:
        """The most noise a device adds in this round: its share raised to the announced floor."""
        return device_noise(self.noise(), self.max_round_epsilon, self.target_delta)

    def quantization(self) -> QuantizationPlan:
        return QuantizationPlan(clamp_bound=self.clamp_bound, scale=self.scale, max_summands=self.max_summands)

    def graph(self) -> NeighbourGraph:
        return NeighbourGraph.from_seed(self.plan(), bytes.fromhex(self.graph_seed), bytes.fromhex(self.round_id))


class Coordinator:
    def __init__(self, storage: Storage, signing_key: Ed25519PrivateKey, settings: CoordinatorSettings,
                 default_layout: SharedLayout | None = None, initial_vector: np.ndarray | None = None) -> None:
        """Opens (or on first use initialises, with `default_layout` and `initial_vector`, a public prior, or
        zeros as release 1)."""
        self.storage = storage
        self.signing_key = signing_key
        self.settings = settings
        self.public_key = signing_key.public_key().public_bytes_raw()
        self._release_cache = None
        self._spent_cache: dict[tuple, Any] = {}
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
                meta = {"round_id": None, "created": time.time(), "epsilon": 0.0, "delta": 0.0, "rounds": 0}
                body = sign_release(signing_key, 1, meta | {"prior": initial_vector is not None}, default_layout, start)
                tx.execute("insert into releases (version, round_id, created_at, noise_multiplier, clamp_probability,"
                           " epsilon, delta, body) values (1, null, ?, null, null, 0, 0, ?)", [time.time(), body])
            elif bytes(stored[0]) != self.public_key:
                raise ValueError("this database was created with another signing key: its releases would not verify")
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
            spent = self._spent(tx, [])
            spent_next = self._spent(tx, [(self.settings.noise_multiplier, 0.0)])
        return {"signing_public_key": self.public_key.hex(), "latest_version": release.version,
                "layout_digest": release.layout.digest(), "parameters": release.layout.size,
                "epsilon": spent.epsilon, "delta": spent.delta, "rounds": spent.rounds,
                "epsilon_budget": self.settings.epsilon_budget, "target_delta": self.settings.target_delta,
                "server_learning_rate": self.settings.server_learning_rate,
                "item_learning_rate": self.settings.item_learning_rate,
                "withhold_noisy": self.settings.withhold_noisy,
                # what a device checks before taking part (agent.core.sync.client)
                "min_cohort": self.settings.min_cohort, "max_cohort": self.settings.max_cohort,
                "checkin_window": self.settings.checkin_window, "noise_multiplier": self.settings.noise_multiplier,
                "clip_norm": self.settings.clip_norm, "max_round_epsilon": self.settings.max_round_epsilon,
                "budget_exhausted": spent_next.epsilon > self.settings.epsilon_budget,
                "shrink_noise": self.settings.shrink_noise}

    def smallest_releasable_cohort(self, parameters: int, limit: int = 10**7) -> int | None:
        """The fewest clients (at least min_cohort) whose completed round is not withheld (`release`)."""
        return smallest_releasable_cohort(self.settings, parameters, limit)

    def _spent(self, tx: Transaction, extra: list[tuple[float, float]]):
        rows = tx.all("select noise_multiplier, clamp_probability from releases where round_id is not null")
        rows = tuple((float(z), float(p)) for z, p in rows)
        # A round withheld after unmasking (it has summands) was not published, but its noised sum was
        # computed here: it counts as spent, like a release.
        for (config_json,) in tx.all("select config from rounds where state = 'withheld' and summands is not null "
                                     "order by created_at"):
            config = RoundConfig(**json.loads(config_json))
            rows += ((config.noise_multiplier,
                      config.quantization().clamp_failure_probability(config.parameters, config.device_noise())),)
        rows += tuple(extra)
        if rows not in self._spent_cache:  # the accountant takes milliseconds; check-ins and /info ask often
            if len(self._spent_cache) >= 8:
                self._spent_cache.clear()
            self._spent_cache[rows] = privacy_spent([z for z, _ in rows], self.settings.target_delta,
                                                    [p for _, p in rows])
        return self._spent_cache[rows]

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
        age = abs(time.time() - auth.seconds)
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
            now = time.time()
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
        """Join the forming cohort (opening one if none is forming and no round is running)."""
        now = time.time()
        with self.storage.write() as tx:
            self._advance_all(tx, now)
            mine = tx.one("select r.round_id, r.state, r.deadline from participants p join rounds r on "
                          "r.round_id = p.round_id where p.device_id = ? and r.state not in ('done', 'withheld', "
                          "'aborted')", [device])
            if mine:
                raise CoordinatorError(409, "already_in_cohort", f"this device is already in round {mine[0]} "
                                       f"({mine[1]}): a client takes part in one cohort at a time",
                                       retry_after=max(0.0, mine[2] - now) + 4 * self.settings.stage_timeout)
            running = tx.one("select round_id, deadline from rounds where state in "
                             "('advertise', 'share', 'masked', 'unmask')")
            if running:
                ends = max(0.0, running[1] - now) + 4 * self.settings.stage_timeout
                raise CoordinatorError(409, "round_in_progress", f"round {running[0]} is running; check in again "
                                       f"after it ends (at the latest in {ends:.0f} s)", retry_after=ends)
            latest = self._latest_release(tx)
            if base_version is not None and base_version != latest.version:
                raise CoordinatorError(409, "stale_base", f"you trained on version {base_version}; the current "
                                       f"global adapter is version {latest.version}: fetch it and train again",
                                       retry_after=0.0)
            if self._spent(tx, [(self.settings.noise_multiplier, 0.0)]).epsilon > self.settings.epsilon_budget:
                raise CoordinatorError(403, "budget_exhausted", "another round would take epsilon above the "
                                       f"configured budget of {self.settings.epsilon_budget}: no more rounds")
            forming = tx.one("select round_id from rounds where state = 'forming'")
            if forming is None:
                round_id = secrets.token_bytes(16).hex()
                tx.execute("insert into rounds (round_id, state, created_at, deadline, base_version) "
                           "values (?, 'forming', ?, ?, ?)", [round_id, now, now + self.settings.checkin_window,
                                                              latest.version])
                observability.round_opened(round_id)
            else:
                round_id = forming[0]
            count = tx.one("select count(*) from participants where round_id = ?", [round_id])[0]
            tx.execute("insert into participants (round_id, idx, device_id, stage) values (?, ?, ?, 0)",
                       [round_id, count + 1, device])
            self._advance(tx, round_id, now)
            return {"round_id": round_id, "index": count + 1, "base_version": latest.version}

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
        spent = self._spent(tx, [(settings.noise_multiplier, clamp)])
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
            self._withhold(tx, round_id, best_case, summed=False)

    # -- the state machine ------------------------------------------------------------------------

    def _advance_all(self, tx: Transaction, now: float) -> None:
        for (round_id,) in tx.all("select round_id from rounds where state not in ('done', 'withheld', 'aborted')"):
            self._advance(tx, round_id, now)

    def _advance(self, tx: Transaction, round_id: str, now: float) -> bool:
        """Move the round on as far as its submissions and deadlines allow; True if its state changed."""
        changed = False
        while True:
            row = tx.one("select state, deadline, base_version, config from rounds where round_id = ?", [round_id])
            if row is None:
                return changed  # an unknown round: the caller reports it
            state, deadline, base_version, config_json = row
            if state in FINISHED:
                return changed
            counts = dict(tx.all("select stage, count(*) from participants where round_id = ? group by stage",
                                 [round_id]))
            total = sum(counts.values())
            if state == "forming":
                if total >= self.settings.max_cohort or (now >= deadline and total >= self.settings.min_cohort):
                    self._form(tx, round_id, base_version, now)
                    changed = True
                    continue
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

    def _abort(self, tx: Transaction, round_id: str, reason: str) -> None:
        tx.execute("update rounds set state = 'aborted', reason = ? where round_id = ?", [reason, round_id])
        self._purge_secrets(tx, round_id)
        tx.execute("delete from masked_inputs where round_id = ?", [round_id])  # never to be summed now
        observability.round_ended(round_id, "aborted", reason)

    def _withhold(self, tx: Transaction, round_id: str, check: NoiseCheck, summed: bool) -> None:
        """End the round without a release. `summed`: its noised sum was computed (it counts as spent; the
        round keeps its summand count as the mark of that); otherwise nothing was uploaded yet."""
        reason = check.reason()
        tx.execute("update rounds set state = 'withheld', reason = ?, summands = ? where round_id = ?",
                   [reason, check.summands if summed else None, round_id])
        self._purge_secrets(tx, round_id)
        tx.execute("delete from masked_inputs where round_id = ?", [round_id])  # never to be summed (again)
        observability.round_ended(round_id, "withheld", reason, summands=check.summands if summed else None)

    def _purge_secrets(self, tx: Transaction, round_id: str) -> None:
        # Revealed shares and envelopes have done their job; keeping them only adds to what a breach exposes.
        for table in ("revealed_shares", "envelopes"):
            tx.execute(f"delete from {table} where round_id = ?", [round_id])

    def _finish(self, tx: Transaction, round_id: str, config: RoundConfig, now: float) -> None:
        """Reconstruct the seeds and dropped keys, unmask the sum, apply the average, sign the release."""
        rows = tx.all("select idx, stage, mask_public from participants where round_id = ?", [round_id])
        mask_publics = {int(idx): bytes(pk) for idx, stage, pk in rows if stage >= 2}
        survivors = {int(idx) for idx, stage, _ in rows if stage >= 3}
        dropped = set(mask_publics) - survivors
        graph = config.graph()
        plan = config.plan()
        shares: dict[tuple[int, int], list[Share]] = defaultdict(list)
        for holder, owner, kind, value in tx.all(
                "select holder, owner, kind, value from revealed_shares where round_id = ?", [round_id]):
            shares[(owner, kind)].append(Share.from_value_bytes(int(holder), bytes(value)))
        try:
            seeds = {u: reconstruct_secret(shares[(u, protocol.ShareKind.SELF_MASK_SEED)], plan.threshold)
                     for u in survivors}
            neighbours_of = {d: graph.neighbours(d) for d in dropped}
            dropped_keys = {d: recover_mask_secret(shares[(d, protocol.ShareKind.MASK_KEY)], plan.threshold,
                                                   mask_publics[d])
                            for d in dropped if survivors & set(neighbours_of[d])}
            inputs = {int(idx): np.frombuffer(bytes(vector), dtype="<u4").astype(np.uint32) for idx, vector in tx.all(
                "select idx, vector from masked_inputs where round_id = ?", [round_id]) if int(idx) in survivors}
            total = unmask_sum(inputs, round_id=bytes.fromhex(round_id), mask_publics=mask_publics,
                               neighbours_of=neighbours_of, self_mask_seeds=seeds, dropped_mask_secrets=dropped_keys)
        except (SyncError, ShamirError) as error:
            self._abort(tx, round_id, f"the sum could not be unmasked: {error}")
            return
        summed = dequantize_sum(total, config.quantization(), len(survivors))
        noise = config.device_noise()
        check = NoiseCheck.of(noise, config.parameters, len(survivors))
        if check.noise_dominates:
            if self.settings.withhold_noisy:  # dropouts left too few summands
                self._withhold(tx, round_id, check, summed=True)
                return
            log.warning("round %s released though %s (--release-noisy)", round_id, check.reason())
        latest = self._latest_release(tx)
        clamp = config.quantization().clamp_failure_probability(config.parameters, noise)
        spent = self._spent(tx, [(config.noise_multiplier, clamp)])
        version = latest.version + 1
        body = build_release(self.signing_key, self.settings, latest, config, summed / len(survivors),
                             len(survivors), check, spent, now)
        tx.execute("insert into releases (version, round_id, created_at, noise_multiplier, clamp_probability, epsilon,"
                   " delta, body) values (?, ?, ?, ?, ?, ?, ?, ?)",
                   [version, round_id, now, config.noise_multiplier, clamp, spent.epsilon, spent.delta, body])
        tx.execute("update rounds set state = 'done', released_version = ?, sum_vector = ?, summands = ? "
                   "where round_id = ?", [version, total.astype("<u4").tobytes(), len(survivors), round_id])
        observability.round_ended(round_id, "done", version=version, summands=len(survivors))
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
        now = time.time()
        with self.storage.read() as tx:
            _, _, state, _ = self._participant(tx, round_id, device)
            deadline = tx.one("select deadline from rounds where round_id = ?", [round_id])[0]
        if state not in FINISHED and now >= deadline:
            with self.storage.write() as tx:
                self._advance(tx, round_id, now)

    def status(self, round_id: str, device: str) -> dict[str, Any]:
        self._advance_if_due(round_id, device)
        with self.storage.read() as tx:
            index, stage, state, config = self._participant(tx, round_id, device)
            row = tx.one("select reason, released_version, deadline, summands from rounds where round_id = ?",
                         [round_id])
            checked_in = tx.one("select count(*) from participants where round_id = ?", [round_id])[0]
        return {"round_id": round_id, "state": state, "index": index, "completed_stages": stage,
                "reason": row[0], "released_version": row[1], "deadline": row[2], "summands": row[3],
                "config": asdict(config) if config else None,  # while forming: how far from min_cohort
                "checked_in": int(checked_in), "min_cohort": self.settings.min_cohort}

    def _require_state(self, state: str, wanted: tuple[str, ...], round_id: str) -> None:
        if state in FINISHED:
            raise CoordinatorError(409, "stale_round", f"round {round_id} is {state}: stale round id")
        if state not in wanted:
            raise CoordinatorError(409, "wrong_stage", f"round {round_id} is in the {state} stage, not {'/'.join(wanted)}")

    def neighbour_keys(self, round_id: str, device: str) -> dict[str, Any]:
        with self.storage.read() as tx:
            index, _, state, config = self._participant(tx, round_id, device)
            self._require_state(state, ("share", "masked", "unmask"), round_id)
            neighbours = config.graph().neighbours(index)
            # Only the neighbours' rows: reading the whole cohort for each of its n members costs n^2.
            rows = tx.all("select idx, channel_public, mask_public from participants where round_id = ? "
                          f"and stage >= 1 and idx in ({_marks(neighbours)})", [round_id, *neighbours])
        keys = {int(i): (bytes(c).hex(), bytes(m).hex()) for i, c, m in rows}
        return {"neighbours": {str(i): {"channel": c, "mask": m} for i, (c, m) in sorted(keys.items())}}

    def envelopes_for(self, round_id: str, device: str) -> dict[str, Any]:
        with self.storage.read() as tx:
            index, _, state, config = self._participant(tx, round_id, device)
            self._require_state(state, ("masked", "unmask"), round_id)
            neighbours = config.graph().neighbours(index)
            completed = sorted(int(i) for (i,) in tx.all(
                f"select idx from participants where round_id = ? and stage >= 2 and idx in ({_marks(neighbours)})",
                [round_id, *neighbours]))
            rows = tx.all("select sender, nonce, ciphertext from envelopes where round_id = ? and receiver = ?",
                          [round_id, index])
        return {"completed": completed, "envelopes": [
            {"sender": int(s), "nonce": bytes(n).hex(), "ciphertext": bytes(c).hex()}
            for s, n, c in rows if int(s) in completed]}

    def survivors_for(self, round_id: str, device: str) -> dict[str, Any]:
        with self.storage.read() as tx:
            index, _, state, config = self._participant(tx, round_id, device)
            self._require_state(state, ("unmask",), round_id)
            rows = tx.all("select idx, stage from participants where round_id = ?", [round_id])
        survivors = sorted(int(i) for i, s in rows if s >= 3)
        shared = sorted(int(i) for i, s in rows if s >= 2)
        return {"survivors": survivors, "dropped": sorted(set(shared) - set(survivors))}

    # -- the four uploads ----------------------------------------------------------------------

    def submit(self, round_id: str, device: str, stage: protocol.Stage, body: bytes) -> bool:
        """Validate and store one stage's message; True if the round moved on (so pollers should look)."""
        now = time.time()
        with self.storage.write() as tx:
            self._advance(tx, round_id, now)
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
            return self._advance(tx, round_id, now)

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

    def round_outcome(self, round_id: str, device: str) -> dict[str, str]:
        """This device's outcome in the round, signed (`outcome.device_outcome`); it moves the round on first."""
        self._advance_if_due(round_id, device)
        with self.storage.read() as tx:
            _, stage, state, _ = self._participant(tx, round_id, device)
            row = tx.one("select reason, released_version, summands from rounds where round_id = ?", [round_id])
        return device_outcome(self.signing_key, round_id, device, state, state in FINISHED, stage, *row)
