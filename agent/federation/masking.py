"""Secure-aggregation masks (SecAgg, Bonawitz et al. 2017; neighbourhoods as in SecAgg+, Bell et al.
2020): each client hides its quantized update under masks that cancel in the cohort's sum.

What it protects, and against whom: the coordinator sees only masked vectors y_u, each
pseudorandom mod 2^32 on its own (ChaCha20 keystreams); it can remove the masks only from the sum
over survivors. An
honest-but-curious coordinator, even colluding with fewer than t neighbours of any client (see
`neighbourhood`), learns the sum of the surviving clients' inputs and nothing else about any one of
them. A network observer sees at most masked vectors (the transport is to encrypt those too).
Not protected: a client can submit any vector (secure aggregation hides inputs; it does not
validate them), and a coordinator that lies about dropouts is covered only under the
semi-malicious threat model of `neighbourhood`.

Construction, for participants u, v (indices 1..n) in round r, over Z_{2^32}:
- Each client holds a fresh X25519 masking key pair for the round (`keys.generate_keypair`).
- Pairwise seed s_uv = HKDF-SHA256(X25519(sk_u, pk_v), salt none, info = PAIRWISE_LABEL || r ||
  u32(lo) || pk_lo || u32(hi) || pk_hi), lo/hi the smaller/larger index: both ends derive the same
  32 bytes, bound to the round and to both public keys.
- Self-mask seed b_u: 32 fresh bytes from `secrets`; its key is HKDF-SHA256(b_u, info = SELF_LABEL ||
  r || u32(u)).
- A 32-byte key expands to a mask with the ChaCha20 keystream (key, 16-byte all-zero nonce-and-
  counter block), read as little-endian uint32. A fixed nonce is safe because every key is derived
  for exactly one stream.
- y_u = x_u + PRG(b_u) + sum over neighbours v > u of PRG(s_uv) - sum over neighbours v < u of
  PRG(s_uv) (mod 2^32): the lower index adds, the higher subtracts, so each pair cancels in a sum.
- Recovery: sum_S y_u - sum_S PRG(b_u) - for every dropped d and each surviving neighbour u of d,
  sign(u, d) * PRG(s_ud), where s_ud is recomputed from d's secret key (reconstructed from shares).
  The server never needs, and `unmask_sum` refuses, both b_u and sk_u of the same client.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from agent.federation.errors import ConfigurationError, MaskingError
from agent.federation.keys import (KEY_BYTES, KeyPair, agree, check_round_id, hkdf_sha256, pair_kdf_info,
                                  public_key_of)
from agent.federation.neighbourhood import NeighbourhoodPlan
from agent.federation.shamir import SECRET_BYTES, SHARE_VALUE_BYTES, Share, reconstruct_secret, split_secret

SELF_MASK_SEED_BYTES = 32
PAIRWISE_LABEL = b"ownrec/secagg/v1/pairwise-mask"
SELF_LABEL = b"ownrec/secagg/v1/self-mask"
# ChaCha20's 32-bit block counter covers 2^32 blocks of 64 bytes; stay far below it.
MAX_MASK_LENGTH = 1 << 30


def pairwise_seed(round_id: bytes, own_index: int, own: KeyPair, peer_index: int, peer_public: bytes) -> bytes:
    """s_uv: the 32-byte seed both u and v derive for their pairwise mask in this round."""
    if own_index == peer_index:
        raise MaskingError("a client has no pairwise mask with itself")
    if (own_index, own.public) < (peer_index, peer_public):
        info = pair_kdf_info(PAIRWISE_LABEL, round_id, own_index, own.public, peer_index, peer_public)
    else:
        info = pair_kdf_info(PAIRWISE_LABEL, round_id, peer_index, peer_public, own_index, own.public)
    return hkdf_sha256(agree(own.secret, peer_public), info)


def self_mask_key(round_id: bytes, index: int, seed: bytes) -> bytes:
    check_round_id(round_id)
    if len(seed) != SELF_MASK_SEED_BYTES:
        raise MaskingError(f"a self-mask seed is {SELF_MASK_SEED_BYTES} bytes")
    return hkdf_sha256(seed, SELF_LABEL + round_id + struct.pack(">I", index))


def expand_mask(key: bytes, length: int) -> np.ndarray:
    """`length` uint32 values of the ChaCha20 keystream under `key` (the PRG of the paper)."""
    if len(key) != KEY_BYTES:
        raise MaskingError("a mask key is 32 bytes")
    if not 0 <= length <= MAX_MASK_LENGTH:
        raise ConfigurationError(f"a mask length must be in 0..{MAX_MASK_LENGTH}, not {length}")
    encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return np.frombuffer(encryptor.update(bytes(4 * length)), dtype="<u4").astype(np.uint32)


def mask_sign(own_index: int, peer_index: int) -> int:
    """+1 if this client adds the pair's mask (it has the lower index), -1 if it subtracts it."""
    return 1 if own_index < peer_index else -1


