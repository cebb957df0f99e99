"""The person's consent to federated sync, the coordinator they pinned, and what the ledger shows them.

Where things live (one place each):
    consent      the store's `state` table: `sync_enabled` (true, false, or absent: never asked) and
                 `sync_ever_enabled` (set the first time it is turned on; the global adapter is loaded
                 from verified releases only after that). Every change is an event (`sync_consent`).
    coordinator  `sync/coordinator-pin.json` in the person's data folder (`Home.sync()`), copied by
                 `ownrec sync join PATH` from the pin file `ownrec coordinator serve` writes: URL,
                 release-signing key, TLS certificate.
    device key   `sync/device.key` beside it (created by the client on the first round).

Nothing here opens a connection: a round needs consent *and* a pin, and only the scheduler
(`agent.core.sync.scheduler`) starts one. Checking a pin file reads the certificate locally.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import asdict, dataclass
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
               "into its state directory, then run `ownrec sync join PATH`")


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


def join(home: "Home", path: Path) -> "CoordinatorPin":
    """Check the pin file at `path` and keep a copy in the data folder `home` (replacing any earlier pin).
    Consent is separate: joining alone sends nothing."""
    text, pin = read_pin(path)
    write_text_atomic(pin_path(home), text)
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

    @property
    def round(self) -> str:
        return self.round_id[:8]


def ledger(store: "Store", limit: int | None = 20) -> list[LedgerRow]:
    """The newest uploads first (all coordinators; each row names its key)."""
    return [LedgerRow(**row) for row in store.sync_ledger(limit)]


@dataclass(frozen=True)
class PrivacyTotal:
    """What taking part has cost, with one coordinator: epsilon over the rounds this device uploaded to
    that were released (computed here, with the exact Gaussian accountant of `accounting`), and the coordinator's own figure."""

    released_rounds: int
    uploads: int
    epsilon_client: float
    delta: float | None
    epsilon_server: float | None  # as the coordinator reported it with its newest release this device saw


def privacy_total(store: "Store", coordinator_key: str) -> PrivacyTotal:
    from agent.federation.accounting import privacy_spent

    rows = store.sync_ledger_for(coordinator_key)
    released = [row for row in rows if row["state"] == "released"]
    if not released:
        return PrivacyTotal(0, len(rows), 0.0, None, None)
    delta = float(released[-1]["target_delta"])
    spent = privacy_spent([float(row["noise_multiplier"]) for row in released], delta)
    return PrivacyTotal(len(released), len(rows), spent.epsilon, delta, released[-1]["epsilon_server"])


@dataclass(frozen=True)
class SyncStatus:
    enabled: bool
    asked: bool
    coordinator_url: str | None
    coordinator_host: str | None
    key_fingerprint: str | None
    pin_problem: str | None
    total: PrivacyTotal | None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total"] = None if self.total is None else asdict(self.total)
        return data


def status(store: "Store", home: "Home") -> SyncStatus:
    try:
        pin, problem = stored_pin(home), None
    except SyncSetupError as error:
        pin, problem = None, str(error)
    if pin is None:
        return SyncStatus(is_enabled(store), was_asked(store), None, None, None, problem, None)
    url = urlparse(pin.url)
    return SyncStatus(is_enabled(store), was_asked(store), pin.url, url.netloc, fingerprint(pin.signing_public_key),
                      None, privacy_total(store, pin.signing_public_key.hex()))


def ledger_as_json(rows: list[LedgerRow]) -> list[dict[str, Any]]:
    return [{**asdict(row), "round": row.round} for row in rows]

