"""What a device accepts of a round (`ClientPolicy`): the round's configuration checked against it before any
update is computed (`check_round_config`), and the noise the device adds under its privacy floor
(`floor_noise`). Used by the client (`client.RoundRunner`) and by simulations that run the device's part."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.core.sync.parameters import GlobalTrainingSettings
from agent.federation.clipping import DistributedNoise
from agent.federation.errors import PolicyViolation
from agent.federation.neighbourhood import NeighbourhoodPlan, ThreatModel, plan_neighbourhood
from agent.federation.quantize import TAIL_SIGMAS, QuantizationPlan
from agent.federation.signing import Release


@dataclass(frozen=True)
class ClientPolicy:
    min_noise_multiplier: float = 0.5
    min_cohort: int = 10  # the app's setting sync.min_cohort
    # The privacy floor (the app's sync.max_round_epsilon): this device adds enough noise of its own that a
    # round costs it at most this epsilon even if every other member of its cohort were fake. None: no floor.
    max_round_epsilon: float | None = 10.0
    max_clip_norm: float = 10.0
    max_dropout_fraction: float = 0.3   # must match the coordinator's: the client recomputes the plan
    max_corrupt_fraction: float = 0.05
    epsilon_budget: float | None = None  # refuse a round that would take this client's own epsilon above it
    round_timeout: float = 900.0
    training: GlobalTrainingSettings = field(default_factory=GlobalTrainingSettings)



def check_round_config(config: dict[str, Any], policy: ClientPolicy, release: Release) -> tuple[
        NeighbourhoodPlan, DistributedNoise, QuantizationPlan]:
    """The round's plan, noise and quantization, if they meet this client's policy; PolicyViolation if not."""
    n = int(config["cohort_size"])
    if config["layout_digest"] != release.layout.digest() or int(config["parameters"]) != release.layout.size:
        raise PolicyViolation("the round's shared layout is not the one in the signed release")
    if int(config["base_version"]) != release.version:
        raise PolicyViolation(f"the round starts from version {config['base_version']}, this client trained on "
                              f"{release.version}")
    if n < policy.min_cohort:
        raise PolicyViolation(f"a cohort of {n} is below this client's minimum of {policy.min_cohort}")
    if float(config["noise_multiplier"]) < policy.min_noise_multiplier:
        raise PolicyViolation(f"noise multiplier {config['noise_multiplier']} is below this client's minimum "
                              f"{policy.min_noise_multiplier}")
    if not 0 < float(config["clip_norm"]) <= policy.max_clip_norm:
        raise PolicyViolation(f"clip norm {config['clip_norm']} is outside (0, {policy.max_clip_norm}]")
    plan = plan_neighbourhood(n, max_dropout_fraction=policy.max_dropout_fraction,
                              max_corrupt_fraction=policy.max_corrupt_fraction)
    offered = NeighbourhoodPlan(cohort_size=n, degree=int(config["degree"]), threshold=int(config["threshold"]),
                                max_dropouts=int(config["max_dropouts"]), max_corrupt=int(config["max_corrupt"]),
                                threat_model=ThreatModel.CURIOUS_SERVER)
    if offered != plan:
        raise PolicyViolation(f"the round's neighbourhood (degree {offered.degree}, threshold {offered.threshold}) "
                              f"is not the one this client computes (degree {plan.degree}, threshold {plan.threshold})")
    if int(config["min_contributors"]) != plan.min_survivors:
        raise PolicyViolation("the noise must be split over exactly the minimum number of survivors")
    from agent.federation.accounting import device_noise  # dp-accounting takes ~1.5 s to import: only for rounds

    noise = DistributedNoise(float(config["clip_norm"]), float(config["noise_multiplier"]), plan.min_survivors)
    room = config.get("max_round_epsilon")  # the device floor the coordinator made room for
    quantization = QuantizationPlan.for_cohort(
        device_noise(noise, None if room is None else float(room), float(config["target_delta"])), n)
    if (quantization.clamp_bound, quantization.scale, quantization.max_summands) != (
            float(config["clamp_bound"]), float(config["scale"]), int(config["max_summands"])):
        raise PolicyViolation("the round's quantization plan is not the no-wrap plan for its cohort")
    return plan, noise, quantization


def floor_noise(noise: DistributedNoise, quantization: QuantizationPlan, policy: ClientPolicy,
                target_delta: float) -> DistributedNoise:
    """The noise this device adds in a round: its distributed share, raised to its privacy floor
    (`accounting.device_noise`); PolicyViolation if the round's quantization has no room for it (its clamp
    would cut this device's noise more often than the plan's bound allows)."""
    from agent.federation.accounting import device_noise, gaussian_epsilon

    own = device_noise(noise, policy.max_round_epsilon, target_delta)
    room = (quantization.clamp_bound - noise.clip_norm) / TAIL_SIGMAS  # the per-device std the plan provides for
    if own.std_per_client > room * (1.0 + 1e-9):  # only with a floor: the room is at least the share
        raise PolicyViolation(
            f"keeping this round within epsilon {policy.max_round_epsilon:g} for this device even if every other "
            f"member were fake (sync.max_round_epsilon) needs noise of std {own.std_per_client:.4g} per number; the "
            f"coordinator made room for {room:.4g} (a floor of epsilon "
            f"{gaussian_epsilon(room / noise.clip_norm, target_delta):.3g} per round)")
    return own
