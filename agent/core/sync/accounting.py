"""Privacy accounting for released cohort sums, with Google's dp-accounting (RDP accountant).

Each released round is, for any one person in it, a Gaussian mechanism with noise multiplier z: the
person's clipped update has sensitivity C and the released sum carries noise of standard deviation at
least z*C (distributed DP, see `clipping`). No sampling amplification is claimed: the coordinator
cannot prove to anyone that cohorts are drawn at random, so every round a person joins counts in
full. Epsilon is reported at a target delta; the quantization clamp's failure probability p (see
`quantize`) is added on top, as delta' = delta + (1 + e^epsilon) * sum of p over the rounds.

The coordinator accounts over every round it released (a bound for anyone who took part in all of
them); a client accounts over the rounds it took part in, from its own ledger. Both use this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from dp_accounting import dp_event, rdp

from agent.core.sync.errors import ConfigurationError


@dataclass(frozen=True)
class PrivacySpent:
    epsilon: float
    delta: float  # the target delta plus the clamp term
    rounds: int


def privacy_spent(noise_multipliers: Sequence[float], target_delta: float,
                  clamp_failure_probabilities: Sequence[float] = ()) -> PrivacySpent:
    """(epsilon, delta') after composing one Gaussian mechanism per released round."""
    if not 0 < target_delta < 1:
        raise ConfigurationError(f"delta must be in (0, 1), not {target_delta!r}")
    if not noise_multipliers:
        return PrivacySpent(0.0, 0.0, 0)
    if any(not (math.isfinite(z) and z >= 0) for z in noise_multipliers):
        raise ConfigurationError("noise multipliers must be finite and >= 0")
    if any(z == 0 for z in noise_multipliers):
        return PrivacySpent(math.inf, target_delta, len(noise_multipliers))
    accountant = rdp.RdpAccountant()
    for z in noise_multipliers:
        accountant.compose(dp_event.GaussianDpEvent(z))
    epsilon = float(accountant.get_epsilon(target_delta))
    clamp = float(sum(clamp_failure_probabilities))
    extra = (1.0 + math.exp(min(epsilon, 700.0))) * clamp if clamp else 0.0
    return PrivacySpent(epsilon=epsilon, delta=target_delta + extra, rounds=len(noise_multipliers))
