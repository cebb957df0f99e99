"""Ed25519 signatures on the two things that must be authentic: a client's requests, and a release.

Requests. Each device holds an Ed25519 key registered at its first check-in (device id = the first 16
bytes of sha256(public key)). Every request carries one header,
    x-ownrec-auth: <device id>.<timestamp>.<nonce>.<signature>
with the device id (16 bytes), a fresh 16-byte random nonce and the 64-byte signature in unpadded
base64url (canonical: a value that does not re-encode to itself is refused) and the timestamp in
milliseconds since the epoch; the signature covers
    REQUEST_LABEL | method | target | timestamp | nonce | sha256(body)
where the target is the path and query exactly as sent. The path names the round and the stage
(/v1/rounds/<round id>/<stage>), so a signature made for one round, stage, query or body is valid for
no other; the coordinator keeps every nonce it has accepted within the timestamp window and refuses a
second use (a replay), and refuses timestamps outside the window. (v1 sent the same fields in four
hex headers and did not sign the query: 290 bytes a request instead of 160.)

Releases. The coordinator signs each new global adapter with its Ed25519 key:
    payload  = RELEASE_MAGIC | u32 len | metadata JSON | u32 len | layout | shared vector (float64 LE)
    release  = payload | signature(RELEASE_LABEL | payload)   (64 bytes)
A client verifies against the coordinator public key it pinned when it joined, checks that the version
increases, and only then loads it: neither the network nor a stranger with the coordinator's address
can make it load an adapter the coordinator did not sign, or roll it back to an older one.

Round outcomes. What the coordinator's record says of one device in one round (was its masked input
summed?), signed with the same key over OUTCOME_LABEL | canonical JSON, and naming the round and the
device: the device settles its ledger from it, and keeps a record it can show to anyone who trusts the
coordinator's key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.federation.errors import SyncError
from agent.federation.layout import SharedLayout

REQUEST_LABEL = b"ownrec/sync/v2/request"
RELEASE_LABEL = b"ownrec/sync/v1/release"
OUTCOME_LABEL = b"ownrec/sync/v1/round-outcome"
RELEASE_MAGIC = b"ORRL\x01"
SIGNATURE_BYTES = 64
NONCE_BYTES = 16
DEVICE_ID_BYTES = 16
AUTH_HEADER = "x-ownrec-auth"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")
MAX_RELEASE_BYTES = 256 << 20


class SignatureError(SyncError, ValueError):
    """A request or release whose signature does not verify, or that is malformed."""


class StaleRelease(SignatureError):
    """A correctly signed release that is not newer than the one already loaded (a rollback)."""


def device_id_of(public_key: bytes) -> str:
    return hashlib.sha256(public_key).digest()[:DEVICE_ID_BYTES].hex()


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def encode_base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_base64url(text: str, size: int) -> bytes:
    """The `size` bytes `text` encodes in canonical unpadded base64url; ValueError otherwise (so no two
    strings name the same nonce or device)."""
    if len(text) != (4 * size + 2) // 3 or not _BASE64URL.match(text):
        raise ValueError(f"not {size} bytes in unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"not {size} bytes in unpadded base64url") from None
    if len(data) != size or encode_base64url(data) != text:
        raise ValueError(f"not {size} bytes in canonical unpadded base64url")
    return data


def request_payload(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return b"\n".join([REQUEST_LABEL, method.upper().encode(), target.encode(), timestamp.encode(), nonce.encode(),
                       hashlib.sha256(body).hexdigest().encode()])


def sign_request(key: Ed25519PrivateKey, method: str, target: str, body: bytes) -> dict[str, str]:
    """The authentication header for one request to `target` (path and query as sent; a fresh nonce each time)."""
    timestamp, nonce = str(time.time_ns() // 1_000_000), encode_base64url(secrets.token_bytes(NONCE_BYTES))
    signature = key.sign(request_payload(method, target, timestamp, nonce, body))
    device = hashlib.sha256(public_bytes(key)).digest()[:DEVICE_ID_BYTES]
    return {AUTH_HEADER: f"{encode_base64url(device)}.{timestamp}.{nonce}.{encode_base64url(signature)}"}


class MalformedAuth(SignatureError):
    """An x-ownrec-auth header that does not parse; `field` names the part at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class RequestAuth:
    """The parsed authentication header: the device id (hex, as stored), the timestamp and nonce as signed."""

    device_id: str
    timestamp: str
    nonce: str
    signature: bytes

    @property
    def seconds(self) -> float:
        return int(self.timestamp) / 1000


def parse_request_auth(value: str) -> RequestAuth:
    """The fields of an x-ownrec-auth header; MalformedAuth naming the malformed field otherwise."""
    fields = value.split(".")
    if len(fields) != 4:
        raise MalformedAuth("header", "it is <device>.<timestamp>.<nonce>.<signature>")
    device, timestamp, nonce, signature = fields
    if not (timestamp.isascii() and timestamp.isdigit() and 0 < len(timestamp) <= 15):
        raise MalformedAuth("timestamp", "milliseconds since the epoch, in decimal digits")
    decoded = {}
    for field, text, size in (("device", device, DEVICE_ID_BYTES), ("nonce", nonce, NONCE_BYTES),
                              ("signature", signature, SIGNATURE_BYTES)):
        try:
            decoded[field] = decode_base64url(text, size)
        except ValueError as error:
            raise MalformedAuth(field, str(error)) from None
    return RequestAuth(decoded["device"].hex(), timestamp, nonce, decoded["signature"])