def new_self_mask_seed() -> bytes:
    return secrets.token_bytes(SELF_MASK_SEED_BYTES)


def mask_input(values: np.ndarray, *, round_id: bytes, index: int, mask_keys: KeyPair, self_mask_seed: bytes,
               neighbour_publics: Mapping[int, bytes]) -> np.ndarray:
    """y_u: the quantized update plus its self mask and its signed pairwise masks (mod 2^32).

    `neighbour_publics` holds the masking public keys of the neighbours that completed the share
    stage (the server can recover only masks shared with those)."""
    vector = _as_residues(values)
    masked = vector + expand_mask(self_mask_key(round_id, index, self_mask_seed), vector.size)
    for peer, peer_public in neighbour_publics.items():
        mask = expand_mask(pairwise_seed(round_id, index, mask_keys, peer, peer_public), vector.size)
        masked = masked + mask if mask_sign(index, peer) > 0 else masked - mask  # uint32 wraps mod 2^32
    return masked


@dataclass(frozen=True, repr=False)
class SharePair:
    """What a client gives one neighbour: its share of the masking secret key and of the self-mask
    seed, both at the neighbour's index. Encrypted in an envelope; never sent in the clear."""

    holder: int
    mask_key_share: Share
    self_seed_share: Share

    PLAINTEXT_BYTES = 2 * SHARE_VALUE_BYTES

    def __repr__(self) -> str:
        return f"SharePair(holder={self.holder}, <hidden>)"

    def to_plaintext(self) -> bytes:
        return self.mask_key_share.value_bytes() + self.self_seed_share.value_bytes()

    @classmethod
    def from_plaintext(cls, holder: int, plaintext: bytes) -> SharePair:
        if len(plaintext) != cls.PLAINTEXT_BYTES:
            raise MaskingError(f"a share pair is {cls.PLAINTEXT_BYTES} bytes, not {len(plaintext)}")
        return cls(holder=holder,
                   mask_key_share=Share.from_value_bytes(holder, plaintext[:SHARE_VALUE_BYTES]),
                   self_seed_share=Share.from_value_bytes(holder, plaintext[SHARE_VALUE_BYTES:]))


def share_secrets(mask_keys: KeyPair, self_mask_seed: bytes, neighbours: Collection[int],
                  plan: NeighbourhoodPlan) -> dict[int, SharePair]:
    """t-of-k Shamir shares of the masking secret key and of the self-mask seed, one pair per neighbour."""
    if len(self_mask_seed) != SECRET_BYTES:
        raise MaskingError(f"a self-mask seed is {SECRET_BYTES} bytes")
    holders = sorted(neighbours)
    if len(holders) < plan.threshold:
        raise MaskingError(f"{len(holders)} neighbours cannot hold a {plan.threshold}-of-n sharing")
    key_shares = split_secret(mask_keys.secret, plan.threshold, holders)
    seed_shares = split_secret(self_mask_seed, plan.threshold, holders)
    return {k.index: SharePair(holder=k.index, mask_key_share=k, self_seed_share=s)
            for k, s in zip(key_shares, seed_shares)}


def shares_to_reveal(held: Mapping[int, SharePair], survivors: Collection[int], dropped: Collection[int],
                     plan: NeighbourhoodPlan) -> dict[int, Share]:
    """The client's answer in the unmasking stage: for each neighbour whose shares it holds, the
    self-seed share if the neighbour survived, the masking-key share if it dropped, never both.

    `held` maps each owner (the neighbour who made the shares) to the pair it gave this client."""
    survived, gone = set(survivors), set(dropped)
    if survived & gone:
        raise MaskingError(f"clients {sorted(survived & gone)} are listed both as survivors and as dropped: "
                           f"revealing both of their secrets would unmask them; refusing")
    plan.check_survivors(len(survived))
    revealed: dict[int, Share] = {}
    for owner, pair in held.items():
        if owner in survived:
            revealed[owner] = pair.self_seed_share
        elif owner in gone:
            revealed[owner] = pair.mask_key_share
    return revealed


