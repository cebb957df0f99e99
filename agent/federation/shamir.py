"""t-of-n Shamir secret sharing of 32-byte secrets over the prime field GF(p), p = 2^256 + 297.

What it protects: a secret split with threshold t is information-theoretically hidden from anyone
holding fewer than t shares (every secret is equally consistent with them), and any t shares
recover it. In secure aggregation a client splits two secrets among its neighbours this way — its
masking key and its self-mask seed — so the server can remove the masks of clients who drop out, and
of those who stay, without ever holding both secrets of one client.

Choices:
- p = 2^256 + 297 is the smallest prime above 2^256, so every 32-byte secret is one field element
  and a share's value takes 33 bytes (a 2^521 - 1 field would double the per-neighbour bytes and
  push a client past the 16 KiB per-round overhead target at large cohorts). The tests re-check
  primality with Miller-Rabin.
- A share's x-coordinate is the receiving participant's index (1-based; 0 is the secret itself).
- Coefficients come from `secrets.randbelow`, the OS CSPRNG.
- Integrity: with more than t shares, reconstruction interpolates the first t and checks that every
  other share lies on the same polynomial, so any inconsistent share is detected (which one is wrong
  is not identified). With exactly t shares a wrong share goes unnoticed unless the result falls
  outside 32 bytes; callers that can verify the secret (a masking key against its public key) do so.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.federation.errors import ConfigurationError, InconsistentShares, InvalidShare, NotEnoughShares

FIELD_PRIME = (1 << 256) + 297
SECRET_BYTES = 32
SHARE_VALUE_BYTES = 33
# Indices travel as unsigned 32-bit integers on the wire.
MAX_INDEX = (1 << 32) - 1


@dataclass(frozen=True)
class Share:
    """The point (index, value) of the sharing polynomial; index = the holder's participant index."""

    index: int
    value: int

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or not 1 <= self.index <= MAX_INDEX:
            raise InvalidShare(f"a share index must be an integer in 1..{MAX_INDEX}, not {self.index!r}")
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not 0 <= self.value < FIELD_PRIME:
            raise InvalidShare(f"the value of share {self.index} is not an element of the field")

    def value_bytes(self) -> bytes:
        return self.value.to_bytes(SHARE_VALUE_BYTES, "big")

    @classmethod
    def from_value_bytes(cls, index: int, data: bytes) -> Share:
        if len(data) != SHARE_VALUE_BYTES:
            raise InvalidShare(f"a share value is {SHARE_VALUE_BYTES} bytes, not {len(data)}")
        return cls(index=index, value=int.from_bytes(data, "big"))


def split_secret(secret: bytes, threshold: int, indices: Iterable[int]) -> tuple[Share, ...]:
    """Shares of `secret` for the participants `indices`, any `threshold` of which recover it."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != SECRET_BYTES:
        raise ConfigurationError(f"a secret to share must be {SECRET_BYTES} bytes")
    holders = list(indices)
    _check_indices(holders)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= len(holders):
        raise ConfigurationError(f"the threshold must be in 1..{len(holders)} (the number of holders), not {threshold!r}")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(FIELD_PRIME) for _ in range(threshold - 1)]
    return tuple(Share(index=x, value=_evaluate(coefficients, x)) for x in holders)


def reconstruct_secret(shares: Sequence[Share], threshold: int) -> bytes:
    """The secret behind `shares`; raises if they are too few, malformed or inconsistent."""
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ConfigurationError(f"the threshold must be a positive integer, not {threshold!r}")
    for share in shares:
        if not isinstance(share, Share):
            raise InvalidShare(f"not a Share: {share!r}")
    _check_indices([share.index for share in shares])
    if len(shares) < threshold:
        raise NotEnoughShares(f"{len(shares)} shares given, {threshold} needed")
    basis, extra = list(shares[:threshold]), shares[threshold:]
    polynomial = _newton_coefficients(basis)
    for share in extra:
        if _newton_evaluate(basis, polynomial, share.index) != share.value:
            raise InconsistentShares(
                f"share {share.index} does not lie on the polynomial through shares "
                f"{[s.index for s in basis]}: at least one share is wrong")
    value = _newton_evaluate(basis, polynomial, 0)
    if value >> (8 * SECRET_BYTES):
        raise InconsistentShares("the shares reconstruct a value wider than 32 bytes: at least one is wrong")
    return value.to_bytes(SECRET_BYTES, "big")


def _check_indices(indices: Sequence[int]) -> None:
    seen: set[int] = set()
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= MAX_INDEX:
            raise InvalidShare(f"a share index must be an integer in 1..{MAX_INDEX}, not {index!r}")
        if index in seen:
            raise InvalidShare(f"share index {index} appears twice")
        seen.add(index)


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for coefficient in reversed(coefficients):  # Horner's rule
        result = (result * x + coefficient) % FIELD_PRIME
    return result


def _newton_coefficients(points: Sequence[Share]) -> list[int]:
    """Divided differences: the Newton form of the polynomial of degree < len(points) through them.

    O(t^2) multiplications and t - 1 modular inversions (one batched inversion per column)."""
    xs = [point.index for point in points]
    coefficients = [point.value for point in points]
    for gap in range(1, len(points)):
        inverses = _batch_inverse([(xs[i] - xs[i - gap]) % FIELD_PRIME for i in range(gap, len(points))])
        for i in range(len(points) - 1, gap - 1, -1):
            coefficients[i] = (coefficients[i] - coefficients[i - 1]) * inverses[i - gap] % FIELD_PRIME
    return coefficients


def _newton_evaluate(points: Sequence[Share], coefficients: Sequence[int], x: int) -> int:
    """The Newton-form polynomial at x, in O(t) multiplications (Horner's rule on the Newton basis)."""
    result = coefficients[-1]
    for i in range(len(coefficients) - 2, -1, -1):
        result = (result * (x - points[i].index) + coefficients[i]) % FIELD_PRIME
    return result


def _batch_inverse(values: Sequence[int]) -> list[int]:
    """Modular inverses of nonzero `values` with one exponentiation (Montgomery's trick)."""
    prefix = [1]
    for value in values:
        prefix.append(prefix[-1] * value % FIELD_PRIME)
    inverse = pow(prefix[-1], -1, FIELD_PRIME)
    result = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        result[i] = inverse * prefix[i] % FIELD_PRIME
        inverse = inverse * values[i] % FIELD_PRIME
    return result
