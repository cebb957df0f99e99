"""A federation in one process: the real coordinator and the real client stages, without HTTP.

For experiments that need many rounds with hundreds of clients (`ownrec eval`, `ownrec audit`): the
`Coordinator` runs exactly as behind `ownrec coordinator serve` (SQLite state, cohort formation, the four
secure-aggregation stages, unmasking, accounting, signed releases), and every client runs
`agent.federation.stages.ClientRound` and `client.check_round_config`, as on a device. What is left out
is only the transport: messages are handed to the coordinator's methods instead of being posted over
HTTPS, so request signatures, TLS and long polls (measured by `ownrec bench sync`) play no part. The
clients move through the stages in lockstep, so no round waits for a timeout.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.lab.people import worker_pool
from agent.federation import protocol
from agent.core.sync.client import ClientPolicy, check_round_config
from agent.federation.layout import SharedLayout
from agent.federation.signing import Release, verify_release
from agent.federation.stages import ClientRound
from agent.server.coordinator import Coordinator, CoordinatorSettings
from agent.server.state import SQLiteStorage


def _client_stage(task: tuple[ClientRound, str, tuple]) -> tuple[ClientRound, protocol.Message]:
    client, method, arguments = task
    return client, getattr(client, method)(*arguments)


_WORKERS = min(os.cpu_count() or 1, 4)


@contextmanager
def _client_workers(count: int) -> Iterator[Executor | None]:
    """Worker processes for the clients' stages (their key agreements, envelopes and masks are most of a
    round's work), or None where a pool would not pay off."""
    if _WORKERS > 1 and count >= 64:
        with worker_pool(_WORKERS) as executor:
            yield executor
    else:
        yield None


