"""One client's side of one secure-aggregation round, stage by stage, with no transport.

`ClientRound` holds the round's secrets (this round's channel and masking keys, the self-mask seed, the
shares received) and turns each of the coordinator's answers into the next message to upload:

    advertise()                      stage 1: this round's public keys
    share(neighbour_keys)            stage 2: Shamir shares of both secrets, sealed for each neighbour
    masked_input(envelopes, delta)   stage 3: open the neighbours' envelopes; clip, noise, quantize, mask
    unmasking(survivors)             stage 4: one share per neighbour, never both secrets of one client

The arguments are the coordinator's answers as plain data (the JSON objects of `/neighbour-keys`,
`/envelopes` and `/survivors`). `client.RoundRunner` carries the messages over HTTPS; the evaluation's
in-process federation (`agent.lab.evaluation.simulation`) hands them to the coordinator directly. Both run this
code, so what is measured is what runs on a person's device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.federation import envelope, masking, protocol
from agent.federation.clipping import DistributedNoise
from agent.federation.errors import EnvelopeError, PolicyViolation, SyncError
from agent.federation.keys import generate_keypair
from agent.federation.neighbourhood import NeighbourGraph, NeighbourhoodPlan
from agent.federation.quantize import QuantizationPlan, encode_update


class ClientRound:
    """This client's secrets and progress in one round (participant `index` of round `round_id`)."""

    def __init__(self, round_id: str, index: int, graph_seed: bytes, plan: NeighbourhoodPlan,
                 noise: DistributedNoise, quantization: QuantizationPlan,
                 rng: np.random.Generator | None = None) -> None:
        self.round_id, self.index = round_id, index
        self.round_bytes = bytes.fromhex(round_id)
        self.plan, self.noise, self.quantization = plan, noise, quantization
        self.rng = rng  # None: noise and rounding from the OS CSPRNG (tests and simulations pass a seeded one)
        self.neighbours = set(NeighbourGraph.from_seed(plan, graph_seed, self.round_bytes).neighbours(index))
        self.channel, self.mask_keys = generate_keypair(), generate_keypair()
        self.self_seed = masking.new_self_mask_seed()
        self.keys: dict[int, tuple[bytes, bytes]] = {}      # neighbour -> (channel public, mask public)
        self.held: dict[int, masking.SharePair] = {}        # neighbour -> the shares it gave this client
        self.refused_envelopes: list[int] = []
        self.pre_clip_norm = float("nan")

    def advertise(self) -> protocol.AdvertiseKeys:
        return protocol.AdvertiseKeys(self.round_bytes, self.index, self.channel.public, self.mask_keys.public)

    def share(self, neighbour_keys: dict[str, Any]) -> protocol.ShareKeys:
        """Shares of the masking key and the self-mask seed for every neighbour that advertised keys."""
        self.keys = {int(j): (bytes.fromhex(k["channel"]), bytes.fromhex(k["mask"]))
                     for j, k in neighbour_keys["neighbours"].items()}
        if not set(self.keys) <= self.neighbours:
            raise PolicyViolation("the coordinator sent keys of clients that are not this client's neighbours")
        pairs = masking.share_secrets(self.mask_keys, self.self_seed, sorted(self.keys), self.plan)
        sealed = tuple(envelope.seal(pairs[j].to_plaintext(), round_id=self.round_bytes, sender=self.index,
                                     receiver=j, sender_channel=self.channel, receiver_public=self.keys[j][0])
                       for j in sorted(self.keys))
        return protocol.ShareKeys(self.round_bytes, self.index, sealed)

    def masked_input(self, envelopes: dict[str, Any], delta: np.ndarray) -> protocol.MaskedInput:
        """Open the envelopes of the neighbours that completed stage 2, then encode and mask `delta`.

        An envelope that does not open is refused and noted (its sender's shares held here are lost;
        its other neighbours still hold theirs)."""
        completed = [int(j) for j in envelopes["completed"]]
        if not set(completed) <= set(self.keys):
            raise PolicyViolation("the coordinator lists neighbours that never advertised keys")
        for item in envelopes["envelopes"]:
            sender = int(item["sender"])
            if sender not in completed:
                continue
            try:
                plaintext = envelope.open_envelope(envelope.SealedEnvelope(
                    round_id=self.round_bytes, sender=sender, receiver=self.index, nonce=bytes.fromhex(item["nonce"]),
                    ciphertext=bytes.fromhex(item["ciphertext"])), round_id=self.round_bytes, receiver=self.index,
                    receiver_channel=self.channel, sender_public=self.keys[sender][0])
                self.held[sender] = masking.SharePair.from_plaintext(self.index, plaintext)
            except (EnvelopeError, SyncError, ValueError):
                self.refused_envelopes.append(sender)
        update = encode_update(delta, self.noise, self.quantization, self.rng)
        self.pre_clip_norm = update.pre_clip_norm
        masked = masking.mask_input(update.values, round_id=self.round_bytes, index=self.index,
                                    mask_keys=self.mask_keys, self_mask_seed=self.self_seed,
                                    neighbour_publics={j: self.keys[j][1] for j in completed})
        return protocol.MaskedInput(self.round_bytes, self.index, masked)

    def unmasking(self, survivors: dict[str, Any]) -> protocol.UnmaskingShares:
        """The self-seed share of each surviving neighbour, the masking-key share of each dropped one."""
        survived, dropped = set(survivors["survivors"]), set(survivors["dropped"])
        if self.index not in survived:
            raise PolicyViolation("the coordinator does not list this client as a survivor")
        revealed = masking.shares_to_reveal(self.held, survived, dropped, self.plan)
        return protocol.UnmaskingShares(self.round_bytes, self.index, tuple(
            protocol.RevealedShare(owner, protocol.ShareKind.SELF_MASK_SEED if owner in survived
                                   else protocol.ShareKind.MASK_KEY, share.value)
            for owner, share in sorted(revealed.items())))
