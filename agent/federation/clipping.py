"""Clipping and distributed-DP Gaussian noise for one client's update.

What this protects, and against whom: after `clip_to_norm` a single person's update has L2 norm at
most C, so their influence on the cohort sum is bounded (the sensitivity of the sum is C). Each
client then adds Gaussian noise of standard deviation z*C/sqrt(n) to every coordinate. Summed over
at least n honest contributors the noise has standard deviation at least z*C: the sum released to
the coordinator carries the noise of the central Gaussian mechanism with noise multiplier z, without
anyone — the coordinator included — ever seeing an un-noised vector. Secure aggregation hides each
individual noised vector; this module only makes the sum private.

Limits, stated plainly:
- n must be a lower bound on the number of *honest* contributors to the released sum: the
  coordinator must abort a round with fewer survivors, and colluding clients who skip their noise
  reduce the sum's noise to sqrt(honest / n) * z*C.
- The noise is floating-point Gaussian noise from numpy (PCG64 seeded with 256 bits from the OS
  CSPRNG via `secrets`). PCG64 itself is not a cryptographic generator, which is acceptable here
  because nobody sees a single client's noise in isolation (only the masked sum). Floating-point
  sampling has known subtle flaws for DP (Mironov 2012); the distributed discrete Gaussian
  (Kairouz, Liu and Steinke 2021) is the rigorous alternative and is not implemented here.

Noise against signal (`NoiseCheck`): the average of s clipped updates has norm at most C, whatever they
are, while the Gaussian noise in that average has an expected norm of about z*C*sqrt(D / (s*n)) over D
numbers (each of the s survivors added std z*C/sqrt(n)). When the noise is the larger, the average cannot
say more than its noise: the coordinator withholds such a release, and a device that has too little
feedback to judge a release adopts only one whose signed figures show the opposite.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np

from agent.federation.errors import ConfigurationError

# Relative slack used when a rounding error would leave a clipped vector a hair above C.
_SHRINK_STEP = 2.0**-40


def secure_generator() -> np.random.Generator:
    """A numpy Generator seeded with 256 bits from the operating system's CSPRNG.

    The product path always uses this; tests pass their own seeded generator instead."""
    return np.random.default_rng(secrets.randbits(256))


def l2_norm(vector: np.ndarray) -> float:
    """The Euclidean norm, computed without overflow for large entries; inf/NaN are refused."""
    values = np.asarray(vector, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ConfigurationError("the vector holds NaN or infinite values")
    largest = float(np.max(np.abs(values))) if values.size else 0.0
    if largest == 0.0:
        return 0.0
    # Scaling by the largest entry keeps the squares in range (1e200 would overflow otherwise).
    return largest * float(np.sqrt(np.dot(values / largest, values / largest)))


def clip_to_norm(delta: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float]:
    """Scale `delta` by min(1, C / ||delta||) and return (clipped copy as float64, pre-clip norm).

    The result's norm never exceeds C, also after floating-point rounding."""
    if not (math.isfinite(clip_norm) and clip_norm > 0):
        raise ConfigurationError(f"the clip norm must be a positive number, not {clip_norm!r}")
    clipped = np.array(delta, dtype=np.float64).reshape(-1)
    norm = l2_norm(clipped)
    if norm <= clip_norm:
        return clipped, norm
    clipped *= clip_norm / norm
    shrink = _SHRINK_STEP
    while l2_norm(clipped) > clip_norm:  # at most a few passes: each shrinks twice as much as the last
        clipped *= 1.0 - shrink
        shrink *= 2.0
    return clipped, norm


@dataclass(frozen=True)
class DistributedNoise:
    """Distributed-DP Gaussian noise: every client adds N(0, (z*C)^2 / n) per coordinate.

    clip_norm        C, the L2 bound of every clipped update (the sensitivity of the sum)
    noise_multiplier z, the central noise multiplier the accountant uses (0 turns noise off)
    min_contributors n, the fewest honest clients whose noise ends up in a released sum
    """

    clip_norm: float
    noise_multiplier: float
    min_contributors: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise ConfigurationError(f"the clip norm must be a positive number, not {self.clip_norm!r}")
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ConfigurationError(f"the noise multiplier must be >= 0, not {self.noise_multiplier!r}")
        if isinstance(self.min_contributors, bool) or not isinstance(self.min_contributors, int) \
                or self.min_contributors < 1:
            raise ConfigurationError(f"min_contributors must be a positive integer, not {self.min_contributors!r}")

    @property
    def central_std(self) -> float:
        """sigma = z*C: the noise standard deviation of a sum over `min_contributors` clients."""
        return self.noise_multiplier * self.clip_norm

    @property
    def std_per_client(self) -> float:
        """sigma / sqrt(n): what one client adds to each coordinate."""
        return self.central_std / math.sqrt(self.min_contributors)

    def add_to(self, vector: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """`vector` plus this client's share of the noise (a new float64 array)."""
        values = np.asarray(vector, dtype=np.float64).reshape(-1)
        if self.std_per_client == 0.0:
            return values.copy()
        generator = rng if rng is not None else secure_generator()
        return values + generator.normal(0.0, self.std_per_client, size=values.shape)


def expected_gaussian_norm(std: float, dimension: int) -> float:
    """E||x|| for x ~ N(0, std^2 I) in `dimension` numbers: std * sqrt(2) * Gamma((D+1)/2) / Gamma(D/2),
    exactly (a chi distribution's mean; a shade below std * sqrt(D))."""
    if dimension <= 0 or std == 0.0:
        return 0.0
    return std * math.sqrt(2.0) * math.exp(math.lgamma((dimension + 1) / 2.0) - math.lgamma(dimension / 2.0))


@dataclass(frozen=True)
class NoiseCheck:
    """The Gaussian noise in a cohort's average against the largest signal that average can carry.

    noise_norm    the exact expected L2 norm of the Gaussian noise in the average of `summands` updates of
                  `parameters` numbers (quantization's rounding adds a little more, not counted)
    signal_bound  C: an average of updates clipped to C has norm at most C
    Both are in the cohort average, before the coordinator's learning rates scale its step."""

    noise_norm: float
    signal_bound: float
    summands: int
    parameters: int
    std: float = 0.0  # the noise's standard deviation per number of the average

    @classmethod
    def of(cls, noise: DistributedNoise, parameters: int, summands: int) -> NoiseCheck:
        if summands < 1:
            raise ConfigurationError(f"an average needs at least one summand, not {summands}")
        # Every summand added std (z*C)/sqrt(n): the sum has std z*C*sqrt(s/n), the average that over s.
        std = noise.std_per_client * math.sqrt(summands) / summands
        return cls(expected_gaussian_norm(std, parameters), noise.clip_norm, summands, parameters, std)

    @property
    def noise_dominates(self) -> bool:
        return self.noise_norm > self.signal_bound

    def reason(self) -> str:
        """Why a release is withheld, in the words a person is shown."""
        return (f"its noise (expected norm {self.noise_norm:.3g} in the average of {self.summands} updates of "
                f"{self.parameters:,} numbers) would be larger than any signal it could carry (at most "
                f"{self.signal_bound:g}, the clip norm)")