def _run_stage(executor: Executor | None, method: str, clients: list[ClientRound], answers: list[tuple]
               ) -> tuple[list[ClientRound], list[protocol.Message]]:
    """One stage of every client; each client's state travels with it, so nothing is shared."""
    tasks = [(client, method, arguments) for client, arguments in zip(clients, answers)]
    done = ([_client_stage(task) for task in tasks] if executor is None else
            list(executor.map(_client_stage, tasks, chunksize=max(1, len(tasks) // (4 * _WORKERS)))))
    return [client for client, _ in done], [message for _, message in done]


@dataclass(frozen=True)
class SimulatedRound:
    round_id: str
    release: Release          # the new global adapter, verified as a client verifies it
    summands: int
    pre_clip_norms: np.ndarray  # per client, in the order the deltas were given
    epsilon: float            # the most any person has spent over the releases so far (the coordinator's count)


class InProcessFederation:
    """One coordinator (state in `folder`) and cohorts of `cohort_size` simulated clients."""

    def __init__(self, folder: Path, layout: SharedLayout, cohort_size: int, *, clip_norm: float,
                 noise_multiplier: float, target_delta: float = 1e-4, server_learning_rate: float = 1.0,
                 item_learning_rate: float = 1.0, shrink_noise: bool = True, from_prior: bool = False,
                 seed: int = 0) -> None:
        """`from_prior`: the federation refines release 0. The experiments keep the federation's vector as
        the change from each person's foundation (release 0 is cross-fitted, so it differs between people),
        so release 1 is zeros either way; it says whether that is release 0, as a deployed coordinator's
        does (`coordinator serve --prior`), which decides how the coordinator shrinks (`shrinkage`)."""
        self.settings = CoordinatorSettings(
            min_cohort=cohort_size, max_cohort=cohort_size, checkin_window=3600.0, stage_timeout=3600.0,
            clip_norm=clip_norm, noise_multiplier=noise_multiplier, target_delta=target_delta,
            epsilon_budget=math.inf,  # the experiment reports epsilon; it does not stop at a budget
            server_learning_rate=server_learning_rate, item_learning_rate=item_learning_rate,
            shrink_noise=shrink_noise,
            # The experiments measure what each noise level does to a release, so every round is released,
            # also those the coordinator's default rule would withhold as more noise than signal.
            withhold_noisy=False,
            # The experiments measure the protocol's distributed noise at each multiplier: no device floor.
            max_round_epsilon=None)
        self.policy = ClientPolicy(min_noise_multiplier=0.0, min_cohort=3, max_clip_norm=max(10.0, clip_norm))
        folder.mkdir(parents=True, exist_ok=True)
        self.storage = SQLiteStorage(folder / "coordinator.sqlite3")
        self.signing_key = Ed25519PrivateKey.generate()
        self.coordinator = Coordinator(self.storage, self.signing_key, self.settings, layout,
                                       layout.zeros() if from_prior else None)
        self.rng = np.random.default_rng(seed)
        self.federation_id = f"{self.rng.integers(1 << 62):016x}"
        self.cohort_size = cohort_size

    def close(self) -> None:
        self.storage.close()

    def latest(self, newer_than: int | None = None) -> Release:
        """The latest release, verified against the coordinator's signing key as a client does."""
        return verify_release(self.coordinator.latest_release_bytes(), self.coordinator.public_key,
                              newer_than=newer_than)

    def device(self, person: int) -> str:
        """The device id of `person`: the same in every round, as a real device's, so the coordinator
        counts each person's privacy steps over all the rounds they took part in."""
        return f"simulated-{person:05d}-{self.federation_id}"

    def run_round(self, deltas: list[np.ndarray], base: Release, people: Sequence[int] | None = None
                  ) -> SimulatedRound:
        """One round in which person people[k] (default: k) uploads deltas[k] (trained from `base`):
        check-in, the four stages through `ClientRound`, and the coordinator's unmasking and release."""
        if len(deltas) != self.cohort_size:
            raise ValueError(f"this federation runs cohorts of {self.cohort_size}, not {len(deltas)}")
        people = range(len(deltas)) if people is None else people
        if len(people) != len(deltas) or len(set(people)) != len(people):
            raise ValueError("one delta per person, each person once")
        coordinator = self.coordinator
        devices = [self.device(int(person)) for person in people]
        joined = [coordinator.check_in(device, base.version) for device in devices]
        round_id = joined[0]["round_id"]
        if any(j["round_id"] != round_id for j in joined):
            raise RuntimeError("the simulated clients were split over two rounds")
        config = coordinator.status(round_id, devices[0])["config"]
        plan, noise, quantization = check_round_config(config, self.policy, base)
        seed = bytes.fromhex(config["graph_seed"])
        clients = [ClientRound(round_id, int(j["index"]), seed, plan, noise, quantization,
                               np.random.default_rng(self.rng.integers(1 << 63))) for j in joined]

        with _client_workers(len(clients)) as executor:
            def stage(kind: protocol.Stage, method: str, answers: list[tuple]) -> None:
                nonlocal clients
                clients, messages = _run_stage(executor, method, clients, answers)
                for device, message in zip(devices, messages):
                    coordinator.submit(round_id, device, kind, protocol.encode(message))

            stage(protocol.Stage.ADVERTISE_KEYS, "advertise", [() for _ in devices])
            stage(protocol.Stage.SHARE_KEYS, "share", [(coordinator.neighbour_keys(round_id, d),) for d in devices])
            stage(protocol.Stage.MASKED_INPUT, "masked_input", [(coordinator.envelopes_for(round_id, d), delta)
                                                                for d, delta in zip(devices, deltas)])
            stage(protocol.Stage.UNMASKING, "unmasking", [(coordinator.survivors_for(round_id, d),) for d in devices])
        summary = coordinator.round_summary(round_id)
        if summary["state"] != "done":
            raise RuntimeError(f"the simulated round ended {summary['state']}: {summary['reason']}")
        release = self.latest(newer_than=base.version)
        if release.metadata.get("round_id") != round_id:
            raise RuntimeError("the latest release is not this round's")
        return SimulatedRound(round_id=round_id, release=release, summands=int(summary["summands"]),
                              pre_clip_norms=np.array([c.pre_clip_norm for c in clients]),
                              epsilon=float(release.metadata["epsilon"]))