def verify_request(public_key: bytes, method: str, target: str, body: bytes, auth: RequestAuth) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            auth.signature, request_payload(method, target, auth.timestamp, auth.nonce, body))
    except (ValueError, InvalidSignature):
        raise SignatureError("the request signature does not verify for this device, path, query and body") from None


@dataclass(frozen=True, eq=False)
class Release:
    """A verified global adapter release."""

    version: int
    metadata: dict[str, Any]
    layout: SharedLayout
    vector: np.ndarray  # float64, layout.size values
    raw: bytes  # the signed bytes as received, kept so the release can be re-verified later


def sign_release(key: Ed25519PrivateKey, version: int, metadata: dict[str, Any], layout: SharedLayout,
                 vector: np.ndarray) -> bytes:
    values = np.asarray(vector, dtype=np.float64).reshape(-1)
    if values.size != layout.size:
        raise SignatureError(f"a release of this layout has {layout.size} values, not {values.size}")
    meta = json.dumps({**metadata, "version": int(version), "parameters": layout.size}, sort_keys=True).encode()
    layout_bytes = layout.to_bytes()
    payload = (RELEASE_MAGIC + struct.pack(">I", len(meta)) + meta + struct.pack(">I", len(layout_bytes))
               + layout_bytes + values.astype("<f8").tobytes())
    return payload + key.sign(RELEASE_LABEL + payload)


def verify_release(data: bytes, coordinator_key: bytes, *, newer_than: int | None = None) -> Release:
    """The release in `data` if the pinned coordinator key signed it and (if given) its version is
    above `newer_than`; SignatureError or StaleRelease otherwise."""
    if not isinstance(data, (bytes, bytearray)) or not SIGNATURE_BYTES + len(RELEASE_MAGIC) < len(data) <= MAX_RELEASE_BYTES:
        raise SignatureError("a release has the wrong size")
    data = bytes(data)
    payload, signature = data[:-SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
    try:
        Ed25519PublicKey.from_public_bytes(coordinator_key).verify(signature, RELEASE_LABEL + payload)
    except (ValueError, InvalidSignature):
        raise SignatureError("the release is not signed by the pinned coordinator key: refusing to load it") from None
    try:
        if not payload.startswith(RELEASE_MAGIC):
            raise ValueError("bad magic")
        offset = len(RELEASE_MAGIC)
        (meta_length,) = struct.unpack_from(">I", payload, offset)
        metadata = json.loads(payload[offset + 4: offset + 4 + meta_length])
        offset += 4 + meta_length
        (layout_length,) = struct.unpack_from(">I", payload, offset)
        layout = SharedLayout.from_bytes(payload[offset + 4: offset + 4 + layout_length])
        offset += 4 + layout_length
        vector = np.frombuffer(payload, dtype="<f8", offset=offset).astype(np.float64)
    except (ValueError, struct.error, SyncError) as error:
        raise SignatureError(f"a signed release is malformed: {error}") from None
    if vector.size != layout.size or metadata.get("parameters") != layout.size:
        raise SignatureError("a signed release's vector does not match its layout")
    version = metadata.get("version")
    if not isinstance(version, int) or version < 1:
        raise SignatureError("a signed release has no valid version")
    if newer_than is not None and version <= newer_than:
        raise StaleRelease(f"release version {version} is not newer than the loaded version {newer_than}: "
                           f"refusing a rollback")
    vector.setflags(write=False)
    return Release(version=version, metadata=metadata, layout=layout, vector=vector, raw=data)


def _canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def sign_round_outcome(key: Ed25519PrivateKey, record: dict[str, Any]) -> dict[str, str]:
    """{"record": canonical JSON text, "signature": hex}: what the outcome endpoint answers."""
    text = _canonical(record)
    return {"record": text.decode(), "signature": key.sign(OUTCOME_LABEL + text).hex()}


def verify_round_outcome(signed: Any, coordinator_key: bytes, round_id: str, device_id: str) -> dict[str, Any]:
    """The record in `signed` if the pinned key signed it and it is about this round and this device;
    SignatureError otherwise."""
    try:
        text, signature = signed["record"].encode(), bytes.fromhex(signed["signature"])
        Ed25519PublicKey.from_public_bytes(coordinator_key).verify(signature, OUTCOME_LABEL + text)
        record = json.loads(text)
    except (KeyError, TypeError, AttributeError, ValueError, InvalidSignature):
        raise SignatureError("the round outcome is not signed by the pinned coordinator key") from None
    if not isinstance(record, dict) or (record.get("round_id"), record.get("device_id")) != (round_id, device_id):
        raise SignatureError(f"the signed outcome is not about round {round_id} and this device")
    return record
