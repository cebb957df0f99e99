"""Envelopes: a client's Shamir shares for one neighbour, encrypted so only that neighbour reads them.

What it protects, and against whom: shares travel through the coordinator, which must never read
them (holding t shares of a client's two secrets would let it unmask that client). Each envelope is
encrypted with ChaCha20-Poly1305 under a key only the sender and the receiver can derive, so the
coordinator and any network observer learn nothing from it, and any change to it — ciphertext,
nonce, or the header it is bound to — is detected. Binding the round id and both indices in the
associated data (and in the key) means an envelope cannot be replayed into another round, passed
off as coming from another sender, or redirected to another receiver.

Construction:
- Each client holds a fresh X25519 *channel* key pair per round, separate from its masking key pair
  (the masking secret key is Shamir-shared and may be reconstructed by the server; the channel key
  never is, so a dropped client's envelopes stay sealed).
- key = HKDF-SHA256(X25519(sk_sender, pk_receiver), salt none, info = ENVELOPE_LABEL || round id ||
  u32(sender) || pk_sender || u32(receiver) || pk_receiver): one key per direction, per pair, per
  round.
- nonce: 12 random bytes from `secrets`, sent with the ciphertext. Each key seals one envelope; the
  random nonce keeps even an accidental second seal under the same key safe.
- associated data = AD_LABEL || round id || u32(sender) || u32(receiver), built from what the
  receiver *expects*, so a header edited in transit also fails authentication.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from agent.federation.errors import EnvelopeMisdirected, EnvelopeTampered, MaskingError
from agent.federation.keys import KeyPair, agree, check_round_id, hkdf_sha256, pair_kdf_info

ENVELOPE_LABEL = b"ownrec/secagg/v1/share-envelope"
AD_LABEL = b"ownrec/secagg/v1/envelope-ad"
NONCE_BYTES = 12
TAG_BYTES = 16


@dataclass(frozen=True)
class SealedEnvelope:
    """An encrypted message from `sender` to `receiver` in round `round_id` (plain data on the wire)."""

    round_id: bytes
    sender: int
    receiver: int
    nonce: bytes
    ciphertext: bytes


def envelope_key(round_id: bytes, sender: int, sender_public: bytes, receiver: int, receiver_public: bytes,
                 own: KeyPair, peer_public: bytes) -> bytes:
    """The sender->receiver key; either end computes it from its own key pair and the peer's public key."""
    return hkdf_sha256(agree(own.secret, peer_public),
                 pair_kdf_info(ENVELOPE_LABEL, round_id, sender, sender_public, receiver, receiver_public))


def associated_data(round_id: bytes, sender: int, receiver: int) -> bytes:
    check_round_id(round_id)
    return AD_LABEL + round_id + struct.pack(">II", sender, receiver)


def seal(plaintext: bytes, *, round_id: bytes, sender: int, receiver: int, sender_channel: KeyPair,
         receiver_public: bytes) -> SealedEnvelope:
    """Encrypt `plaintext` for `receiver` with the sender's channel key pair."""
    if sender == receiver:
        raise MaskingError("a client does not seal envelopes for itself")
    key = envelope_key(round_id, sender, sender_channel.public, receiver, receiver_public,
                       sender_channel, receiver_public)
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated_data(round_id, sender, receiver))
    return SealedEnvelope(round_id=bytes(round_id), sender=sender, receiver=receiver, nonce=nonce,
                          ciphertext=ciphertext)


def open_envelope(envelope: SealedEnvelope, *, round_id: bytes, receiver: int, receiver_channel: KeyPair,
                  sender_public: bytes) -> bytes:
    """The plaintext, if `envelope` was sealed for this round and this receiver by the holder of
    `sender_public` and arrived unaltered; otherwise EnvelopeMisdirected or EnvelopeTampered."""
    if envelope.round_id != round_id:
        raise EnvelopeMisdirected(
            f"envelope from round {envelope.round_id.hex()} presented in round {bytes(round_id).hex()}: replay refused")
    if envelope.receiver != receiver:
        raise EnvelopeMisdirected(f"envelope addressed to participant {envelope.receiver}, opened by {receiver}")
    if envelope.sender == receiver:
        raise EnvelopeMisdirected("envelope claims to come from its own receiver")
    if len(envelope.nonce) != NONCE_BYTES or len(envelope.ciphertext) < TAG_BYTES:
        raise EnvelopeTampered("envelope nonce or ciphertext has the wrong length")
    key = envelope_key(round_id, envelope.sender, sender_public, receiver, receiver_channel.public,
                       receiver_channel, sender_public)
    try:
        return ChaCha20Poly1305(key).decrypt(envelope.nonce, envelope.ciphertext,
                                             associated_data(round_id, envelope.sender, receiver))
    except InvalidTag as exc:
        raise EnvelopeTampered(
            f"envelope from participant {envelope.sender} to {receiver} failed authentication: "
            f"altered, replayed under another header, or not from the holder of that channel key") from exc
