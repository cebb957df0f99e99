"""What a release period publishes (`periods`): the next global adapter, built from the combined unmasked
average of the period's cohorts, and its signed metadata (`signing.sign_release`). The metadata carries what
anyone holding the cohorts' sums needs to recompute the release (base + `shrinkage.release_step(average)`)
and to check its noise figures.
Also the smallest cohort whose round publishes at all under the settings (`withhold_noisy`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.federation.accounting import device_noise
from agent.federation.clipping import DistributedNoise, NoiseCheck
from agent.federation.neighbourhood import plan_neighbourhood
from agent.federation.shrinkage import release_step, shrinks_item_blocks
from agent.federation.signing import Release, sign_release
from agent.server.settings import CoordinatorSettings


def refines_prior(latest: Release) -> bool:
    """Whether the federation `latest` belongs to started from a public prior: release 1 says so, and every
    release after it carries that on. A release built before they did counts as refining one, so that its
    federation keeps the shrinkage it had then (every block)."""
    return bool(latest.metadata.get("prior", True))


def shrinks_items(settings: CoordinatorSettings, latest: Release) -> bool:
    """Whether the release after `latest` shrinks the item rows too (`shrinkage.shrinks_item_blocks`)."""
    return shrinks_item_blocks(settings.shrink_noise, refines_prior(latest))


def build_release(signing_key: Ed25519PrivateKey, settings: CoordinatorSettings, latest: Release,
                  configs: list[Any], average: np.ndarray, summands: int, check: NoiseCheck, spent: Any,
                  now: float) -> bytes:
    """The signed body of release `latest.version + 1` after the cohorts `configs` of its period (their
    `cohort.RoundConfig`s, in round id order): `average` is their combined unmasked, dequantized average over
    their `summands` survivors in all, `check` its noise against the signal, `spent` the privacy accounting
    with this period included (`periods`)."""
    item_blocks = shrinks_items(settings, latest)
    vector = latest.vector + release_step(average, latest.layout, check.std, server_rate=settings.server_learning_rate,
                                          item_rate=settings.item_learning_rate, shrink=settings.shrink_noise,
                                          item_blocks=item_blocks)
    first = configs[0]
    return sign_release(signing_key, latest.version + 1, {
        # `round_id` is the period's first cohort (a release without one is the starting point); `round_ids`
        # lists every cohort whose sum went into it.
        "round_id": first.round_id, "round_ids": [c.round_id for c in configs], "base_version": latest.version,
        "created": now, "summands": summands, "cohorts": len(configs),
        "cohort_size": max(c.cohort_size for c in configs), "clip_norm": first.clip_norm,
        "noise_multiplier": min(c.noise_multiplier for c in configs), "epsilon": spent.epsilon,
        "delta": spent.delta, "rounds": spent.rounds, "target_delta": first.target_delta,
        # the noise against the signal (`NoiseCheck`); min_contributors is the fewest any cohort's noise was
        # split over (recomputing the noise from it overstates it when cohorts differ); noise_std is exact
        "min_contributors": min(c.min_contributors for c in configs), "noise_norm": check.noise_norm,
        "signal_bound": check.signal_bound,
        # noise_norm counts the noise devices add under this floor; the epsilon counts only the
        # distributed share (z), less noise than that: the release is at least as private as it says.
        "max_round_epsilon": first.max_round_epsilon,
        "device_noise_std": max(c.device_noise().std_per_client for c in configs),
        # with these, anyone holding the cohorts' sums can check the release: base + shrinkage.release_step(average)
        "server_learning_rate": settings.server_learning_rate, "shrink_noise": settings.shrink_noise,
        "shrink_items": item_blocks, "prior": refines_prior(latest),
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
