"""One federated round on the client: train, clip, noise, quantize, mask, upload, unmask, verify the release.

No UI, and no network until `run_round` is called: the caller (the consent setting, the scheduler)
decides whether a round runs at all. Everything that leaves the device goes through `CoordinatorLink`,
over TLS to a coordinator whose certificate and release-signing key were pinned when the person joined
(`CoordinatorPin`); every request is signed by this device's Ed25519 key (see `signing`).

Before uploading anything derived from the person's data, the client checks the round's public
configuration against its own policy (`ClientPolicy`): the noise multiplier, the cohort size, that the
threshold and neighbourhood are what `plan_neighbourhood` gives for that cohort, that the noise counts
only `min_survivors` contributors, and that the quantization plan is the finest no-wrap plan for the
cohort. A coordinator that asks for less privacy is refused before any update is computed.

Before that, the client reads what the coordinator announces (`/v1/info`): a coordinator whose cohorts are all
smaller than this device's minimum, or whose per-device privacy budget no round fits in, is named as the
reason no round can include it (`RoundCannotForm`), before any training or check-in; a device that has spent
that budget is told so at its check-in (`budget_exhausted`). The first check-in carries the enrolment code
the operator gave the person (the coordinator admits only enrolled devices). The device's privacy floor
(`ClientPolicy.max_round_epsilon`, `floor_noise`): it adds at least the noise that keeps its epsilon for the
round within that bound even if every other member were fake, and refuses a round whose quantization has no
room for it. Every request a run sent is logged by kind (`SENT_EVENT`), what `ownrec sync log` lists.

Every upload is in the local ledger (`sync_ledger`, migrations m004, m007 and m008): round, bytes sent, the
pre-clip norm, C, the noise, and epsilon both as the coordinator reports it and as this client computes
it over the rounds it took part in. The row is committed as "pending" *before* the masked input is sent,
so no crash, exit or `sync off` can leave an update that may be summed out of the ledger; a pending row
counts as spent. It is settled from the coordinator's record of the round: within the round when this
client sees its end (released; withheld after summing; aborted, the inputs deleted unsummed; or dropped,
this client not among the survivors), otherwise at the next contact, from the round's signed outcome
(`settle_pending`, GET /v1/rounds/{id}/outcome). Only "aborted" and "dropped" spend nothing
(`UNSPENT_LEDGER_STATES`). Verified releases are kept in `sync_releases`; whether the feed uses one is
`adoption`'s decision.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.ranker.adapters import PersonalAdapter
from agent.core.sync.link import CoordinatorLink, CoordinatorPin, CoordinatorRefused
from agent.core.ranker.model import Catalog
from agent.federation import protocol
from agent.federation.clipping import DistributedNoise
from agent.federation.errors import PolicyViolation, SyncError
from agent.core.sync.parameters import train_global_delta
from agent.core.sync.policy import ClientPolicy, check_round_config, floor_noise
from agent.federation.stages import ClientRound
from agent.federation.signing import Release, public_bytes, verify_release

if TYPE_CHECKING:
    from agent.core.store import Store

POLL_SECONDS = 4.0  # each long poll returns within this, so a cancellation takes effect within it


class RoundAborted(SyncError):
    """The round ended without a release (too few survivors, a timeout, or this client was dropped).
    `unused`: the coordinator showed it never summed this client's input: the ledger state that says how
    ("aborted": it aborted the round; "dropped": it did not list this client as a survivor), else None."""

    def __init__(self, message: str, unused: str | None = None) -> None:
        super().__init__(message)
        self.unused = unused


class RoundWithheld(SyncError):
    """The coordinator did not release the round: its noise would have been larger than its signal.
    `summed`: it was decided after the noised sum was computed (the upload counts as spent), not when the
    cohort formed (nothing was uploaded)."""

    def __init__(self, round_id: str, reason: str, summed: bool) -> None:
        spent = ("its noised sum was computed, so this device's upload counts in the privacy spent" if summed
                 else "nothing derived from this device's data was uploaded")
        super().__init__(f"the coordinator did not release round {round_id[:8]}: {reason} ({spent})")
        self.round_id, self.reason, self.summed = round_id, reason, summed


class RoundCancelled(SyncError):
    """The caller cancelled the round (sync turned off, app closing)."""


class RoundCannotForm(SyncError):
    """No round can include this device, for a reason it can name before anything derived from the person's
    data is uploaded: `code` is the coordinator's refusal (not_enrolled, budget_exhausted, rate_limited, ...)
    or this device's own (cohort_too_small, not_formed, declined). `retry`: whether trying again later can
    help without the person or the operator doing something (a new enrolment code, a new budget)."""

    def __init__(self, code: str, message: str, retry_after: float | None = None,
                 refused_check_in: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retry = code not in STOPPING_CODES
        self.retry_after = retry_after  # the coordinator's time to come back (seconds), when it named one
        self.refused_check_in = refused_check_in  # the coordinator refused the check-in (else: announced, or ours)


# Refusals that asking again cannot change: the scheduler stops starting rounds with this coordinator until
# the person joins again (`ownrec sync join`), and says why.
STOPPING_CODES = frozenset({"not_enrolled", "bad_enrolment_token", "enrolment_revoked", "budget_exhausted"})
# Refusals that name when to come back (`retry_after`): the cohorts running are the most the coordinator runs
# at once; the period's cohorts are complete and its release is pending; this device's update is already in it.
COME_BACK_CODES = frozenset({"rate_limited", "round_in_progress", "release_pending", "already_in_period"})
# What each kind of request carries, in the words `ownrec sync log` shows.
SENT_WORDS = {
    "release": "fetch the latest release (public)", "info": "read the coordinator's announced settings (public)",
    "checkin": "check in (this device's public key and the release version it trained on)",
    "status": "ask how the round stands", "advertise-keys": "this round's two public keys",
    "neighbour-keys": "fetch the neighbours' public keys", "share-keys": "key shares sealed for each neighbour",
    "envelopes": "fetch the sealed shares for this device", "masked-input": "the clipped, noised, masked update",
    "survivors": "fetch who completed the round", "unmasking": "one key share per neighbour",
    "outcome": "ask how an earlier round ended for this device (its signed record)"}
ENROLMENT_FILE = "enrolment-token"  # in the data folder's sync/, beside the device key
BLOCKED_STATE = "sync_blocked"  # the store's state: why rounds with the pinned coordinator cannot form
SENT_EVENT = "sync_sent"  # one event per contact: everything this device sent, request by request kind


@dataclass
class LocalTrainingData:
    """What local training reads: the encoded catalog, the personal adapter (fixed) and the labels."""

    catalog: Catalog
    personal: PersonalAdapter
    labels: dict[int, float]


@dataclass
class RoundOutcome:
    round_id: str
    index: int
    state: str                 # released | summed (its release after this round's time) | withheld | aborted | cancelled | unknown
    bytes_sent: int            # request bodies and headers this client sent in the round
    upload_bytes: int          # the four stage messages alone
    pre_clip_norm: float
    released_version: int | None = None
    epsilon_server: float | None = None
    epsilon_client: float | None = None
    epsilon_round_honest: float | None = None  # this round alone, every other member honest (the accounting)
    epsilon_round_worst: float | None = None   # this round alone, this device's own noise the only noise
    refused_envelopes: list[int] = field(default_factory=list)
    release: Release | None = None


class RoundRunner:
    """One client's side of one round (the steps in the module docstring)."""

    def __init__(self, link: CoordinatorLink, store: "Store", policy: ClientPolicy,
                 cancel: threading.Event | None = None, progress: Callable[[str], None] | None = None,
                 rng: np.random.Generator | None = None, enrolment_token: str | None = None,
                 on_enrolled: Callable[[], None] | None = None) -> None:
        self.link = link
        self.store = store  # the ledger of uploads and the releases kept (migration m004)
        self.policy = policy
        self.cancel = cancel or threading.Event()
        self.progress = progress or (lambda stage: None)
        self.rng = rng  # None: noise and rounding from the OS CSPRNG (tests pass a seeded generator)
        self.coordinator_key = link.pin.signing_public_key.hex()
        self.enrolment_token = enrolment_token  # sent with the check-in until the coordinator has enrolled this key
        self.on_enrolled = on_enrolled or (lambda: None)  # the check-in with the token was accepted
        self._token_sent = False

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise RoundCancelled("the round was cancelled")

    def _upload(self, round_id: str, stage: str, message: protocol.Message,
                before_sending: Callable[[int], None] | None = None) -> int:
        """Send one stage's message; `before_sending(bytes_sent once it is sent)` runs first, and a cancel
        is then no longer checked (what it recorded is about to be true)."""
        body = protocol.encode(message)
        request = self.link.build("POST", f"/v1/rounds/{round_id}/{stage}", body)
        self._check_cancel()
        if before_sending is not None:
            before_sending(self.link.bytes_sent + self.link.wire_size(request))
        self.link.send(request)
        self.progress(stage)
        return len(body)

    def _get(self, round_id: str, what: str) -> dict[str, Any]:
        self._check_cancel()
        return self.link.request("GET", f"/v1/rounds/{round_id}/{what}").json()

    def _wait_for_release(self, round_id: str, started: float, status: dict[str, Any]) -> dict[str, Any] | None:
        """The round's status once its period's release is out; None if that is expected after this round's
        time is up, or at no time the coordinator can name (its period waits for more cohorts): the release is
        then fetched by the next round, the ledger settled at the next contact."""
        expected, remaining = status.get("release_at"), self.policy.round_timeout - (time.monotonic() - started)
        if expected is None or expected - time.time() > remaining:
            return None
        try:
            return self._wait_for(round_id, "summed", "done", started)
        except RoundAborted:
            if time.monotonic() - started > self.policy.round_timeout:
                return None
            raise

    def _wait_for(self, round_id: str, since: str, wanted: str, started: float,
                  also: tuple[str, ...] = ()) -> dict[str, Any]:
        """Long-poll until the round leaves `since`: its status if it moved to `wanted` (or one of `also`)."""
        status: dict[str, Any] = {}
        while True:
            self._check_cancel()
            if time.monotonic() - started > self.policy.round_timeout:
                if since == "forming" and "checked_in" in status:
                    raise RoundCannotForm("not_formed", f"no cohort formed within {self.policy.round_timeout:.0f} s: "
                                          f"{status['checked_in']} device(s) had checked in, and the coordinator "
                                          f"forms a cohort from {status['min_cohort']}")
                raise RoundAborted(f"round {round_id} took longer than {self.policy.round_timeout:.0f} s")
            status = self.link.request("GET", f"/v1/rounds/{round_id}/status",
                                       params={"since": since, "wait": POLL_SECONDS}).json()
            if status["state"] == since:
                continue
            if status["state"] == "aborted":
                raise RoundAborted(f"round {round_id} was aborted: {status['reason']}", unused="aborted")
            if status["state"] == "withheld":
                raise RoundWithheld(round_id, status["reason"], summed=status.get("summands") is not None)
            if status["state"] != wanted and status["state"] not in also:
                raise RoundAborted(f"round {round_id} moved on to {status['state']} without this client "
                                   f"(it missed the {since} deadline and counts as dropped)")
            return status

    def last_release_version(self) -> int | None:
        return self.store.newest_release_version(self.coordinator_key)

    def client_epsilon(self, noise_multiplier: float, target_delta: float) -> float:
        """This client's own epsilon after this round: every upload that counts as spent, plus this one."""
        from agent.federation.accounting import privacy_spent  # dp-accounting takes ~1.5 s to import: only for rounds

        spent = self.store.spent_noise_multipliers(self.coordinator_key)
        return privacy_spent(spent + [noise_multiplier], target_delta).epsilon

    def settle_pending(self) -> list[tuple[str, str]]:
        """Settle every pending upload to this coordinator from its signed record of the round; the
        (round id, state) of each settled. A round still running, or a record that cannot be had or does
        not verify, leaves the row pending (still counted as spent)."""
        from agent.federation.signing import device_id_of, verify_round_outcome

        device = device_id_of(public_bytes(self.link.device_key))
        settled = []
        for row in self.store.pending_uploads(self.coordinator_key):
            self._check_cancel()
            round_id = row["round_id"]
            try:
                signed = self.link.request("GET", f"/v1/rounds/{round_id}/outcome").json()
                record = verify_round_outcome(signed, self.link.pin.signing_public_key, round_id, device)
            except (SyncError, httpx.HTTPError, ValueError):
                continue  # asked again at the next contact
            if record["summed"] is None:
                continue
            state = self._settled_state(record)
            changes = {"state": state, "settled_at": time.time(), "outcome": self._outcome_words(record)}
            if state == "released":
                changes["release_version"] = record["released_version"]
            self.store.update_upload(row["id"], changes)
            settled.append((round_id, state))
        return settled

    @staticmethod
    def _settled_state(record: dict[str, Any]) -> str:
        if record["summed"]:
            return "released" if record["state"] == "done" else "withheld"
        return "aborted" if record["state"] == "aborted" else "dropped"

    @staticmethod
    def _outcome_words(record: dict[str, Any]) -> str:
        if record["summed"]:
            return (f"summed into release {record['released_version']}" if record["state"] == "done"
                    else f"summed, then withheld: {record['reason']}")
        if record["state"] == "aborted":
            return f"never summed: the round was aborted ({record['reason']})"
        return "never summed: the coordinator did not receive this device's masked input in time"

    def run(self, data: LocalTrainingData) -> RoundOutcome:
        """One round; every request it sent is logged (`SENT_EVENT`) however it ends."""
        before = {kind: list(tally) for kind, tally in self.link.sent_by_kind.items()}
        try:
            return self._run(data)
        except RoundCannotForm as error:
            self.store.set_state(BLOCKED_STATE, {"coordinator_key": self.coordinator_key, "code": error.code,
                                                 "message": str(error), "retry": error.retry, "at": time.time()})
            raise
        finally:
            self._log_sent(before)

    def _check_info(self, info: dict[str, Any]) -> None:
        """What the coordinator announces, against this device's policy, before anything else is sent."""
        if info.get("no_round_fits_budget"):
            raise RoundCannotForm("budget_exhausted", f"one round at this coordinator's noise (multiplier "
                                  f"{info['noise_multiplier']:g}) costs more than its privacy budget of "
                                  f"{info['epsilon_budget']:g} per device: it includes no device in any round, so "
                                  "this device stops asking")
        largest = info.get("max_cohort")
        if largest is not None and int(largest) < self.policy.min_cohort:
            raise RoundCannotForm("cohort_too_small", f"the coordinator forms cohorts of {info['min_cohort']} to "
                                  f"{largest} devices, and this device takes part only in cohorts of at least "
                                  f"{self.policy.min_cohort} (the setting sync.min_cohort): no round can include it")

    def _run(self, data: LocalTrainingData) -> RoundOutcome:
        started = time.monotonic()
        self._check_cancel()
        base = self.link.latest_release()
        known = self.last_release_version()
        if known is not None and base.version < known:
            raise PolicyViolation(f"the coordinator offers version {base.version}, older than the {known} already "
                                  f"loaded: refusing a rollback")
        self._store_release(base)
        # The next contact after a round whose end this device did not see: settled first, also when the
        # coordinator then turns out to start no more rounds.
        self.settle_pending()
        self._check_info(self.link.request("GET", "/v1/info", signed=False).json())
        delta = train_global_delta(base.layout, base.vector, data.personal, data.catalog, data.labels,
                                   self.policy.training)
        self._check_cancel()
        request = {"device_public": public_bytes(self.link.device_key).hex(), "base_version": base.version}
        if self.enrolment_token:
            request["enrolment_token"] = self.enrolment_token
            self._token_sent = True
        try:
            joined = self.link.request("POST", "/v1/checkin", json.dumps(request).encode()).json()
        except CoordinatorRefused as refusal:
            if refusal.code in STOPPING_CODES | COME_BACK_CODES:
                raise RoundCannotForm(refusal.code, f"refused by the coordinator: {refusal.reason} ({refusal.code})",
                                      refusal.retry_after, refused_check_in=True) from None
            raise
        if self.enrolment_token:
            self.enrolment_token = None
            self.on_enrolled()
        if (self.store.get_state(BLOCKED_STATE) or {}).get("coordinator_key") == self.coordinator_key:
            self.store.set_state(BLOCKED_STATE, None)
        round_id, index = joined["round_id"], int(joined["index"])
        # The coordinator's count of what this device will have spent if the cohort sums its update.
        counted = joined.get("epsilon_after"), joined.get("delta_after")
        self.progress("checked-in")
        outcome = RoundOutcome(round_id=round_id, index=index, state="running", bytes_sent=0, upload_bytes=0,
                               pre_clip_norm=float("nan"))
        ledger_id = None
        settled_as: tuple[str, str] | None = None  # (ledger state, in words) once the coordinator said
        try:
            status = self._wait_for(round_id, "forming", "advertise", started)
            config = status["config"]
            target_delta = float(config["target_delta"])
            try:
                plan, noise, quantization = check_round_config(config, self.policy, base)
                own = floor_noise(noise, quantization, self.policy, target_delta)
            except PolicyViolation as violation:
                raise RoundCannotForm("declined", f"this device declined round {round_id[:8]}: {violation}") from None
            epsilon_client = self.client_epsilon(noise.noise_multiplier, target_delta)
            if self.policy.epsilon_budget is not None and epsilon_client > self.policy.epsilon_budget:
                raise RoundCannotForm("declined", f"this device declined round {round_id[:8]}: it would take this "
                                      f"device's epsilon to {epsilon_client:.2f}, above its budget of "
                                      f"{self.policy.epsilon_budget}")
            from agent.federation.accounting import gaussian_epsilon, worst_case_round_epsilon

            # This round alone: with every other member honest, the noise is at least the accounting's z*C;
            # with every other member fake, it is this device's own noise.
            outcome.epsilon_round_honest = (gaussian_epsilon(noise.noise_multiplier, target_delta)
                                            if noise.noise_multiplier > 0 else float("inf"))
            outcome.epsilon_round_worst = worst_case_round_epsilon(own, target_delta)
            stages = ClientRound(round_id, index, bytes.fromhex(config["graph_seed"]), plan, own, quantization,
                                 self.rng)

            # Stage 1: advertise this round's public keys.
            outcome.upload_bytes += self._upload(round_id, "advertise-keys", stages.advertise())
            self._wait_for(round_id, "advertise", "share", started)

            # Stage 2: Shamir-share both secrets to the neighbours that advertised, sealed for each.
            outcome.upload_bytes += self._upload(round_id, "share-keys",
                                                 stages.share(self._get(round_id, "neighbour-keys")))
            self._wait_for(round_id, "share", "masked", started)

            # Stage 3: open the neighbours' envelopes, then clip, noise, quantize and mask the update.
            # The ledger row is committed before the masked input is sent: whatever happens to this process
            # from here on, the update that may be summed is counted as spent until the coordinator's record
            # says otherwise.
            masked = stages.masked_input(self._get(round_id, "envelopes"), delta)
            outcome.pre_clip_norm, outcome.refused_envelopes = stages.pre_clip_norm, stages.refused_envelopes

            def record(bytes_sent: int) -> None:
                nonlocal ledger_id
                outcome.bytes_sent = bytes_sent  # the masked input included: it is sent right after
                ledger_id = self._record_upload(round_id, config, noise, own, stages.pre_clip_norm, outcome,
                                                epsilon_client, counted)

            outcome.upload_bytes += self._upload(round_id, "masked-input", masked, before_sending=record)
            outcome.epsilon_server = float(config["epsilon_after"] if counted[0] is None else counted[0])
            outcome.epsilon_client = epsilon_client
            self._wait_for(round_id, "masked", "unmask", started)

            # Stage 4: reveal one share per neighbour: the seed of a survivor, the key of a dropout.
            listed = self._get(round_id, "survivors")
            if index not in set(listed["survivors"]):
                raise RoundAborted("the coordinator does not list this client as a survivor", unused="dropped")
            outcome.upload_bytes += self._upload(round_id, "unmasking", stages.unmasking(listed))
            final = self._wait_for(round_id, "unmask", "summed", started, also=("done",))
            if final["state"] == "summed":
                # The cohort's sum waits for its period's release, which combines the period's cohorts.
                self.progress("summed")
                final = self._wait_for_release(round_id, started, final)
                if final is None:
                    outcome.state = "summed"  # its ledger row stays pending, settled from the outcome later
                    return outcome

            release = self.link.latest_release(newer_than=base.version)
            cohorts = release.metadata.get("round_ids") or [release.metadata.get("round_id")]
            if release.version != final["released_version"] or round_id not in cohorts:
                raise RoundAborted(f"the latest release ({release.version}) is not this round's "
                                   f"({final['released_version']})")
            self._store_release(release)
            outcome.state, outcome.release, outcome.released_version = "released", release, release.version
            self.progress("released")
        except RoundCancelled as error:
            outcome.state = "cancelled"
            if ledger_id is not None:
                raise RoundCancelled(f"{error} after its upload was entered in the ledger: it counts as spent until "
                                     "the coordinator's record settles it at the next contact") from None
            raise
        except RoundWithheld as error:
            outcome.state = "withheld"
            if error.summed:
                settled_as = ("withheld", str(error))
            raise
        except SyncError as error:
            # After the upload, only the coordinator's word that it never summed this input makes it unspent.
            unused = getattr(error, "unused", None)
            outcome.state = "aborted" if ledger_id is None or unused else "unknown"
            if unused:
                settled_as = (unused, f"never summed: {error}")
            raise
        finally:
            outcome.bytes_sent = self.link.bytes_sent
            if ledger_id is not None:
                changes: dict[str, Any] = {"bytes_sent": outcome.bytes_sent}
                if outcome.state == "released":
                    settled_as = ("released", f"summed into release {outcome.released_version}")
                if settled_as is not None:  # the coordinator's record, seen in the round; else it stays pending
                    changes |= {"state": settled_as[0], "outcome": settled_as[1], "settled_at": time.time(),
                                "release_version": outcome.released_version,
                                "epsilon_server": outcome.epsilon_server}
                self.store.update_upload(ledger_id, changes)
        return outcome

    def _record_upload(self, round_id: str, config: dict[str, Any], noise: DistributedNoise, own: DistributedNoise,
                       pre_clip_norm: float, outcome: RoundOutcome, epsilon_client: float,
                       counted: tuple[float | None, float | None]) -> int:
        """The ledger row: `noise` is the round's distributed noise (what the accounting counts), `own` what this
        device added (its share, or more under its privacy floor); `counted`: the coordinator's (epsilon, delta)
        for this device with this round (from its check-in; the round's largest if it gave none)."""
        epsilon, delta = counted if counted[0] is not None else (config["epsilon_after"], config["delta_after"])
        return self.store.record_upload({
            "at": time.time(), "coordinator_key": self.coordinator_key, "round_id": round_id, "state": "pending",
            "bytes_sent": outcome.bytes_sent, "parameters": int(config["parameters"]),
            "pre_clip_norm": pre_clip_norm, "clip_norm": noise.clip_norm, "noise_multiplier": noise.noise_multiplier,
            "noise_std": own.std_per_client, "cohort_size": int(config["cohort_size"]),
            "target_delta": float(config["target_delta"]), "epsilon_server": float(epsilon),
            "delta_server": float(delta), "epsilon_client": epsilon_client,
            "epsilon_round_honest": outcome.epsilon_round_honest, "epsilon_round_worst": outcome.epsilon_round_worst})

    def _log_sent(self, before: dict[str, list[int]]) -> None:
        """One event with every request this run sent, by kind: what `ownrec sync log` shows as sent."""
        sent = {kind: [tally[0] - before.get(kind, [0, 0])[0], tally[1] - before.get(kind, [0, 0])[1]]
                for kind, tally in self.link.sent_by_kind.items()}
        sent = {kind: tally for kind, tally in sent.items() if tally[0]}
        if not sent:
            return
        requests, size = sum(t[0] for t in sent.values()), sum(t[1] for t in sent.values())
        parts = [f"{SENT_WORDS.get(kind, kind)} ×{tally[0]}" for kind, tally in sent.items()]
        if self._token_sent:
            parts.append("the enrolment code, with the first check-in, to register this device's key")
        self.store.log_event(SENT_EVENT, {
            "coordinator_key": self.coordinator_key, "requests": requests, "bytes": size, "by_kind": sent,
            "enrolment_token_sent": self._token_sent,
            "message": f"sent {requests} request{'s' if requests != 1 else ''} ({size:,} bytes) to the coordinator: "
                       + "; ".join(parts)})

    def _store_release(self, release: Release) -> None:
        self.store.store_release(self.coordinator_key, release.version, release.raw)


