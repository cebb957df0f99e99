"""The person's consent to federated sync, the coordinator they pinned, and what the ledger shows them.

Where things live (one place each):
    consent      the store's `state` table: `sync_enabled` (true, false, or absent: never asked) and
                 `sync_ever_enabled` (set the first time it is turned on; the global adapter is loaded
                 from verified releases only after that). Every change is an event (`sync_consent`).
    coordinator  `sync/coordinator-pin.json` in the person's data folder (`Home.sync()`), copied by
                 `ownrec sync join PATH` from the pin file `ownrec coordinator serve` writes: URL,
                 release-signing key, TLS certificate.
    device key   `sync/device.key` beside it (created by the client on the first round).
    enrolment    `sync/enrolment-token` beside it: the code from the federation's operator (`ownrec sync
                 join PATH --token CODE`), sent with the first check-in and deleted once the key is enrolled.

Nothing here opens a connection: a round needs consent *and* a pin, and only the scheduler
(`agent.core.sync.scheduler`) starts one. Checking a pin file reads the certificate locally.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from agent.core.atomic import write_text_atomic
from agent.federation.errors import SyncError

if TYPE_CHECKING:  # the client (httpx) and the accountant (dp-accounting, ~1.5 s) load only when used
    from agent.core.paths import Home
    from agent.core.store import Store
    from agent.core.sync.client import CoordinatorPin

WHAT_LEAVES = ("With sync on, only clipped, noised and masked changes to the shared adapter leave this device, "
               "encrypted, to the coordinator you pinned; never your ratings, items, traits or personal adapter.")
THREAT_MODEL = "docs/threat-model.md"
HOW_TO_JOIN = ("ask the federation's host for the coordinator-pin.json that `ownrec coordinator serve` writes "
               "into its state directory and an enrolment code, then run `ownrec sync join PATH --token CODE`")


class SyncSetupError(SyncError):
    """A pin file that cannot be used, or a sync setting that cannot be changed; the message says why."""


def pin_path(home: "Home") -> Path:
    return home.sync() / "coordinator-pin.json"


def device_key_path(home: "Home") -> Path:
    return home.sync() / "device.key"


def check_pin_text(text: str, source: str) -> "CoordinatorPin":
    """The pin in `text`, checked without any connection: JSON with an https URL, a 32-byte Ed25519 key
    and a PEM certificate that loads."""
    from agent.core.sync.client import CoordinatorPin

    def refuse(problem: str) -> SyncSetupError:
        return SyncSetupError(f"{source} is not a usable coordinator pin ({problem}); {HOW_TO_JOIN}")

    try:
        pin = CoordinatorPin.from_json(text)
    except (ValueError, KeyError, TypeError) as error:
        raise refuse(f"expected JSON with url, signing_public_key and tls_certificate: {error}") from None
    url = urlparse(pin.url)
    if url.scheme != "https" or not url.hostname:
        raise refuse(f"the url must be https://host:port, not {pin.url!r}")
    if len(pin.signing_public_key) != 32:
        raise refuse(f"the signing key must be 32 bytes, not {len(pin.signing_public_key)}")
    try:
        ssl.create_default_context(cadata=pin.tls_certificate)
    except (ssl.SSLError, ValueError, TypeError) as error:
        raise refuse(f"the TLS certificate does not load: {error}") from None
    return pin


def read_pin(path: Path) -> tuple[str, "CoordinatorPin"]:
    """The pin file at `path`, checked: its text and the coordinator it pins (SyncSetupError)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SyncSetupError(f"cannot read the pin file {path}: {error}") from None
    return text, check_pin_text(text, str(path))


def enrolment_path(home: "Home") -> Path:
    from agent.core.sync.client import ENROLMENT_FILE

    return home.sync() / ENROLMENT_FILE


def check_enrolment_code(code: str) -> str:
    """The code as the operator issued it (`ownrec coordinator enrol`), checked for its shape only."""
    cleaned = code.strip()
    if not cleaned or len(cleaned) > 64 or not all(c.isalnum() or c == "-" for c in cleaned):
        raise SyncSetupError(f"{code!r} is not an enrolment code: it looks like XXXX-XXXX-XXXX-XXXX-XXXX, from "
                             "the federation's operator (`ownrec coordinator enrol`)")
    return cleaned


