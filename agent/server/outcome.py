"""A device's signed record of how one round ended for it (GET /v1/rounds/{id}/outcome): the device settles
its ledger row from it (agent.core.sync.client.settle_pending), and keeps a record it can show to anyone
who trusts the coordinator's key (`signing.verify_round_outcome`)."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.federation.signing import sign_round_outcome


def device_outcome(signing_key: Ed25519PrivateKey, round_id: str, device: str, state: str, finished: bool,
                   completed_stages: int, reason: str | None, released_version: int | None,
                   summands: int | None) -> dict[str, str]:
    """`summed` is true when the device's masked input went into a sum the coordinator computed (a release, or
    a round withheld after unmasking), false when it never will (the round aborted and deleted the inputs, or
    ended without this device among the survivors), and null while the round is still running or its sum
    waits for its period's release (`released_version` is then not known yet)."""
    # The survivors the coordinator sums are the participants that reached stage 3 (their masked input stored).
    summed = None if not finished else (state in ("done", "withheld") and summands is not None
                                        and completed_stages >= 3)
    return sign_round_outcome(signing_key, {
        "round_id": round_id, "device_id": device, "state": state, "summed": summed,
        "released_version": released_version, "reason": reason, "completed_stages": completed_stages,
        "at": time.time()})
