"""What a finished round publishes: the next global adapter, built from the round's unmasked average, and
its signed metadata (`signing.sign_release`). The metadata carries what anyone holding the round's sum
needs to recompute the release (base + `shrinkage.release_step(average)`) and to check its noise figures.
Also the smallest cohort whose round publishes at all under the settings (`withhold_noisy`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.federation.accounting import device_noise
from agent.federation.clipping import DistributedNoise, NoiseCheck
from agent.federation.neighbourhood import plan_neighbourhood
from agent.federation.shrinkage import release_step
from agent.federation.signing import Release, sign_release
from agent.server.settings import CoordinatorSettings


def build_release(signing_key: Ed25519PrivateKey, settings: CoordinatorSettings, latest: Release,
                  config: Any, average: np.ndarray, summands: int, check: NoiseCheck, spent: Any,
                  now: float) -> bytes:
    """The signed body of release `latest.version + 1` after the round `config` (its `coordinator.RoundConfig`:
    not imported, the coordinator imports this module): `average` is the round's unmasked, dequantized
    average over its `summands` survivors, `check` its noise against the signal, `spent` the privacy
    accounting with this round included."""
    vector = latest.vector + release_step(average, latest.layout, check.std, server_rate=settings.server_learning_rate,
                                          item_rate=settings.item_learning_rate, shrink=settings.shrink_noise)
    return sign_release(signing_key, latest.version + 1, {
        "round_id": config.round_id, "base_version": latest.version, "created": now, "summands": summands,
        "cohort_size": config.cohort_size, "clip_norm": config.clip_norm,
        "noise_multiplier": config.noise_multiplier, "epsilon": spent.epsilon, "delta": spent.delta,
        "rounds": spent.rounds, "target_delta": config.target_delta,
        # the noise against the signal (`NoiseCheck`): a device can recompute it from these
        "min_contributors": config.min_contributors, "noise_norm": check.noise_norm, "signal_bound": check.signal_bound,
        # noise_norm counts the noise devices add under this floor; the epsilon counts only the
        # distributed share (z), less noise than that: the release is at least as private as it says.
        "max_round_epsilon": config.max_round_epsilon, "device_noise_std": config.device_noise().std_per_client,
        # with these, anyone holding the round's sum can check the release: base + shrinkage.release_step(sum)
        "server_learning_rate": settings.server_learning_rate, "shrink_noise": settings.shrink_noise,
        "item_learning_rate": settings.item_learning_rate, "noise_std": check.std}, latest.layout, vector)


def smallest_releasable_cohort(settings: CoordinatorSettings, parameters: int, limit: int = 10**7) -> int | None:
    """The fewest clients (at least min_cohort) whose completed round is not withheld; None if more than
    `limit`. The noise in a full round's average only falls as the cohort grows, so a bisection finds it."""

    def releases(n: int) -> bool:
        plan = plan_neighbourhood(n, max_dropout_fraction=settings.max_dropout_fraction,
                                  max_corrupt_fraction=settings.max_corrupt_fraction)
        noise = device_noise(DistributedNoise(settings.clip_norm, settings.noise_multiplier, plan.min_survivors),
                             settings.max_round_epsilon, settings.target_delta)
        return not (settings.withhold_noisy and NoiseCheck.of(noise, parameters, n).noise_dominates)

    low, high = settings.min_cohort, limit
    if releases(low) or not releases(high):
        return low if releases(low) else None
    while high - low > 1:  # releases(high) and not releases(low)
        middle = (low + high) // 2
        low, high = (low, middle) if releases(middle) else (middle, high)
    return high