def join(home: "Home", path: Path, token: str | None = None) -> "CoordinatorPin":
    """Check the pin file at `path` and keep a copy in the data folder `home` (replacing any earlier pin), with
    the enrolment code `token` the coordinator admits this device with (replacing any earlier one; without
    one, an earlier one is dropped: it belonged to the earlier pin). Consent is separate: joining alone sends
    nothing."""
    text, pin = read_pin(path)
    code = None if token is None else check_enrolment_code(token)
    write_text_atomic(pin_path(home), text)
    if code is None:
        enrolment_path(home).unlink(missing_ok=True)
    else:
        write_text_atomic(enrolment_path(home), code + "\n")
        enrolment_path(home).chmod(0o600)
    return pin


def stored_pin(home: "Home") -> "CoordinatorPin | None":
    """The coordinator pinned in the data folder `home`, or None when none was pinned. A damaged pin file
    raises SyncSetupError."""
    path = pin_path(home)
    if not path.exists():
        return None
    return check_pin_text(path.read_text(encoding="utf-8"), str(path))


def fingerprint(public_key: bytes) -> str:
    """A short, readable fingerprint of a key: the first 16 bytes of its SHA-256, in groups of four."""
    digest = hashlib.sha256(public_key).hexdigest()[:32]
    return " ".join(digest[i:i + 4] for i in range(0, 32, 4))


def is_enabled(store: "Store") -> bool:
    return store.get_state("sync_enabled", False) is True


def was_ever_enabled(store: "Store") -> bool:
    return store.get_state("sync_ever_enabled", False) is True


def was_asked(store: "Store") -> bool:
    return store.get_state("sync_enabled") is not None


def set_enabled(store: "Store", on: bool, origin: str) -> bool:
    """Record the person's answer (`origin`: onboarding, tui, cli). Returns whether it changed. A running
    scheduler sees the change at its next tick and, when it is off, cancels a round in flight."""
    with store.lock:  # the answer it replaces and the new one, as of one moment
        before = is_enabled(store)
        with store.transaction():
            store.set_state("sync_enabled", bool(on))
            if on:
                store.set_state("sync_ever_enabled", True)
            store.log_event("sync_consent", {"on": bool(on), "origin": origin})
        return before != bool(on)


@dataclass(frozen=True)
class LedgerRow:
    """One upload as the person is shown it."""

    at: float
    round_id: str
    state: str
    bytes_sent: int
    parameters: int
    pre_clip_norm: float
    clip_norm: float
    noise_multiplier: float
    noise_std: float
    cohort_size: int
    epsilon_server: float | None
    epsilon_client: float | None
    release_version: int | None
    coordinator_key: str
    epsilon_round_honest: float | None = None  # this round alone, every other member honest
    epsilon_round_worst: float | None = None   # this round alone, every other member fake (this device's floor)
    settled_at: float | None = None  # when the coordinator's record settled it; None while pending
    outcome: str | None = None  # the coordinator's word on the round, in words

    @property
    def round(self) -> str:
        return self.round_id[:8]


def ledger(store: "Store", limit: int | None = 20) -> list[LedgerRow]:
    """The newest uploads first (all coordinators; each row names its key)."""
    return [LedgerRow(**row) for row in store.sync_ledger(limit)]


@dataclass(frozen=True)
class PrivacyTotal:
    """What taking part has cost, with one coordinator: epsilon over the uploads that count as spent
    (computed here, with the exact Gaussian accountant of `accounting`), and the coordinator's own figure.
    An upload counts unless the coordinator's record shows it never summed it (agent.core.sync.client says
    why); one still pending counts."""

    released_rounds: int
    uploads: int
    epsilon_client: float
    delta: float | None
    epsilon_server: float | None  # as the coordinator reported it for the newest upload that counts
    counted_rounds: int = 0  # the uploads epsilon is over: released, withheld after summing, or pending
    counted_by_state: dict[str, int] = field(default_factory=dict)

    def rounds_phrase(self) -> str:
        """The rounds epsilon is over, in words: "2 released rounds", or "3 rounds (2 released, 1 withheld)"."""
        plural = "s" if self.counted_rounds != 1 else ""
        if self.counted_rounds == self.released_rounds:
            return f"{self.released_rounds} released round{plural}"
        parts = ", ".join(f"{count} {COUNTED_STATES.get(state, state)}"
                          for state, count in self.counted_by_state.items())
        return f"{self.counted_rounds} round{plural} that may have used your updates ({parts})"


# How each counted ledger state is named in `rounds_phrase`.
COUNTED_STATES = {"released": "released", "withheld": "withheld after summing",
                  "pending": "awaiting the coordinator's record, counted as spent"}