def latest_verified_release(store: "Store", pin: CoordinatorPin,
                            on_refused: Callable[[int, str], None] | None = None) -> Release | None:
    """The newest stored release that still verifies against the pinned key (the global adapter to load).
    A row that does not verify is skipped (`on_refused(version, problem)` hears of it)."""
    for version, body in store.stored_releases(pin.signing_public_key.hex()):
        try:
            release = verify_release(body, pin.signing_public_key)
        except SyncError as error:
            if on_refused is not None:
                on_refused(version, str(error))
            continue  # a damaged row: fall back to the previous version
        if release.version != version:  # a valid body filed under another version: refuse it as well
            if on_refused is not None:
                on_refused(version, f"the stored row says version {version}, the signed body {release.version}")
            continue
        return release
    return None


def load_or_create_device_key(path: Path) -> Ed25519PrivateKey:
    """This device's Ed25519 key for signing requests (raw 32 bytes, mode 0600), created once."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(Ed25519PrivateKey.generate().private_bytes_raw())
    return Ed25519PrivateKey.from_private_bytes(path.read_bytes())


def run_round(store: "Store", pin: CoordinatorPin, data: LocalTrainingData, device_key: Path, *,
              policy: ClientPolicy | None = None, cancel: threading.Event | None = None,
              progress: Callable[[str], None] | None = None) -> RoundOutcome:
    """One round for the person whose ledger is `store` and whose ranker `data` describes, signed with the
    device key at `device_key` (made on the first round). Setting `cancel` stops the round at the next
    step (within POLL_SECONDS while waiting); the ledger records how far it got."""
    link = CoordinatorLink(pin, load_or_create_device_key(device_key))
    # The enrolment code `ownrec sync join --token` kept beside the device key: sent until the coordinator has
    # enrolled the key, then forgotten (it could enrol another device while its cap allows).
    token_file = Path(device_key).parent / ENROLMENT_FILE
    token = token_file.read_text(encoding="utf-8").strip() if token_file.exists() else None
    try:
        return RoundRunner(link, store, policy or ClientPolicy(), cancel, progress, enrolment_token=token or None,
                           on_enrolled=lambda: token_file.unlink(missing_ok=True)).run(data)
    finally:
        link.close()
