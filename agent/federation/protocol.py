"""The client-to-coordinator messages of the four secure-aggregation stages, and their wire format.

Plain frozen dataclasses with a compact, versioned binary encoding: fixed-width big-endian integers
and length-checked fields, never pickle, never anything that executes or allocates on the sender's
say-so. `decode` is strict: wrong magic or version, an unknown stage, a size over the limits, a
count that disagrees with the length, trailing bytes, duplicate or self-addressed entries, or a
round id or vector length other than the expected one are all rejected with a ProtocolError before
anything is acted on.

Every message starts with the same 26-byte header:
    magic "ORSA" | version u8 | stage u8 | round id (16 bytes) | sender index u32
then, by stage:
    1 advertise keys   channel public key (32) | masking public key (32)
    2 share keys       count u16 | count x (receiver u32 | nonce 12 | ciphertext 82)
    3 masked input     length u32 | length x uint32 little-endian (4 bytes per parameter)
    4 unmasking        count u16 | count x (owner u32 | kind u8 | share value 33)
The messages carry no signatures: the transport authenticates clients (issue 5, item 2).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from agent.federation.envelope import NONCE_BYTES, TAG_BYTES, SealedEnvelope
from agent.federation.errors import ProtocolError
from agent.federation.keys import KEY_BYTES, ROUND_ID_BYTES
from agent.federation.masking import SharePair
from agent.federation.shamir import FIELD_PRIME, MAX_INDEX, SHARE_VALUE_BYTES

MAGIC = b"ORSA"
VERSION = 1
HEADER = struct.Struct(">4sBB16sI")
ENVELOPE_CIPHERTEXT_BYTES = SharePair.PLAINTEXT_BYTES + TAG_BYTES
ENVELOPE_ENTRY = struct.Struct(f">I{NONCE_BYTES}s{ENVELOPE_CIPHERTEXT_BYTES}s")
SHARE_ENTRY = struct.Struct(f">IB{SHARE_VALUE_BYTES}s")
COUNT = struct.Struct(">H")
LENGTH = struct.Struct(">I")
MAX_ENTRIES = 0xFFFF  # counts travel as u16
DEFAULT_MAX_PARAMETERS = 1 << 24  # 64 MiB of masked input; the coordinator may set its own


class Stage(IntEnum):
    ADVERTISE_KEYS = 1
    SHARE_KEYS = 2
    MASKED_INPUT = 3
    UNMASKING = 4


class ShareKind(IntEnum):
    SELF_MASK_SEED = 1   # revealed for a neighbour that survived
    MASK_KEY = 2         # revealed for a neighbour that dropped


def _check_header(round_id: bytes, sender: int) -> None:
    if not isinstance(round_id, bytes) or len(round_id) != ROUND_ID_BYTES:
        raise ProtocolError(f"a round id is {ROUND_ID_BYTES} bytes")
    _check_index(sender, "sender")


def _check_index(index: int, what: str) -> None:
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= MAX_INDEX:
        raise ProtocolError(f"{what} index must be in 1..{MAX_INDEX}, not {index!r}")


@dataclass(frozen=True)
class AdvertiseKeys:
    """Stage 1: the client's fresh public keys for this round."""

    round_id: bytes
    sender: int
    channel_public: bytes
    mask_public: bytes

    def __post_init__(self) -> None:
        _check_header(self.round_id, self.sender)
        if len(self.channel_public) != KEY_BYTES or len(self.mask_public) != KEY_BYTES:
            raise ProtocolError("public keys are 32 bytes")
        if self.channel_public == self.mask_public:
            raise ProtocolError("the channel and masking keys must be different key pairs")


@dataclass(frozen=True)
class ShareKeys:
    """Stage 2: one sealed SharePair per neighbour, for the coordinator to forward unopened."""

    round_id: bytes
    sender: int
    envelopes: tuple[SealedEnvelope, ...]

    def __post_init__(self) -> None:
        _check_header(self.round_id, self.sender)
        if len(self.envelopes) > MAX_ENTRIES:
            raise ProtocolError(f"at most {MAX_ENTRIES} envelopes per message")
        receivers = set()
        for envelope in self.envelopes:
            if envelope.round_id != self.round_id or envelope.sender != self.sender:
                raise ProtocolError("an envelope's round or sender differs from its message's")
            _check_index(envelope.receiver, "receiver")
            if envelope.receiver == self.sender:
                raise ProtocolError("a client does not send itself an envelope")
            if envelope.receiver in receivers:
                raise ProtocolError(f"two envelopes for receiver {envelope.receiver}")
            if len(envelope.nonce) != NONCE_BYTES or len(envelope.ciphertext) != ENVELOPE_CIPHERTEXT_BYTES:
                raise ProtocolError(f"envelope for {envelope.receiver} has the wrong nonce or ciphertext size")
            receivers.add(envelope.receiver)


@dataclass(frozen=True, eq=False)
class MaskedInput:
    """Stage 3: the masked, quantized update (uint32, read-only)."""

    round_id: bytes
    sender: int
    values: np.ndarray

    def __post_init__(self) -> None:
        _check_header(self.round_id, self.sender)
        values = np.asarray(self.values)
        if values.dtype != np.uint32 or values.ndim != 1:
            raise ProtocolError(f"a masked input is a 1-d uint32 vector, not {values.dtype} {values.shape}")
        values = values.copy()
        values.setflags(write=False)
        object.__setattr__(self, "values", values)


@dataclass(frozen=True)
class RevealedShare:
    owner: int
    kind: ShareKind
    value: int


