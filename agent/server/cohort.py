"""One cohort's public configuration (`RoundConfig`), its states and its unmasked sum (`unmask_cohort`), as the coordinator and its release
periods (`periods`) both read them.

States, in order: forming -> advertise -> share -> masked -> unmask -> summed -> done; `aborted` from any
before summed; `withheld` as the cohort forms or once summed. `summed`: the cohort's sum was computed (its
masked inputs and shares deleted) and waits for its period's release; `done`: that release is published.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from agent.federation import protocol
from agent.federation.accounting import device_noise
from agent.federation.clipping import DistributedNoise
from agent.federation.masking import recover_mask_secret, unmask_sum
from agent.federation.neighbourhood import NeighbourGraph, NeighbourhoodPlan, ThreatModel
from agent.federation.quantize import QuantizationPlan
from agent.federation.shamir import Share, reconstruct_secret
from agent.server.state import Transaction

STATES = ("forming", "advertise", "share", "masked", "unmask", "summed", "done")
ACTIVE = ("advertise", "share", "masked", "unmask")
RUNNING = ("forming", *ACTIVE)  # cohorts that may still add a sum to their period
FINISHED = ("done", "withheld", "aborted")  # nothing more happens to these (a summed cohort waits for its release)
STAGE_OF_STATE = {"advertise": protocol.Stage.ADVERTISE_KEYS, "share": protocol.Stage.SHARE_KEYS,
                  "masked": protocol.Stage.MASKED_INPUT, "unmask": protocol.Stage.UNMASKING}


def expected_end(state: str, deadline: float, stage_timeout: float) -> float:
    """When a running cohort is over at the latest, if each stage takes its full time (a forming one: once its
    check-in window closes, then four stages)."""
    later_stages = {"forming": 4, "advertise": 3, "share": 2, "masked": 1, "unmask": 0}.get(state, 0)
    return deadline + later_stages * stage_timeout


@dataclass(frozen=True)
class RoundConfig:
    """Everything public about a formed round; sent to its participants and stored with it."""

    round_id: str
    cohort_size: int
    degree: int
    threshold: int
    max_dropouts: int
    max_corrupt: int
    graph_seed: str
    clip_norm: float
    noise_multiplier: float
    min_contributors: int
    clamp_bound: float
    scale: float
    max_summands: int
    parameters: int
    layout_digest: str
    base_version: int
    target_delta: float
    epsilon_after: float   # the most any member will have spent (per device: `periods`) if this cohort is summed
    delta_after: float
    stage_timeout: float
    max_round_epsilon: float | None = None  # the device floor the quantization and noise figures make room for

    def plan(self) -> NeighbourhoodPlan:
        return NeighbourhoodPlan(cohort_size=self.cohort_size, degree=self.degree, threshold=self.threshold,
                                 max_dropouts=self.max_dropouts, max_corrupt=self.max_corrupt,
                                 threat_model=ThreatModel.CURIOUS_SERVER)

    def noise(self) -> DistributedNoise:
        """The distributed noise the accounting counts: z*C/sqrt(n) from each of at least n honest devices."""
        return DistributedNoise(self.clip_norm, self.noise_multiplier, self.min_contributors)

    def device_noise(self) -> DistributedNoise:
        """The most noise a device adds in this round: its share raised to the announced floor."""
        return device_noise(self.noise(), self.max_round_epsilon, self.target_delta)

    def quantization(self) -> QuantizationPlan:
        return QuantizationPlan(clamp_bound=self.clamp_bound, scale=self.scale, max_summands=self.max_summands)

    def clamp_probability(self) -> float:
        """The chance the quantization clamp cuts a device's noised update (added to the accounting's delta)."""
        return self.quantization().clamp_failure_probability(self.parameters, self.device_noise())

    def graph(self) -> NeighbourGraph:
        return NeighbourGraph.from_seed(self.plan(), bytes.fromhex(self.graph_seed), bytes.fromhex(self.round_id))


def unmask_cohort(tx: Transaction, round_id: str, config: RoundConfig) -> tuple[np.ndarray, set[int]]:
    """The cohort's quantized sum (mod 2^32) and its survivors: the survivors' self-mask seeds and the dropped
    members' mask keys rebuilt from the revealed shares, the masks removed. SyncError or ShamirError if the
    shares or inputs do not add up."""
    rows = tx.all("select idx, stage, mask_public from participants where round_id = ?", [round_id])
    mask_publics = {int(idx): bytes(pk) for idx, stage, pk in rows if stage >= 2}
    survivors = {int(idx) for idx, stage, _ in rows if stage >= 3}
    dropped = set(mask_publics) - survivors
    graph, plan = config.graph(), config.plan()
    shares: dict[tuple[int, int], list[Share]] = defaultdict(list)
    for holder, owner, kind, value in tx.all(
            "select holder, owner, kind, value from revealed_shares where round_id = ?", [round_id]):
        shares[(owner, kind)].append(Share.from_value_bytes(int(holder), bytes(value)))
    seeds = {u: reconstruct_secret(shares[(u, protocol.ShareKind.SELF_MASK_SEED)], plan.threshold) for u in survivors}
    neighbours_of = {d: graph.neighbours(d) for d in dropped}
    dropped_keys = {d: recover_mask_secret(shares[(d, protocol.ShareKind.MASK_KEY)], plan.threshold, mask_publics[d])
                    for d in dropped if survivors & set(neighbours_of[d])}
    inputs = {int(idx): np.frombuffer(bytes(vector), dtype="<u4").astype(np.uint32) for idx, vector in tx.all(
        "select idx, vector from masked_inputs where round_id = ?", [round_id]) if int(idx) in survivors}
    total = unmask_sum(inputs, round_id=bytes.fromhex(round_id), mask_publics=mask_publics,
                       neighbours_of=neighbours_of, self_mask_seeds=seeds, dropped_mask_secrets=dropped_keys)
    return total, survivors