def recover_mask_secret(shares: list[Share], threshold: int, advertised_public: bytes) -> bytes:
    """A dropped client's masking secret key from its shares, checked against its public key."""
    secret = reconstruct_secret(shares, threshold)
    try:
        matches = public_key_of(secret) == advertised_public
    except MaskingError:
        matches = False
    if not matches:
        raise MaskingError("the reconstructed masking key does not match the advertised public key: bad shares")
    return secret


def unmask_sum(masked_inputs: Mapping[int, np.ndarray], *, round_id: bytes, mask_publics: Mapping[int, bytes],
               neighbours_of: Mapping[int, Collection[int]], self_mask_seeds: Mapping[int, bytes],
               dropped_mask_secrets: Mapping[int, bytes]) -> np.ndarray:
    """The sum mod 2^32 of the survivors' quantized inputs.

    masked_inputs         survivor index -> y_u (the survivors are exactly these keys)
    mask_publics          index -> masking public key of every client that completed the share stage
    neighbours_of         dropped index -> its graph neighbours (required for every dropped client)
    self_mask_seeds       survivor index -> b_u, reconstructed from shares
    dropped_mask_secrets  dropped index -> sk_d, reconstructed from shares (with survivor neighbours)"""
    survivors = set(masked_inputs)
    if not survivors:
        raise MaskingError("no masked inputs to sum")
    if not survivors <= set(mask_publics):
        raise MaskingError(f"inputs from clients {sorted(survivors - set(mask_publics))} that shared no keys")
    both = (survivors | set(self_mask_seeds)) & set(dropped_mask_secrets)
    if both:
        raise MaskingError(f"clients {sorted(both)} would have both their self mask and their key revealed: refusing")
    missing_seeds = survivors - set(self_mask_seeds)
    if missing_seeds:
        raise MaskingError(f"no self-mask seed for survivors {sorted(missing_seeds)}")
    if set(self_mask_seeds) - survivors:
        raise MaskingError(f"self-mask seeds given for non-survivors {sorted(set(self_mask_seeds) - survivors)}")
    vectors = [_as_residues(masked_inputs[u]) for u in sorted(survivors)]
    length = vectors[0].size
    if any(vector.size != length for vector in vectors):
        raise MaskingError("masked inputs of different lengths")
    total = np.zeros(length, dtype=np.uint32)
    for vector in vectors:
        total += vector
    for u in sorted(survivors):
        total -= expand_mask(self_mask_key(round_id, u, self_mask_seeds[u]), length)
    for dropped in sorted(set(mask_publics) - survivors):
        if dropped not in neighbours_of:
            raise MaskingError(f"no neighbour list for dropped client {dropped}: its masks cannot be removed")
        affected = sorted(survivors & set(neighbours_of[dropped]))
        if not affected:
            continue  # no survivor masked with it: nothing to remove
        if dropped not in dropped_mask_secrets:
            raise MaskingError(f"dropped client {dropped} masked with survivors {affected} but its key was not recovered")
        keys = KeyPair(secret=dropped_mask_secrets[dropped], public=mask_publics[dropped])
        if public_key_of(keys.secret) != keys.public:
            raise MaskingError(f"the secret key given for dropped client {dropped} does not match its public key")
        for u in affected:
            # From the dropped client's side, with u's public key: the same seed u used.
            mask = expand_mask(pairwise_seed(round_id, dropped, keys, u, mask_publics[u]), length)
            total = total - mask if mask_sign(u, dropped) > 0 else total + mask
    return total


def _as_residues(values: np.ndarray) -> np.ndarray:
    vector = np.asarray(values)
    if vector.dtype != np.uint32 or vector.ndim != 1:
        raise MaskingError(f"expected a 1-d uint32 vector, got {vector.dtype} with shape {vector.shape}")
    return vector
