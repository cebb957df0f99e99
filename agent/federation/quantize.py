"""Quantization of a clipped, noised update to integers mod 2^32, and back.

Secure aggregation adds masks in the ring Z_{2^32}, so every update must become a vector of uint32
(4 bytes per parameter on the wire). The sum of the cohort's vectors is only meaningful if it never
wraps around: this module chooses the scale so that it cannot, and refuses plans where it could.

Headroom math (m = most vectors ever summed, C = clip norm, s = noise std per client):
1. After clipping, every coordinate lies in [-C, C]. Noise is unbounded, so each noised coordinate is
   clamped to [-B, B] with B = C + t*s (t = `tail_sigmas`, default 12). The clamp changes a
   coordinate only when the noise exceeds t*s, probability <= erfc(t/sqrt 2) (3.6e-33 for t=12);
   over d coordinates and m clients the released sum differs from the unclamped one with probability
   at most p = d*m*erfc(t/sqrt 2), which an accountant adds to delta (delta' = delta + (1+e^eps)*p).
2. Each coordinate becomes the integer q = floor(x*S) + Bernoulli(frac(x*S)) (unbiased stochastic
   rounding: E[q] = x*S), so |q| <= ceil(B*S). With L = floor((2^31 - 1) / m) and S = (L-1)/B,
   |q| <= L; quantize() also clamps q to [-L, L], so the bound holds exactly in integers.
3. Any sum of at most m such integers lies in [-(2^31 - 1), 2^31 - 1], inside the centred range
   [-2^31, 2^31) of Z_{2^32}: reading residues >= 2^31 as negative (two's-complement style) recovers
   the true integer sum exactly. Dividing by S gives the float sum, with a rounding error of at most
   m/S per coordinate (variance <= m/(4 S^2), zero mean).
A plan with fewer than `MIN_LEVELS` integer steps across C is refused as too coarse: the cohort is
too large for 32-bit aggregation at that clip norm.

Limit: stochastic rounding happens after the noise, so its (tiny, zero-mean) error is not covered by
the Gaussian mechanism's analysis; the formal alternative is discrete noise on pre-rounded vectors
(the distributed discrete Gaussian), not implemented here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.federation.clipping import DistributedNoise, clip_to_norm, secure_generator
from agent.federation.errors import QuantizationError

MODULUS = 1 << 32
HALF_MODULUS = 1 << 31
TAIL_SIGMAS = 12.0
# A plan must resolve the clip norm into at least this many integer steps.
MIN_LEVELS = 1 << 10


@dataclass(frozen=True)
class QuantizationPlan:
    """How floats become integers mod 2^32 for one round; every client and the server share it.

    clamp_bound   B: each coordinate is clamped to [-B, B] before scaling
    scale         S: integer steps per unit
    max_summands  m: the most vectors that may be summed (the cohort size)
    """

    clamp_bound: float
    scale: float
    max_summands: int

    def __post_init__(self) -> None:
        if isinstance(self.max_summands, bool) or not isinstance(self.max_summands, int) \
                or not 1 <= self.max_summands <= HALF_MODULUS - 1:
            raise QuantizationError(f"max_summands must be an integer in 1..2^31-1, not {self.max_summands!r}")
        for name in ("clamp_bound", "scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise QuantizationError(f"{name} must be a positive finite number, not {value!r}")
        largest = math.ceil(self.clamp_bound * self.scale)
        if largest * self.max_summands > HALF_MODULUS - 1:
            raise QuantizationError(
                f"the sum of {self.max_summands} vectors could wrap mod 2^32: each coordinate can reach "
                f"{largest} steps, and {largest} x {self.max_summands} > 2^31 - 1; lower the scale or the cohort")

    @classmethod
    def for_cohort(cls, noise: DistributedNoise, max_summands: int, *,
                   tail_sigmas: float = TAIL_SIGMAS) -> QuantizationPlan:
        """The finest plan for up to `max_summands` clients adding `noise` (see the module's math)."""
        if not (math.isfinite(tail_sigmas) and tail_sigmas > 0):
            raise QuantizationError(f"tail_sigmas must be positive, not {tail_sigmas!r}")
        if isinstance(max_summands, bool) or not isinstance(max_summands, int) or max_summands < 1:
            raise QuantizationError(f"max_summands must be a positive integer, not {max_summands!r}")
        if max_summands < noise.min_contributors:
            raise QuantizationError(
                f"max_summands ({max_summands}) is below the noise's min_contributors ({noise.min_contributors})")
        clamp_bound = noise.clip_norm + tail_sigmas * noise.std_per_client
        per_client_limit = (HALF_MODULUS - 1) // max_summands
        scale = (per_client_limit - 1) / clamp_bound
        if per_client_limit < 2 or scale * noise.clip_norm < MIN_LEVELS:
            raise QuantizationError(
                f"{max_summands} summands leave {per_client_limit} integer steps per client, fewer than "
                f"{MIN_LEVELS} across the clip norm: too coarse for 32-bit aggregation; use a smaller cohort")
        return cls(clamp_bound=clamp_bound, scale=scale, max_summands=max_summands)

    @property
    def per_client_limit(self) -> int:
        """L: the largest magnitude one client's integer may take (the no-wrap budget per summand)."""
        return (HALF_MODULUS - 1) // self.max_summands

    @property
    def step(self) -> float:
        """The float value of one integer step (1/S)."""
        return 1.0 / self.scale

    def clamp_failure_probability(self, parameter_count: int, noise: DistributedNoise) -> float:
        """p = d*m*erfc(t/sqrt 2): a bound on the chance that any clamp changed a released sum."""
        if noise.std_per_client == 0.0:
            return 0.0
        tail = (self.clamp_bound - noise.clip_norm) / noise.std_per_client
        return parameter_count * self.max_summands * math.erfc(tail / math.sqrt(2.0))


@dataclass(frozen=True)
class QuantizedUpdate:
    """One client's update ready for masking: uint32 values and the norm it had before clipping."""

    values: np.ndarray
    pre_clip_norm: float


def quantize(vector: np.ndarray, plan: QuantizationPlan, rng: np.random.Generator | None = None) -> np.ndarray:
    """Clamp to [-B, B], scale by S, round stochastically (unbiased), and reduce mod 2^32 (uint32)."""
    values = np.asarray(vector, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise QuantizationError("the vector holds NaN or infinite values")
    generator = rng if rng is not None else secure_generator()
    scaled = np.clip(values, -plan.clamp_bound, plan.clamp_bound) * plan.scale
    floor = np.floor(scaled)
    rounded = floor + (generator.random(scaled.shape) < (scaled - floor))
    limit = plan.per_client_limit
    integers = np.clip(rounded.astype(np.int64), -limit, limit)  # exact no-wrap guarantee (never binds)
    return np.mod(integers, MODULUS).astype(np.uint32)


def centre(residues: np.ndarray) -> np.ndarray:
    """Residues mod 2^32 as signed int64 in [-2^31, 2^31) (two's-complement-style reading)."""
    values = np.asarray(residues, dtype=np.uint32).astype(np.int64)
    return np.where(values >= HALF_MODULUS, values - MODULUS, values)


def dequantize_sum(total: np.ndarray, plan: QuantizationPlan, summands: int) -> np.ndarray:
    """The float sum of `summands` quantized vectors, from their sum mod 2^32."""
    if isinstance(summands, bool) or not isinstance(summands, int) or not 1 <= summands <= plan.max_summands:
        raise QuantizationError(
            f"a sum of {summands!r} vectors is outside this plan's 1..{plan.max_summands}: it could have wrapped")
    return centre(total) / plan.scale


def encode_update(delta: np.ndarray, noise: DistributedNoise, plan: QuantizationPlan,
                  rng: np.random.Generator | None = None) -> QuantizedUpdate:
    """The client's whole numeric pipeline, in the one correct order: clip, noise, quantize."""
    generator = rng if rng is not None else secure_generator()
    clipped, pre_clip_norm = clip_to_norm(delta, noise.clip_norm)
    noised = noise.add_to(clipped, generator)
    return QuantizedUpdate(values=quantize(noised, plan, generator), pre_clip_norm=pre_clip_norm)
