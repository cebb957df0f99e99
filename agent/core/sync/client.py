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

Every upload is in the local ledger (`sync_ledger`, migrations m004 and m007): round, bytes sent, the
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
import ssl
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
from agent.core.ranker.model import Catalog
from agent.federation import protocol
from agent.federation.clipping import DistributedNoise
from agent.federation.errors import PolicyViolation, SyncError
from agent.federation.neighbourhood import NeighbourhoodPlan, ThreatModel, plan_neighbourhood
from agent.core.sync.parameters import GlobalTrainingSettings, train_global_delta
from agent.federation.quantize import QuantizationPlan
from agent.federation.stages import ClientRound
from agent.federation.signing import Release, public_bytes, sign_request, verify_release

if TYPE_CHECKING:
    from agent.core.store import Store

POLL_SECONDS = 4.0  # each long poll returns within this, so a cancellation takes effect within it
# httpx sends these by default; HTTP/1.1 keeps the connection alive without being asked, the coordinator
# compresses nothing and answers every client alike: ~100 bytes a request saved.
UNSENT_HEADERS = ("accept", "accept-encoding", "connection", "user-agent")


class CoordinatorRefused(SyncError):
    """The coordinator answered with an error status; `code` is its machine-readable reason, `retry_after`
    the seconds after which it asked to be asked again (None: it named no time)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"the coordinator refused ({status} {code}): {message}")
        self.status, self.code, self.reason, self.retry_after = status, code, message, retry_after


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


@dataclass(frozen=True)
class CoordinatorPin:
    """What the person pinned when joining: where the coordinator is, its TLS certificate (the only one
    trusted for this connection) and the Ed25519 key its releases must be signed with."""

    url: str
    signing_public_key: bytes
    tls_certificate: str

    @classmethod
    def from_json(cls, text: str) -> CoordinatorPin:
        data = json.loads(text)
        return cls(url=data["url"], signing_public_key=bytes.fromhex(data["signing_public_key"]),
                   tls_certificate=data["tls_certificate"])

    @classmethod
    def from_file(cls, path: Path) -> CoordinatorPin:
        return cls.from_json(Path(path).read_text())


@dataclass(frozen=True)
class ClientPolicy:
    min_noise_multiplier: float = 0.5
    min_cohort: int = 10
    max_clip_norm: float = 10.0
    max_dropout_fraction: float = 0.3   # must match the coordinator's: the client recomputes the plan
    max_corrupt_fraction: float = 0.05
    epsilon_budget: float | None = None  # refuse a round that would take this client's own epsilon above it
    round_timeout: float = 900.0
    training: GlobalTrainingSettings = field(default_factory=GlobalTrainingSettings)


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
    state: str                 # released | withheld | aborted | cancelled | unknown (see the module docstring)
    bytes_sent: int            # request bodies and headers this client sent in the round
    upload_bytes: int          # the four stage messages alone
    pre_clip_norm: float
    released_version: int | None = None
    epsilon_server: float | None = None
    epsilon_client: float | None = None
    refused_envelopes: list[int] = field(default_factory=list)
    release: Release | None = None


class CoordinatorLink:
    """HTTPS to one pinned coordinator, every request signed by the device key.

    `bytes_sent` counts what this client writes at the HTTP layer, exactly as HTTP/1.1 puts it on the
    connection (request line, headers, blank line, body; TLS records and handshakes come on top);
    `sent_by_kind` splits it by what the request is for (`request_kind`): [requests, bytes]."""

    def __init__(self, pin: CoordinatorPin, device_key: Ed25519PrivateKey, timeout: float = 60.0) -> None:
        context = ssl.create_default_context(cadata=pin.tls_certificate)  # trust this certificate and nothing else
        self.http = httpx.Client(base_url=pin.url, verify=context, timeout=httpx.Timeout(timeout, connect=10.0))
        for unneeded in UNSENT_HEADERS:  # httpx's defaults: the coordinator reads none of them
            self.http.headers.pop(unneeded, None)
        self.pin = pin
        self.device_key = device_key
        self.bytes_sent = 0
        self.sent_by_kind: dict[str, list[int]] = {}

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def request_kind(path: str) -> str:
        """checkin, release, info, or a round's endpoint (status, advertise-keys, envelopes, ...)."""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["v1", "rounds"]:
            return parts[3]
        return {"releases": "release"}.get(parts[1], parts[1]) if len(parts) > 1 else path

    @staticmethod
    def wire_size(request: httpx.Request) -> int:
        """The bytes HTTP/1.1 writes for `request`: "METHOD target HTTP/1.1\r\n", "name: value\r\n" per
        header, "\r\n", the body."""
        return (len(request.method) + len(request.url.raw_path) + len(b"  HTTP/1.1\r\n")
                + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2 + len(request.content))

    def build(self, method: str, path: str, body: bytes = b"", params: dict[str, Any] | None = None,
              signed: bool = True) -> httpx.Request:
        """A request ready to `send` (its `wire_size` is what sending it adds to `bytes_sent`)."""
        request = self.http.build_request(method, path, content=body or None, params=params)
        if signed:  # over the target exactly as sent: path and query
            request.headers.update(sign_request(self.device_key, method, request.url.raw_path.decode("ascii"), body))
        return request

    def request(self, method: str, path: str, body: bytes = b"", params: dict[str, Any] | None = None,
                signed: bool = True) -> httpx.Response:
        return self.send(self.build(method, path, body, params, signed))

    def send(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        size = self.wire_size(request)
        self.bytes_sent += size
        tally = self.sent_by_kind.setdefault(self.request_kind(path), [0, 0])
        tally[0] += 1
        tally[1] += size
        response = self.http.send(request)
        if response.status_code >= 400:
            try:
                data = response.json()
                retry = data.get("retry_after", response.headers.get("retry-after"))
                retry_after = None if retry is None else max(0.0, float(retry))
                raise CoordinatorRefused(response.status_code, data.get("error", "error"), data.get("message", ""),
                                         retry_after)
            except (ValueError, AttributeError, TypeError):
                raise CoordinatorRefused(response.status_code, "http_error", response.text[:200]) from None
        return response

    def latest_release(self, newer_than: int | None = None) -> Release:
        body = self.request("GET", "/v1/releases/latest", signed=False).content
        return verify_release(body, self.pin.signing_public_key, newer_than=newer_than)


def check_round_config(config: dict[str, Any], policy: ClientPolicy, release: Release) -> tuple[
        NeighbourhoodPlan, DistributedNoise, QuantizationPlan]:
    """The round's plan, noise and quantization, if they meet this client's policy; PolicyViolation if not."""
    n = int(config["cohort_size"])
    if config["layout_digest"] != release.layout.digest() or int(config["parameters"]) != release.layout.size:
        raise PolicyViolation("the round's shared layout is not the one in the signed release")
    if int(config["base_version"]) != release.version:
        raise PolicyViolation(f"the round starts from version {config['base_version']}, this client trained on "
                              f"{release.version}")
    if n < policy.min_cohort:
        raise PolicyViolation(f"a cohort of {n} is below this client's minimum of {policy.min_cohort}")
    if float(config["noise_multiplier"]) < policy.min_noise_multiplier:
        raise PolicyViolation(f"noise multiplier {config['noise_multiplier']} is below this client's minimum "
                              f"{policy.min_noise_multiplier}")
    if not 0 < float(config["clip_norm"]) <= policy.max_clip_norm:
        raise PolicyViolation(f"clip norm {config['clip_norm']} is outside (0, {policy.max_clip_norm}]")
    plan = plan_neighbourhood(n, max_dropout_fraction=policy.max_dropout_fraction,
                              max_corrupt_fraction=policy.max_corrupt_fraction)
    offered = NeighbourhoodPlan(cohort_size=n, degree=int(config["degree"]), threshold=int(config["threshold"]),
                                max_dropouts=int(config["max_dropouts"]), max_corrupt=int(config["max_corrupt"]),
                                threat_model=ThreatModel.CURIOUS_SERVER)
    if offered != plan:
        raise PolicyViolation(f"the round's neighbourhood (degree {offered.degree}, threshold {offered.threshold}) "
                              f"is not the one this client computes (degree {plan.degree}, threshold {plan.threshold})")
    if int(config["min_contributors"]) != plan.min_survivors:
        raise PolicyViolation("the noise must be split over exactly the minimum number of survivors")
    noise = DistributedNoise(float(config["clip_norm"]), float(config["noise_multiplier"]), plan.min_survivors)
    quantization = QuantizationPlan.for_cohort(noise, n)
    if (quantization.clamp_bound, quantization.scale, quantization.max_summands) != (
            float(config["clamp_bound"]), float(config["scale"]), int(config["max_summands"])):
        raise PolicyViolation("the round's quantization plan is not the no-wrap plan for its cohort")
    return plan, noise, quantization


class RoundRunner:
    """One client's side of one round (the steps in the module docstring)."""

    def __init__(self, link: CoordinatorLink, store: "Store", policy: ClientPolicy,
                 cancel: threading.Event | None = None, progress: Callable[[str], None] | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.link = link
        self.store = store  # the ledger of uploads and the releases kept (migration m004)
        self.policy = policy
        self.cancel = cancel or threading.Event()
        self.progress = progress or (lambda stage: None)
        self.rng = rng  # None: noise and rounding from the OS CSPRNG (tests pass a seeded generator)
        self.coordinator_key = link.pin.signing_public_key.hex()

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

    def _wait_for(self, round_id: str, since: str, wanted: str, started: float) -> dict[str, Any]:
        while True:
            self._check_cancel()
            if time.monotonic() - started > self.policy.round_timeout:
                raise RoundAborted(f"round {round_id} took longer than {self.policy.round_timeout:.0f} s")
            status = self.link.request("GET", f"/v1/rounds/{round_id}/status",
                                       params={"since": since, "wait": POLL_SECONDS}).json()
            if status["state"] == since:
                continue
            if status["state"] == "aborted":
                raise RoundAborted(f"round {round_id} was aborted: {status['reason']}", unused="aborted")
            if status["state"] == "withheld":
                raise RoundWithheld(round_id, status["reason"], summed=status.get("summands") is not None)
            if status["state"] != wanted:
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
        started = time.monotonic()
        self._check_cancel()
        base = self.link.latest_release()
        known = self.last_release_version()
        if known is not None and base.version < known:
            raise PolicyViolation(f"the coordinator offers version {base.version}, older than the {known} already "
                                  f"loaded: refusing a rollback")
        self._store_release(base)
        self.settle_pending()  # the next contact after a round whose end this device did not see
        delta = train_global_delta(base.layout, base.vector, data.personal, data.catalog, data.labels,
                                   self.policy.training)
        self._check_cancel()
        checkin = json.dumps({"device_public": public_bytes(self.link.device_key).hex(),
                              "base_version": base.version}).encode()
        joined = self.link.request("POST", "/v1/checkin", checkin).json()
        round_id, index = joined["round_id"], int(joined["index"])
        self.progress("checked-in")
        outcome = RoundOutcome(round_id=round_id, index=index, state="running", bytes_sent=0, upload_bytes=0,
                               pre_clip_norm=float("nan"))
        ledger_id = None
        settled_as: tuple[str, str] | None = None  # (ledger state, in words) once the coordinator said
        try:
            status = self._wait_for(round_id, "forming", "advertise", started)
            config = status["config"]
            plan, noise, quantization = check_round_config(config, self.policy, base)
            epsilon_client = self.client_epsilon(noise.noise_multiplier, float(config["target_delta"]))
            if self.policy.epsilon_budget is not None and epsilon_client > self.policy.epsilon_budget:
                raise PolicyViolation(f"this round would take this client's epsilon to {epsilon_client:.2f}, above "
                                      f"its budget of {self.policy.epsilon_budget}")
            stages = ClientRound(round_id, index, bytes.fromhex(config["graph_seed"]), plan, noise, quantization,
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
                ledger_id = self._record_upload(round_id, config, noise, stages.pre_clip_norm, outcome,
                                                epsilon_client)

            outcome.upload_bytes += self._upload(round_id, "masked-input", masked, before_sending=record)
            outcome.epsilon_server, outcome.epsilon_client = float(config["epsilon_after"]), epsilon_client
            self._wait_for(round_id, "masked", "unmask", started)

            # Stage 4: reveal one share per neighbour: the seed of a survivor, the key of a dropout.
            listed = self._get(round_id, "survivors")
            if index not in set(listed["survivors"]):
                raise RoundAborted("the coordinator does not list this client as a survivor", unused="dropped")
            outcome.upload_bytes += self._upload(round_id, "unmasking", stages.unmasking(listed))
            final = self._wait_for(round_id, "unmask", "done", started)

            release = self.link.latest_release(newer_than=base.version)
            if release.version != final["released_version"] or release.metadata.get("round_id") != round_id:
                raise RoundAborted(f"the latest release ({release.version}) is not this round's "
                                   f"({final['released_version']})")
            self._store_release(release)
            outcome.state, outcome.release, outcome.released_version = "released", release, release.version
            outcome.epsilon_server = float(release.metadata["epsilon"])
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

    def _record_upload(self, round_id: str, config: dict[str, Any], noise: DistributedNoise, pre_clip_norm: float,
                       outcome: RoundOutcome, epsilon_client: float) -> int:
        return self.store.record_upload({
            "at": time.time(), "coordinator_key": self.coordinator_key, "round_id": round_id, "state": "pending",
            "bytes_sent": outcome.bytes_sent, "parameters": int(config["parameters"]),
            "pre_clip_norm": pre_clip_norm, "clip_norm": noise.clip_norm, "noise_multiplier": noise.noise_multiplier,
            "noise_std": noise.std_per_client, "cohort_size": int(config["cohort_size"]),
            "target_delta": float(config["target_delta"]), "epsilon_server": float(config["epsilon_after"]),
            "delta_server": float(config["delta_after"]), "epsilon_client": epsilon_client})

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
    try:
        return RoundRunner(link, store, policy or ClientPolicy(), cancel, progress).run(data)
    finally:
        link.close()
