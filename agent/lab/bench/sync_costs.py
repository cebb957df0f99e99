"""What one client's secure aggregation costs per round: time and bytes, measured on this machine.

`client_round_costs` runs everything one client does in a round for a cohort of a given size —
key generation, Shamir sharing, sealing and opening envelopes, clipping, noise, quantization,
masking, and the unmasking reply — against real neighbours' keys, and encodes the real wire
messages to count the bytes it sends. The other clients' own work is prepared outside the timers.
Times are CPU seconds of the measuring thread (`time.thread_time`): the work itself, which other jobs
on a shared machine do not inflate the way they inflate wall-clock time (every step here runs in the
calling thread). Plain data out, for `ownrec bench` to print."""

from __future__ import annotations

import secrets
import time

import numpy as np

from agent.federation import envelope, masking, protocol
from agent.federation.clipping import DistributedNoise
from agent.federation.keys import generate_keypair
from agent.federation.neighbourhood import NeighbourGraph, plan_neighbourhood
from agent.federation.quantize import QuantizationPlan, encode_update


def client_round_costs(parameter_count: int, cohort_size: int, *, clip_norm: float = 1.0,
                       noise_multiplier: float = 1.0, repeats: int = 3) -> dict:
    """Median seconds per stage and bytes sent by client 1 of `cohort_size`, for `parameter_count`
    shared parameters. Assumes every neighbour survives but reveals a share for each (worst case)."""
    plan = plan_neighbourhood(cohort_size)
    round_id = secrets.token_bytes(16)
    graph = NeighbourGraph.from_seed(plan, secrets.token_bytes(32), round_id)
    me = 1
    neighbours = graph.neighbours(me)
    # The neighbours' own key pairs and the envelopes they send to this client: not this client's work.
    peer_channels = {j: generate_keypair() for j in neighbours}
    peer_masks = {j: generate_keypair() for j in neighbours}
    noise = DistributedNoise(clip_norm, noise_multiplier, plan.min_survivors)
    quantization = QuantizationPlan.for_cohort(noise, cohort_size)
    delta = np.random.default_rng().normal(size=parameter_count)

    timings: dict[str, list[float]] = {"sharing": [], "opening": [], "masking": [], "unmasking": []}
    sent: dict[str, int] = {}
    for _ in range(max(1, repeats)):
        started = time.thread_time()
        channel, mask_keys, seed = generate_keypair(), generate_keypair(), masking.new_self_mask_seed()
        pairs = masking.share_secrets(mask_keys, seed, neighbours, plan)
        sealed = tuple(envelope.seal(pairs[j].to_plaintext(), round_id=round_id, sender=me, receiver=j,
                                     sender_channel=channel, receiver_public=peer_channels[j].public)
                       for j in neighbours)
        share_message = protocol.encode(protocol.ShareKeys(round_id, me, sealed))
        timings["sharing"].append(time.thread_time() - started)

        incoming = {}  # what each neighbour seals for this client (their work, not timed)
        for j in neighbours:
            peer_pairs = masking.share_secrets(peer_masks[j], masking.new_self_mask_seed(), graph.neighbours(j), plan)
            incoming[j] = envelope.seal(peer_pairs[me].to_plaintext(), round_id=round_id, sender=j, receiver=me,
                                        sender_channel=peer_channels[j], receiver_public=channel.public)
        started = time.thread_time()
        held = {j: masking.SharePair.from_plaintext(me, envelope.open_envelope(
                    incoming[j], round_id=round_id, receiver=me, receiver_channel=channel,
                    sender_public=peer_channels[j].public)) for j in neighbours}
        timings["opening"].append(time.thread_time() - started)

        started = time.thread_time()
        update = encode_update(delta, noise, quantization)
        masked = masking.mask_input(update.values, round_id=round_id, index=me, mask_keys=mask_keys,
                                    self_mask_seed=seed,
                                    neighbour_publics={j: peer_masks[j].public for j in neighbours})
        input_message = protocol.encode(protocol.MaskedInput(round_id, me, masked))
        timings["masking"].append(time.thread_time() - started)

        started = time.thread_time()
        survivors = set(range(1, cohort_size + 1))
        revealed = masking.shares_to_reveal(held, survivors, set(), plan)
        unmask_message = protocol.encode(protocol.UnmaskingShares(round_id, me, tuple(
            protocol.RevealedShare(owner, protocol.ShareKind.SELF_MASK_SEED, share.value)
            for owner, share in sorted(revealed.items()))))
        timings["unmasking"].append(time.thread_time() - started)
        advertise_message = protocol.encode(protocol.AdvertiseKeys(round_id, me, channel.public, mask_keys.public))
        sent = {"advertise_keys": len(advertise_message), "share_keys": len(share_message),
                "masked_input": len(input_message), "unmasking": len(unmask_message)}

    seconds = {stage: float(np.median(values)) for stage, values in timings.items()}
    total_bytes = sum(sent.values())
    return {
        "cohort_size": cohort_size,
        "parameter_count": parameter_count,
        "neighbours": len(neighbours),
        "threshold": plan.threshold,
        "seconds_per_stage": seconds,
        "client_seconds": sum(seconds.values()),
        "bytes_per_stage": sent,
        "bytes_sent": total_bytes,
        "bytes_per_parameter": total_bytes / parameter_count if parameter_count else float("inf"),
        "fixed_overhead_bytes": total_bytes - 4 * parameter_count,
    }
