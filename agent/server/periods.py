"""Release periods: how the cohorts that trained on one release become the next release, and what that
costs in privacy.

A period belongs to the latest release v. It opens with the first cohort on v and lasts `release_period`
seconds; meanwhile cohorts on v form and run, up to `max_concurrent_rounds` at once. Each cohort's masked
inputs are unmasked into its own sum (`summed`), which is what the coordinator sees of it: every cohort
carries the full noise its own privacy claim needs, and is withheld on its own if that noise would drown
its signal (`NoiseCheck`). Once the period is over and no cohort on v is still forming or running, release
v+1 = v + release_step(sum of the cohorts' sums / their total summands) is signed, and the cohorts'
sums are dropped. After the period closes, a check-in opens no new cohort on v (it may still fill one that
is forming); it is refused with the expected time of the release, when devices come back to train on it.

Accounting: a device takes part in at most one summed cohort per period (`Coordinator.check_in` refuses a
second), so the cohorts of a period hold disjoint people: for each person the period is one Gaussian
mechanism (parallel composition), whichever cohort they were in. The coordinator's epsilon composes one
step per period (the smallest noise multiplier and the largest clamp probability among its summed cohorts),
not one per cohort; a period whose cohorts were all withheld after summing still counts (their sums were
computed here). A device's own ledger has one row per round it uploaded in, hence one per period: the same
count. Both use `accounting.privacy_spent`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.federation.accounting import PrivacySpent, privacy_spent
from agent.federation.clipping import NoiseCheck, expected_gaussian_norm
from agent.federation.quantize import dequantize_sum
from agent.federation.signing import Release
from agent.server import observability
from agent.server.cohort import RUNNING, RoundConfig, expected_end
from agent.server.release import build_release
from agent.server.settings import CoordinatorSettings
from agent.server.state import Transaction

_WAITING = (*RUNNING, "summed")  # a period's cohorts until its release


class SpentCache:
    """`spent` for a set of steps, remembered: the accountant takes milliseconds, and check-ins and /info ask
    often with the same steps."""

    def __init__(self) -> None:
        self._cache: dict[tuple, PrivacySpent] = {}

    def spent(self, tx: Transaction, target_delta: float,
              pending: tuple[str, float, float] | None = None) -> PrivacySpent:
        """The privacy spent over every period with a computed sum; `pending` (period, z, clamp probability):
        one more cohort's sum counted in, as if computed (its period's step at most, if it already has one)."""
        steps = {str(period): (float(z), float(p)) for period, z, p in tx.all(
            "select period, min(noise_multiplier), max(clamp_probability) from rounds where period is not null "
            "group by period")}
        if pending is not None:
            period, z, p = pending
            z0, p0 = steps.get(period, (z, p))
            steps[period] = (min(z, z0), max(p, p0))
        key = tuple(sorted(steps.values()))
        if key not in self._cache:
            if len(self._cache) >= 8:
                self._cache.clear()
            self._cache[key] = privacy_spent([z for z, _ in key], target_delta, [p for _, p in key])
        return self._cache[key]


def period_cohorts(tx: Transaction, version: int) -> list[tuple[Any, ...]]:
    """(round_id, state, created_at, deadline) of the cohorts on `version` still running or awaiting its release."""
    return tx.all(f"select round_id, state, created_at, deadline from rounds where base_version = ? "
                  f"and state in ({', '.join(repr(s) for s in _WAITING)}) order by round_id", [version])


def period_end(settings: CoordinatorSettings, cohorts: list[tuple[Any, ...]]) -> float | None:
    """When the period these cohorts are in closes to new cohorts (None: no period is open)."""
    return min(created for _, _, created, _ in cohorts) + settings.release_period if cohorts else None


def release_at(settings: CoordinatorSettings, cohorts: list[tuple[Any, ...]]) -> float | None:
    """When the period's release is expected: once it closed and its last running cohort ended at the latest."""
    end = period_end(settings, cohorts)
    if end is None:
        return None
    return max([end, *(expected_end(state, deadline, settings.stage_timeout) for _, state, _, deadline in cohorts
                       if state in RUNNING)])


def record_sum(tx: Transaction, round_id: str, config: RoundConfig) -> None:
    """The cohort's sum was computed: it counts in its period's privacy step."""
    tx.execute("update rounds set period = ?, noise_multiplier = ?, clamp_probability = ? where round_id = ?",
               [str(config.base_version), config.noise_multiplier, config.clamp_probability(), round_id])


def publish_if_due(tx: Transaction, signing_key: Ed25519PrivateKey, settings: CoordinatorSettings, latest: Release,
                   spent: SpentCache, now: float) -> int | None:
    """Sign the release of `latest`'s period if it is due (the caller holds the membership lock); its version,
    or None. The cohorts' sums go into it and are then dropped; release bodies older than the last
    `keep_releases` are deleted."""
    cohorts = period_cohorts(tx, latest.version)
    end = period_end(settings, cohorts)
    if end is None or now < end or any(state in RUNNING for _, state, _, _ in cohorts):
        return None
    summed = [round_id for round_id, state, _, _ in cohorts if state == "summed"]
    if not summed:
        return None
    total, summands, variance, configs = None, 0, 0.0, []
    for round_id in summed:  # in round id order, as every lock on several rounds is taken
        tx.lock_round(round_id)
        config_json, vector, count = tx.one("select config, sum_vector, summands from rounds where round_id = ?",
                                            [round_id])
        config = RoundConfig(**json.loads(config_json))
        count = int(count)
        part = dequantize_sum(np.frombuffer(bytes(vector), dtype="<u4").astype(np.uint32), config.quantization(),
                              count)
        total = part if total is None else total + part
        summands += count
        # Each summand added noise of std_per_client: the cohorts' noise adds up in the combined sum.
        variance += count * config.device_noise().std_per_client ** 2
        configs.append(config)
    std = math.sqrt(variance) / summands
    parameters = configs[0].parameters
    check = NoiseCheck(expected_gaussian_norm(std, parameters), settings.clip_norm, summands, parameters, std)
    version = latest.version + 1
    privacy = spent.spent(tx, settings.target_delta)  # every summed cohort of this period is already counted
    body = build_release(signing_key, settings, latest, configs, total / summands, summands, check, privacy, now)
    tx.execute("insert into releases (version, round_id, created_at, noise_multiplier, clamp_probability, epsilon,"
               " delta, body) values (?, ?, ?, ?, ?, ?, ?, ?)",
               [version, summed[0], now, min(c.noise_multiplier for c in configs),
                max(c.clamp_probability() for c in configs), privacy.epsilon, privacy.delta, body])
    tx.execute(f"update rounds set state = 'done', released_version = ?, sum_vector = null where round_id in "
               f"({', '.join('?' * len(summed))})", [version, *summed])
    tx.execute("delete from releases where version <= ?", [version - settings.keep_releases])
    observability.release_published(version, summed, summands)
    return version