def privacy_total(store: "Store", coordinator_key: str) -> PrivacyTotal:
    from agent.core.store import UNSPENT_LEDGER_STATES
    from agent.federation.accounting import privacy_spent

    rows = store.sync_ledger_for(coordinator_key)
    counted = [row for row in rows if row["state"] not in UNSPENT_LEDGER_STATES]
    if not counted:
        return PrivacyTotal(0, len(rows), 0.0, None, None)
    delta = float(counted[-1]["target_delta"])
    spent = privacy_spent([float(row["noise_multiplier"]) for row in counted], delta)
    by_state: dict[str, int] = {}
    for row in counted:
        by_state[row["state"]] = by_state.get(row["state"], 0) + 1
    return PrivacyTotal(by_state.get("released", 0), len(rows), spent.epsilon, delta, counted[-1]["epsilon_server"],
                        len(counted), by_state)


@dataclass(frozen=True)
class SyncStatus:
    enabled: bool
    asked: bool
    coordinator_url: str | None
    coordinator_host: str | None
    key_fingerprint: str | None
    pin_problem: str | None
    total: PrivacyTotal | None
    in_use: str | None = None  # the global adapter the feed uses, in words (agent.core.sync.adoption)
    in_use_steps: tuple[tuple[int, float], ...] = ()
    blocked: str | None = None  # why rounds with this coordinator cannot form, as the last attempt found
    blocked_for_good: bool = False  # ...and asking again cannot help: no rounds are started until `sync join`
    enrolment_pending: bool = False  # an enrolment code waits to be sent with the first check-in

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total"] = None if self.total is None else asdict(self.total)
        return data


def status(store: "Store", home: "Home", without: str = "the identity") -> SyncStatus:
    """`without` names what the feed uses with no release in use (release 0, or the identity)."""
    try:
        pin, problem = stored_pin(home), None
    except SyncSetupError as error:
        pin, problem = None, str(error)
    if pin is None:
        return SyncStatus(is_enabled(store), was_asked(store), None, None, None, problem, None)
    from agent.core.sync.adoption import in_use

    url = urlparse(pin.url)
    key = pin.signing_public_key.hex()
    adopted = in_use(store, key) if was_ever_enabled(store) else None
    found = blocked(store, key)
    return SyncStatus(is_enabled(store), was_asked(store), pin.url, url.netloc, fingerprint(pin.signing_public_key),
                      None, privacy_total(store, key), None if adopted is None else adopted.describe(without),
                      () if adopted is None else adopted.steps, None if found is None else found["message"],
                      found is not None and not found.get("retry", True), enrolment_path(home).exists())


def blocked(store: "Store", coordinator_key: str) -> dict[str, Any] | None:
    """Why rounds with this coordinator cannot form, as the client last found (code, message, retry), or None."""
    from agent.core.sync.client import BLOCKED_STATE

    found = store.get_state(BLOCKED_STATE)
    return found if found and found.get("coordinator_key") == coordinator_key else None


def clear_blocked(store: "Store") -> None:
    from agent.core.sync.client import BLOCKED_STATE

    store.set_state(BLOCKED_STATE, None)


def ledger_as_json(rows: list[LedgerRow]) -> list[dict[str, Any]]:
    return [{**asdict(row), "round": row.round} for row in rows]



@dataclass(frozen=True)
class SyncEvent:
    """Something that happened to a round or a release, as the person is shown it: a round that ended
    without a release (`kind` "round"), an adoption decision ("adoption", with its figures), or what one
    contact with the coordinator sent ("sent": requests by kind, bytes)."""

    at: float
    kind: str
    state: str  # a round's end (withheld, aborted, ...) or a decision (adopted, blended, kept)
    message: str
    figures: dict[str, Any]


def events(store: "Store", limit: int | None = 20) -> list[SyncEvent]:
    """Rounds that ended without a release, adoption decisions and everything each contact sent, newest first."""
    from agent.core.sync.adoption import EVENT
    from agent.core.sync.client import SENT_EVENT

    shown = []
    for row in store.events_of(["sync_round", EVENT, SENT_EVENT], None):
        payload = json.loads(row["payload"])
        if row["kind"] == EVENT:
            shown.append(SyncEvent(row["at"], "adoption", payload["action"], payload["message"], payload))
        elif row["kind"] == SENT_EVENT:
            shown.append(SyncEvent(row["at"], "sent", "sent", payload["message"], payload))
        elif payload.get("state") not in ("released", None):
            shown.append(SyncEvent(row["at"], "round", payload["state"], payload["message"], payload))
        if limit and len(shown) >= limit:
            break
    return shown
