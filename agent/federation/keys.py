"""X25519 key pairs, key agreement and HKDF-SHA256, shared by the masking and envelope modules.

Every key derived here is bound by its HKDF info string to a purpose label, the round id and the
identities involved, so a key made for one purpose, round or pair is never valid for another."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.federation.errors import MaskingError

KEY_BYTES = 32
ROUND_ID_BYTES = 16


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A raw X25519 key pair (32 + 32 bytes); repr never shows the secret."""

    secret: bytes
    public: bytes

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES or len(self.public) != KEY_BYTES:
            raise MaskingError("an X25519 key is 32 bytes")

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()[:16]}..., secret=<hidden>)"


def generate_keypair() -> KeyPair:
    """A fresh X25519 key pair from the OS CSPRNG (one per client, per purpose, per round)."""
    private = X25519PrivateKey.generate()
    return KeyPair(secret=private.private_bytes_raw(), public=private.public_key().public_bytes_raw())


def public_key_of(secret: bytes) -> bytes:
    return _private_key(secret).public_key().public_bytes_raw()


def agree(own_secret: bytes, peer_public: bytes) -> bytes:
    """The raw X25519 shared secret; a malformed or low-order peer key (all-zero result) is refused."""
    try:
        return _private_key(own_secret).exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:
        raise MaskingError(f"X25519 key agreement failed: {exc}") from exc


def hkdf_sha256(key_material: bytes, info: bytes) -> bytes:
    """32 bytes of HKDF-SHA256 (RFC 5869) with no salt: the input is already a uniform secret or a
    Diffie-Hellman output, and `info` carries all the context."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(key_material)


def check_round_id(round_id: bytes) -> bytes:
    if not isinstance(round_id, (bytes, bytearray)) or len(round_id) != ROUND_ID_BYTES:
        raise MaskingError(f"a round id is {ROUND_ID_BYTES} bytes")
    return bytes(round_id)


def pair_kdf_info(label: bytes, round_id: bytes, first: int, first_public: bytes,
                  second: int, second_public: bytes) -> bytes:
    """label || round id || u32(first) || pk_first || u32(second) || pk_second. The fields after the
    label have fixed widths, so two different tuples never give the same info string."""
    if len(first_public) != KEY_BYTES or len(second_public) != KEY_BYTES:
        raise MaskingError("an X25519 public key is 32 bytes")
    return label + check_round_id(round_id) + struct.pack(">I", first) + first_public \
        + struct.pack(">I", second) + second_public


def _private_key(secret: bytes) -> X25519PrivateKey:
    try:
        return X25519PrivateKey.from_private_bytes(secret)
    except ValueError as exc:
        raise MaskingError("an X25519 secret key is 32 bytes") from exc
