"""Who may take part: operator-issued enrolment tokens, and rate limits on registration and check-in.

A device key is registered (and can ever check in) only with a valid enrolment token, issued by the operator
(`ownrec coordinator enrol`). A token admits up to `max_devices` distinct device keys (1 by default: single use),
because one person or one lab may have several devices to enrol with one code, while a cap still bounds what a
leaked code can admit. Each token has an expiry (for registering; devices it enrolled stay enrolled) and can be
revoked, which also stops the devices it enrolled from checking in again.

Only a hash of each code is stored (SHA-256 under a domain tag). The codes carry 100 random bits, so a slow
password hash would add nothing: nobody can search 2^100 codes, and a breach of the database yields no code
that registers a device. A code is shown once, when it is issued.

Rate limits are token buckets kept in the coordinator's database, inside the same transaction as the request
they limit, so several workers sharing one PostgreSQL database share one limit (a limit per worker process
would multiply by the number of workers, and a client could pick the worker by reconnecting). A refused
attempt still uses up its share: the bucket is written even when the request is refused.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from agent.server.settings import CoordinatorSettings
from agent.server.state import Storage, Transaction

log = logging.getLogger("ownrec.coordinator")
# Crockford's base32 without I, L, O, U: nothing to misread when a code is typed from a screen.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_GROUPS, GROUP_LENGTH = 5, 4  # 20 characters: 100 random bits
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


class AdmissionError(ValueError):
    """An operator's command that cannot be carried out (an unknown token, a bad duration); says why."""


