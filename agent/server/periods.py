"""Release periods: how the cohorts that trained on one release become the next release, and what that
costs in privacy.

A period belongs to the latest release v. It opens with the first cohort on v and lasts `release_period`
seconds; meanwhile cohorts on v form and run, up to `max_concurrent_rounds` at once. Each cohort's masked
inputs are unmasked into its own sum (`summed`), which is what the coordinator sees of it: every cohort
carries the full noise its own privacy claim needs. What is released is the period's combined average, whose
noise falls as cohorts are added: so the noise check (`NoiseCheck`, `withhold_noisy`) is the period's
(`period_check`): past its time, a period whose summed cohorts' average would still be withheld stays open
for more cohorts (`waits_for_more`), at no further privacy cost. A period of 0 s thus releases as soon as
its cohorts carry more signal than noise: one cohort, if it can alone. Once the period is over (`closed`)
and no cohort on v is still forming or running, release v+1 = v + release_step(sum of the cohorts' sums / their total
summands) is signed, and the cohorts' sums are dropped. After the period closes, a check-in opens no new
cohort on v (it may still fill one that is forming); it is refused with the expected time of the release,
when devices come back to train on it.

Accounting: a device takes part in at most one summed cohort per period (`Coordinator.check_in` refuses a
second), so the cohorts of a period hold disjoint people: for each person the period is one Gaussian
mechanism (parallel composition), whichever cohort they were in. A person whose update is in no cohort of a
period spends nothing on it: their data is on their device alone and is not in that period's sums. So the
coordinator counts per device (`SpentCache.device_spent`, from the `device_steps` that `record_sum` writes):
one step for each period in which a cohort summed its update, a period whose cohorts were all withheld after summing included (their sums were computed
here). The budget is per device: a check-in that would take the device above it is refused, and the
federation goes on with the others. A release states the most any device has spent (`most_spent`). A
device's own ledger has one row per round it uploaded in, hence one per period: the same count. Both use
`accounting.privacy_spent`.
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
    """The privacy each device has spent (`device_spent`: one step per period its update was summed in) and
    the most any device has (`most_spent`), remembered: the accountant takes milliseconds, and check-ins and
    /info ask often with the same steps."""

    def __init__(self) -> None:
        self._cache: dict[tuple, PrivacySpent] = {}
        self._most: tuple[Any, tuple[PrivacySpent, int]] | None = None

    def of(self, steps: Any, target_delta: float) -> PrivacySpent:
        """`accounting.privacy_spent` of these (noise multiplier, clamp probability) steps."""
        key = (tuple(sorted(steps)), target_delta)
        if key not in self._cache:
            if len(self._cache) >= 64:
                self._cache.clear()
            self._cache[key] = privacy_spent([z for z, _ in key[0]], target_delta, [p for _, p in key[0]])
        return self._cache[key]

    def device_spent(self, tx: Transaction, target_delta: float, device: str,
                     pending: tuple[str, float, float] | None = None) -> tuple[PrivacySpent, PrivacySpent]:
        """What `device` has spent (a step for each period in which a cohort summed its update: its masked
        input was in), and that with `pending` (period, z, clamp probability) counted in: one more cohort's
        sum, as if computed (its period's step at most, if it already has one). One read for both."""
        steps = {str(period): (float(z), float(p)) for period, z, p in tx.all(
            "select period, noise_multiplier, clamp_probability from device_steps where device_id = ?", [device])}
        spent = self.of(steps.values(), target_delta)
        if pending is None:
            return spent, spent
        period, z, p = pending
        z0, p0 = steps.get(period, (z, p))
        return spent, self.of({**steps, period: (min(z, z0), max(p, p0))}.values(), target_delta)

    def most_spent(self, tx: Transaction, target_delta: float, budget: float,
                   next_step: tuple[float, float]) -> tuple[PrivacySpent, int]:
        """The most any device has spent, and how many devices `next_step` would take above `budget`
        (recomputed only when a cohort has been summed since the last call)."""
        marker = (tx.one("select count(*) from rounds where period is not null")[0], target_delta, budget, next_step)
        if self._most is None or self._most[0] != marker:
            patterns = {tuple(tuple(step) for step in json.loads(steps)): int(count) for steps, count in tx.all(
                "select steps, count(*) from device_privacy group by steps")}
            most = max((self.of(pattern, target_delta) for pattern in patterns), key=lambda spent: spent.epsilon,
                       default=privacy_spent([], target_delta))
            at_budget = sum(count for pattern, count in patterns.items()
                            if self.of((*pattern, next_step), target_delta).epsilon > budget)
            self._most = (marker, (most, at_budget))
        return self._most[1]


def count_steps(tx: Transaction, steps: list[tuple[str, str, float, float]]) -> None:
    """Add (device, period, z, clamp probability) privacy steps: a period a device already has keeps its
    smaller z and larger clamp probability (the costlier step); each device's row of all its steps is
    rewritten."""
    tx.executemany(
        "insert into device_steps (device_id, period, noise_multiplier, clamp_probability) values (?, ?, ?, ?) "
        "on conflict (device_id, period) do update set noise_multiplier = case when excluded.noise_multiplier < "
        "device_steps.noise_multiplier then excluded.noise_multiplier else device_steps.noise_multiplier end, "
        "clamp_probability = case when excluded.clamp_probability > device_steps.clamp_probability then "
        "excluded.clamp_probability else device_steps.clamp_probability end", steps)
    devices = sorted({device for device, *_ in steps})
    for start in range(0, len(devices), 500):
        chunk = devices[start:start + 500]
        by_device: dict[str, list[tuple[float, float]]] = {device: [] for device in chunk}
        for device, z, p in tx.all("select device_id, noise_multiplier, clamp_probability from device_steps "
                                   f"where device_id in ({', '.join('?' * len(chunk))})", chunk):
            by_device[device].append((float(z), float(p)))
        tx.executemany("insert into device_privacy (device_id, steps) values (?, ?) on conflict (device_id) "
                       "do update set steps = excluded.steps",
                       [(device, json.dumps(sorted(each))) for device, each in by_device.items()])


def count_earlier_steps(tx: Transaction) -> None:
    """A coordinator whose cohorts were summed before privacy was kept per device: count them in once."""
    if tx.one("select 1 from device_steps limit 1") is None:
        count_steps(tx, [(str(device), str(period), float(z), float(p)) for device, period, z, p in tx.all(
            "select p.device_id, r.period, min(r.noise_multiplier), max(r.clamp_probability) from participants p "
            "join rounds r on r.round_id = p.round_id where p.stage >= 3 and r.period is not null "
            "group by p.device_id, r.period")])


def period_cohorts(tx: Transaction, version: int) -> list[tuple[Any, ...]]:
    """(round_id, state, created_at, deadline) of the cohorts on `version` still running or awaiting its release."""
    return tx.all(f"select round_id, state, created_at, deadline from rounds where base_version = ? "
                  f"and state in ({', '.join(repr(s) for s in _WAITING)}) order by round_id", [version])


def period_end(settings: CoordinatorSettings, cohorts: list[tuple[Any, ...]]) -> float | None:
    """When the period these cohorts are in is due to close to new cohorts (None: no period is open); with a
    `release_period`, it closes then only if its release would not be withheld (`closed`)."""
    return min(created for _, _, created, _ in cohorts) + settings.release_period if cohorts else None


def period_check(tx: Transaction, cohorts: list[tuple[Any, ...]]) -> NoiseCheck | None:
    """The noise against the signal in the combined average of the period's summed cohorts (None: none yet).
    Each summand added its cohort's noise share: the shares add up in the combined sum."""
    summed = [round_id for round_id, state, _, _ in cohorts if state == "summed"]
    if not summed:
        return None
    known = {round_id: _SUMMED[round_id] for round_id in summed if round_id in _SUMMED}
    unknown = [round_id for round_id in summed if round_id not in known]
    for start in range(0, len(unknown), 500):
        chunk = unknown[start:start + 500]
        for round_id, count, config_json in tx.all(f"select round_id, summands, config from rounds where round_id "
                                                   f"in ({', '.join('?' * len(chunk))})", chunk):
            known[round_id] = _remember_sum(round_id, int(count), config_json)
    summands, variance = 0, 0.0
    for round_id in summed:
        count, std, clip_norm, parameters = known[round_id]
        summands += count
        variance += count * std ** 2
    std = math.sqrt(variance) / summands
    return NoiseCheck(expected_gaussian_norm(std, parameters), clip_norm, summands, parameters, std)


# round id -> (summands, the noise std each added, C, parameters) of a summed cohort: fixed once it is summed,
# and asked for at every check-in and status while its period waits (hundreds of cohorts in a large one).
_SUMMED: dict[str, tuple[int, float, float, int]] = {}


def _remember_sum(round_id: str, summands: int, config_json: str) -> tuple[int, float, float, int]:
    if len(_SUMMED) >= 65_536:
        _SUMMED.clear()
    config = RoundConfig(**json.loads(config_json))
    _SUMMED[round_id] = (summands, config.device_noise().std_per_client, config.clip_norm, config.parameters)
    return _SUMMED[round_id]


def waits_for_more(tx: Transaction, settings: CoordinatorSettings, cohorts: list[tuple[Any, ...]]) -> bool:
    """Whether a period stays open past its end: its summed cohorts' combined average would be withheld
    (`withhold_noisy`), so more cohorts may still join it. Privacy is spent per period, not per cohort: a
    period that gathers more updates costs no device more, and its average carries less noise."""
    if not settings.withhold_noisy:
        return False
    check = period_check(tx, cohorts)
    return check is None or check.noise_dominates


def closed(tx: Transaction, settings: CoordinatorSettings, cohorts: list[tuple[Any, ...]], now: float) -> bool:
    """Whether the period opens no more cohorts: its time is over and it does not wait for more (`waits_for_more`)."""
    end = period_end(settings, cohorts)
    return end is not None and now >= end and not waits_for_more(tx, settings, cohorts)


def summing_pace_wait(tx: Transaction, cohorts: list[tuple[Any, ...]], needed: int | None, now: float) -> float | None:
    """For a period that waits for more cohorts (`waits_for_more`): the seconds until it has `needed` summed
    updates, at the pace its updates have been summed since it opened. None: nothing summed yet, or no
    number of updates is enough."""
    check = period_check(tx, cohorts)
    if check is None or needed is None or check.summands >= needed:
        return None
    opened = min(created for _, _, created, _ in cohorts)
    return (needed - check.summands) * max(now - opened, 1.0) / check.summands


def release_at(tx: Transaction, settings: CoordinatorSettings, cohorts: list[tuple[Any, ...]],
               now: float) -> float | None:
    """When the period's release is expected: once it closed and its last running cohort ended at the latest.
    None: no period is open, or it is over but waits for more cohorts (no time can be promised)."""
    end = period_end(settings, cohorts)
    if end is None or (now >= end and waits_for_more(tx, settings, cohorts)):
        return None
    return max([end, *(expected_end(state, deadline, settings.stage_timeout) for _, state, _, deadline in cohorts
                       if state in RUNNING)])


def record_sum(tx: Transaction, round_id: str, config: RoundConfig) -> None:
    """The cohort's sum was computed: it counts in its period's privacy step."""
    period, z, p = str(config.base_version), config.noise_multiplier, config.clamp_probability()
    tx.execute("update rounds set period = ?, noise_multiplier = ?, clamp_probability = ? where round_id = ?",
               [period, z, p, round_id])
    count_steps(tx, [(device, period, z, p) for (device,) in tx.all(
        "select device_id from participants where round_id = ? and stage >= 3", [round_id])])


def publish_if_due(tx: Transaction, signing_key: Ed25519PrivateKey, settings: CoordinatorSettings, latest: Release,
                   spent: SpentCache, now: float) -> int | None:
    """Sign the release of `latest`'s period if it is due (the caller holds the membership lock); its version,
    or None. The cohorts' sums go into it and are then dropped; release bodies older than the last
    `keep_releases` are deleted."""
    cohorts = period_cohorts(tx, latest.version)
    if not closed(tx, settings, cohorts, now) or any(state in RUNNING for _, state, _, _ in cohorts):
        return None
    summed = [round_id for round_id, state, _, _ in cohorts if state == "summed"]
    if not summed:
        return None
    total, summands, configs = None, 0, []
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
        configs.append(config)
    check = period_check(tx, cohorts)
    version = latest.version + 1
    # Every summed cohort of this period is already counted in.
    privacy, _ = spent.most_spent(tx, settings.target_delta, settings.epsilon_budget,
                                  (settings.noise_multiplier, 0.0))
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