@dataclass(frozen=True)
class UnmaskingShares:
    """Stage 4: for each neighbour, one share: its self-mask seed if it survived, its key if it dropped."""

    round_id: bytes
    sender: int
    shares: tuple[RevealedShare, ...]

    def __post_init__(self) -> None:
        _check_header(self.round_id, self.sender)
        if len(self.shares) > MAX_ENTRIES:
            raise ProtocolError(f"at most {MAX_ENTRIES} shares per message")
        owners = set()
        for share in self.shares:
            _check_index(share.owner, "owner")
            if share.owner == self.sender:
                raise ProtocolError("a client holds no share of its own secrets")
            if share.owner in owners:
                raise ProtocolError(f"two shares for owner {share.owner}: never reveal both secrets of a client")
            if not isinstance(share.kind, ShareKind):
                raise ProtocolError(f"unknown share kind {share.kind!r}")
            if isinstance(share.value, bool) or not isinstance(share.value, int) or not 0 <= share.value < FIELD_PRIME:
                raise ProtocolError(f"the share for owner {share.owner} is not a field element")
            owners.add(share.owner)


Message = AdvertiseKeys | ShareKeys | MaskedInput | UnmaskingShares


def encode(message: Message) -> bytes:
    """The wire bytes of `message`."""
    stage = {AdvertiseKeys: Stage.ADVERTISE_KEYS, ShareKeys: Stage.SHARE_KEYS,
             MaskedInput: Stage.MASKED_INPUT, UnmaskingShares: Stage.UNMASKING}.get(type(message))
    if stage is None:
        raise ProtocolError(f"not a protocol message: {type(message).__name__}")
    header = HEADER.pack(MAGIC, VERSION, stage, message.round_id, message.sender)
    if isinstance(message, AdvertiseKeys):
        return header + message.channel_public + message.mask_public
    if isinstance(message, ShareKeys):
        return header + COUNT.pack(len(message.envelopes)) + b"".join(
            ENVELOPE_ENTRY.pack(e.receiver, e.nonce, e.ciphertext) for e in message.envelopes)
    if isinstance(message, MaskedInput):
        return header + LENGTH.pack(message.values.size) + message.values.astype("<u4", copy=False).tobytes()
    return header + COUNT.pack(len(message.shares)) + b"".join(
        SHARE_ENTRY.pack(s.owner, s.kind, s.value.to_bytes(SHARE_VALUE_BYTES, "big")) for s in message.shares)


def decode(data: bytes, *, expected_round: bytes | None = None, expected_stage: Stage | None = None,
           expected_length: int | None = None, max_parameters: int = DEFAULT_MAX_PARAMETERS) -> Message:
    """The message in `data`, or ProtocolError. Checks the round, stage and vector length if given."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("a message is bytes")
    data = bytes(data)
    if len(data) > HEADER.size + LENGTH.size + 4 * max_parameters:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit for {max_parameters} parameters")
    if len(data) < HEADER.size:
        raise ProtocolError(f"message of {len(data)} bytes is shorter than the {HEADER.size}-byte header")
    magic, version, stage_number, round_id, sender = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError("not an ownrec secure-aggregation message (bad magic)")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version} is not supported (this build speaks {VERSION})")
    try:
        stage = Stage(stage_number)
    except ValueError:
        raise ProtocolError(f"unknown stage {stage_number}") from None
    if expected_stage is not None and stage != expected_stage:
        raise ProtocolError(f"expected a {expected_stage.name} message, got {stage.name}")
    if expected_round is not None and round_id != expected_round:
        raise ProtocolError(f"message for round {round_id.hex()}, expected {bytes(expected_round).hex()}: stale or replayed")
    body = data[HEADER.size:]
    if stage == Stage.ADVERTISE_KEYS:
        _expect_size(body, 2 * KEY_BYTES, stage)
        return AdvertiseKeys(round_id, sender, body[:KEY_BYTES], body[KEY_BYTES:])
    if stage == Stage.MASKED_INPUT:
        (length,) = _unpack(LENGTH, body, stage)
        if length > max_parameters:
            raise ProtocolError(f"masked input of {length} parameters exceeds the limit of {max_parameters}")
        if expected_length is not None and length != expected_length:
            raise ProtocolError(f"masked input has {length} parameters, the round expects {expected_length}")
        _expect_size(body, LENGTH.size + 4 * length, stage)
        return MaskedInput(round_id, sender, np.frombuffer(body, dtype="<u4", offset=LENGTH.size).astype(np.uint32))
    (count,) = _unpack(COUNT, body, stage)
    entry = ENVELOPE_ENTRY if stage == Stage.SHARE_KEYS else SHARE_ENTRY
    _expect_size(body, COUNT.size + count * entry.size, stage)
    entries = [entry.unpack_from(body, COUNT.size + i * entry.size) for i in range(count)]
    if stage == Stage.SHARE_KEYS:
        return ShareKeys(round_id, sender, tuple(
            SealedEnvelope(round_id=round_id, sender=sender, receiver=receiver, nonce=nonce, ciphertext=ciphertext)
            for receiver, nonce, ciphertext in entries))
    shares = []
    for owner, kind, value in entries:
        try:
            share_kind = ShareKind(kind)
        except ValueError:
            raise ProtocolError(f"unknown share kind {kind} for owner {owner}") from None
        shares.append(RevealedShare(owner=owner, kind=share_kind, value=int.from_bytes(value, "big")))
    return UnmaskingShares(round_id, sender, tuple(shares))


def _unpack(layout: struct.Struct, body: bytes, stage: Stage) -> tuple:
    if len(body) < layout.size:
        raise ProtocolError(f"{stage.name} message truncated")
    return layout.unpack_from(body)


def _expect_size(body: bytes, size: int, stage: Stage) -> None:
    if len(body) != size:
        raise ProtocolError(f"{stage.name} body is {len(body)} bytes, its counts say {size}"
                            + (" (trailing bytes)" if len(body) > size else " (truncated)"))