def parse_duration(text: str) -> float:
    """Seconds in "90s", "30m", "12h", "7d" or "2w"; AdmissionError otherwise."""
    match = _DURATION.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise AdmissionError(f"a duration is a positive number with a unit s, m, h, d or w (e.g. 7d), not {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def normalise_code(code: str) -> str:
    """The code as issued, from what a person typed: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]", "", code).upper()


def hash_code(code: str) -> str:
    return hashlib.sha256(b"ownrec-enrolment-token\x00" + normalise_code(code).encode()).hexdigest()


def new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_GROUPS * GROUP_LENGTH))
    return "-".join(raw[i:i + GROUP_LENGTH] for i in range(0, len(raw), GROUP_LENGTH))


@dataclass(frozen=True)
class EnrolmentToken:
    """A token as the operator sees it (never its code)."""

    token_id: str
    created_at: float
    expires_at: float
    max_devices: int
    devices: int
    revoked_at: float | None
    note: str

    def state(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return "revoked"
        if self.devices >= self.max_devices:
            return "used"
        return "expired" if now >= self.expires_at else "valid"


_TOKEN_COLUMNS = "token_id, created_at, expires_at, max_devices, devices, revoked_at, note"


def issue_token(storage: Storage, max_devices: int, lifetime_seconds: float, note: str = "") -> tuple[str, EnrolmentToken]:
    """A new code and its token record; only the code's hash is stored."""
    if max_devices < 1:
        raise AdmissionError(f"a token admits at least one device, not {max_devices}")
    code, token_id, now = new_code(), secrets.token_hex(4), time.time()
    with storage.write() as tx:
        tx.execute("insert into enrolment_tokens (token_id, token_hash, created_at, expires_at, max_devices, devices, "
                   "revoked_at, note) values (?, ?, ?, ?, ?, 0, null, ?)",
                   [token_id, hash_code(code), now, now + lifetime_seconds, max_devices, note])
    return code, EnrolmentToken(token_id, now, now + lifetime_seconds, max_devices, 0, None, note)


def list_tokens(storage: Storage) -> list[EnrolmentToken]:
    with storage.read() as tx:
        rows = tx.all(f"select {_TOKEN_COLUMNS} from enrolment_tokens order by created_at")
    return [_token(row) for row in rows]


def _token(row: tuple[Any, ...]) -> EnrolmentToken:
    return EnrolmentToken(row[0], float(row[1]), float(row[2]), int(row[3]), int(row[4]),
                          None if row[5] is None else float(row[5]), row[6] or "")


def revoke_token(storage: Storage, token: str) -> EnrolmentToken:
    """Revoke by the id `tokens` lists or by the code itself; AdmissionError if there is no such token."""
    with storage.write() as tx:
        row = tx.one(f"select {_TOKEN_COLUMNS} from enrolment_tokens where token_id = ? or token_hash = ?",
                     [token.strip().lower(), hash_code(token)])
        if row is None:
            raise AdmissionError(f"no enrolment token {token!r}: `ownrec coordinator tokens` lists them by id")
        if row[5] is None:
            tx.execute("update enrolment_tokens set revoked_at = ? where token_id = ?", [time.time(), row[0]])
    return next(t for t in list_tokens(storage) if t.token_id == row[0])


def take(tx: Transaction, bucket: str, per_hour: float, now: float) -> float | None:
    """Take one request from the token bucket `bucket` (capacity `per_hour`, refilled at per_hour / 3600 a
    second). None if allowed; otherwise the seconds until one is."""
    rate = per_hour / 3600.0
    # A full bucket if there is none; then the row locked (PostgreSQL), so two workers never both spend the
    # same request.
    tx.execute("insert into rate_limits (bucket, level, updated_at) values (?, ?, ?) on conflict do nothing",
               [bucket, per_hour, now])
    row = tx.one(f"select level, updated_at from rate_limits where bucket = ?{tx.for_update}", [bucket])
    level = min(per_hour, float(row[0]) + max(0.0, now - float(row[1])) * rate)
    allowed = level >= 1.0
    level = level - 1.0 if allowed else level
    tx.execute("update rate_limits set level = ?, updated_at = ? where bucket = ?", [level, now, bucket])
    return None if allowed else math.ceil((1.0 - level) / rate)


def find_token(tx: Transaction, code: str, lock: bool = False) -> tuple[Any, ...] | None:
    """The token's row; `lock`: locked until the transaction ends (its device count is about to change)."""
    return tx.one(f"select {_TOKEN_COLUMNS} from enrolment_tokens where token_hash = ?{tx.for_update if lock else ''}",
                  [hash_code(code)])


def token_of_device(tx: Transaction, device: str) -> tuple[Any, ...] | None:
    """The token that enrolled `device` (its row), or None for a device never enrolled."""
    return tx.one(f"select {', '.join('t.' + c.strip() for c in _TOKEN_COLUMNS.split(','))} from device_enrolments e "
                  "join enrolment_tokens t on t.token_id = e.token_id where e.device_id = ?", [device])


class Refusal(NamedTuple):
    """A refused check-in, as the coordinator answers it: HTTP status, error code, message, and the seconds
    after which asking again can succeed (None: not by waiting)."""

    status: int
    code: str
    message: str
    retry_after: float | None = None


def admit(tx: Transaction, limits: CoordinatorSettings, device: str, public: bytes, new_key: bool, code: str | None, address: str,
          now: float) -> Refusal | None:
    """At a check-in: the rate limits (`limits`: the coordinator's settings), then enrolment (registering the
    key with a valid code); the refusal, if any, or None with the device admitted."""
    tx.execute("delete from rate_limits where updated_at < ?", [now - 3600.0])  # refilled: same as absent

    def limited(bucket: str, per_hour: float, what: str) -> Refusal | None:
        wait = take(tx, bucket, per_hour, now)
        if wait is None:
            return None
        return Refusal(429, "rate_limited", f"too many {what}: try again in {wait:.0f} s", retry_after=wait)

    refusal = limited(f"checkin:address:{address}", limits.checkins_per_hour, "check-ins from this address")
    if refusal:
        return refusal
    enrolled = token_of_device(tx, device)
    if enrolled is None:
        refusal = limited(f"register:address:{address}", limits.registrations_per_hour,
                          "device registrations from this address")
        if refusal:
            return refusal
        if not code:
            return Refusal(403, "not_enrolled", "this device is not enrolled: this coordinator admits only devices "
                           "enrolled with a code from its operator (`ownrec sync join PIN_FILE --token CODE`)")
        token = find_token(tx, code, lock=True)
        if token is None:
            return Refusal(403, "bad_enrolment_token", "the enrolment code is not one this coordinator issued "
                           "(or was mistyped)")
        record = _token(token)
        state = record.state(now)
        if state != "valid":
            why = {"revoked": "was revoked by the operator", "expired": "has expired",
                   "used": f"has already enrolled its {record.max_devices} device(s)"}[state]
            return Refusal(403, "bad_enrolment_token", f"the enrolment code {why}: ask the operator for a new one")
        refusal = limited(f"register:token:{record.token_id}", limits.registrations_per_hour,
                          "device registrations with this enrolment code")
        if refusal:
            return refusal
        if new_key:
            tx.execute("insert into devices (device_id, public_key, registered_at) values (?, ?, ?)",
                       [device, public, now])
        tx.execute("insert into device_enrolments (device_id, token_id, enrolled_at) values (?, ?, ?)",
                   [device, record.token_id, now])
        tx.execute("update enrolment_tokens set devices = devices + 1 where token_id = ?", [record.token_id])
        log.info("device %s enrolled with token %s", device[:12], record.token_id)
        return None
    token_id, revoked_at, max_devices = enrolled[0], enrolled[5], int(enrolled[3])
    if revoked_at is not None:
        return Refusal(403, "enrolment_revoked", "the operator revoked the enrolment code this device joined "
                       "with: ask the operator for a new one")
    return limited(f"checkin:token:{token_id}", limits.checkins_per_hour * max_devices,
                   "check-ins from devices enrolled with this code")
