"""What a round's members read of it: their neighbours' keys, the envelopes addressed to them, who survived,
and the round's outcome, signed. Read-only, apart from moving a round past a deadline first
(`Coordinator._advance_if_due`); a part of `coordinator.Coordinator`."""

from __future__ import annotations

from typing import Any

from agent.server.cohort import FINISHED
from agent.server.outcome import device_outcome


def _marks(values) -> str:
    """Placeholders for an `in (...)` list of len(values) parameters (never empty: `in ()` is invalid SQL)."""
    return ", ".join("?" * len(values)) if len(values) else "null"


class RoundViews:
    """The members' reads of `coordinator.Coordinator` (which provides `storage`, `signing_key`,
    `_participant`, `_require_state` and `_advance_if_due`)."""

    def neighbour_keys(self, round_id: str, device: str) -> dict[str, Any]:
        with self.storage.read() as tx:
            index, _, state, config = self._participant(tx, round_id, device)
            self._require_state(state, ("share", "masked", "unmask"), round_id)
            neighbours = config.graph().neighbours(index)
            # Only the neighbours' rows: reading the whole cohort for each of its n members costs n^2.
            rows = tx.all("select idx, channel_public, mask_public from participants where round_id = ? "
                          f"and stage >= 1 and idx in ({_marks(neighbours)})", [round_id, *neighbours])
        keys = {int(i): (bytes(c).hex(), bytes(m).hex()) for i, c, m in rows}
        return {"neighbours": {str(i): {"channel": c, "mask": m} for i, (c, m) in sorted(keys.items())}}

    def envelopes_for(self, round_id: str, device: str) -> dict[str, Any]:
        with self.storage.read() as tx:
            index, _, state, config = self._participant(tx, round_id, device)
            self._require_state(state, ("masked", "unmask"), round_id)
            neighbours = config.graph().neighbours(index)
            completed = sorted(int(i) for (i,) in tx.all(
                f"select idx from participants where round_id = ? and stage >= 2 and idx in ({_marks(neighbours)})",
                [round_id, *neighbours]))
            rows = tx.all("select sender, nonce, ciphertext from envelopes where round_id = ? and receiver = ?",
                          [round_id, index])
        return {"completed": completed, "envelopes": [
            {"sender": int(s), "nonce": bytes(n).hex(), "ciphertext": bytes(c).hex()}
            for s, n, c in rows if int(s) in completed]}

    def survivors_for(self, round_id: str, device: str) -> dict[str, Any]:
        with self.storage.read() as tx:
            index, _, state, config = self._participant(tx, round_id, device)
            self._require_state(state, ("unmask",), round_id)
            rows = tx.all("select idx, stage from participants where round_id = ?", [round_id])
        survivors = sorted(int(i) for i, s in rows if s >= 3)
        shared = sorted(int(i) for i, s in rows if s >= 2)
        return {"survivors": survivors, "dropped": sorted(set(shared) - set(survivors))}

    def round_outcome(self, round_id: str, device: str) -> dict[str, str]:
        """This device's outcome in the round, signed (`outcome.device_outcome`); it moves the round on first."""
        self._advance_if_due(round_id, device)
        with self.storage.read() as tx:
            _, stage, state, _ = self._participant(tx, round_id, device)
            row = tx.one("select reason, released_version, summands from rounds where round_id = ?", [round_id])
        return device_outcome(self.signing_key, round_id, device, state, state in FINISHED, stage, *row)
