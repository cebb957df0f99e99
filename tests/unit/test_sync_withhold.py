"""The coordinator withholds an average whose noise would be larger than any signal it could carry
(`withhold_noisy`, on by default): the rule's figures, and the real coordinator driven in one process by the
real client stages, and over HTTPS what the devices are told and count (tests/unit/test_sync_never_worse.py
runs small federations of real agents)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_harness import POLICY as HARNESS_POLICY
from sync_harness import make_catalog, make_clients, run_clients, start_server

from agent.cli import cli
from agent.core.sync.client import ClientPolicy, RoundCancelled, check_round_config
from agent.federation import protocol
from agent.federation.clipping import DistributedNoise, NoiseCheck, expected_gaussian_norm
from agent.federation.layout import SharedLayout
from agent.federation.neighbourhood import plan_neighbourhood
from agent.federation.signing import verify_release
from agent.federation.stages import ClientRound
from agent.server.app import default_layout
from agent.server.coordinator import Coordinator, CoordinatorError, CoordinatorSettings
from agent.server.state import SQLiteStorage

LAYOUT = SharedLayout.create(384, 16, [f"test:{i}" for i in range(60)], np.random.default_rng(0), residual_rank=32)
# These tests are about the withholding rule at a given noise, some at next to no privacy: the devices' privacy
# floor (which adds noise of their own, and which the coordinator's figures count) is off.
POLICY = ClientPolicy(min_noise_multiplier=0.0, min_cohort=3, max_round_epsilon=None)


# -- the figures --------------------------------------------------------------------------------------


def test_the_expected_noise_norm_is_the_mean_norm_of_the_noise_in_the_average():
    rng = np.random.default_rng(1)
    noise = DistributedNoise(clip_norm=0.5, noise_multiplier=1.3, min_contributors=4)
    summands, parameters = 6, 2_000
    norms = [np.linalg.norm(np.mean([noise.add_to(np.zeros(parameters), rng) for _ in range(summands)], axis=0))
             for _ in range(300)]
    check = NoiseCheck.of(noise, parameters, summands)
    assert check.noise_norm == pytest.approx(np.mean(norms), rel=0.01)
    assert check.signal_bound == 0.5 and check.noise_dominates
    # exact, and a shade below the sqrt(D) approximation
    assert expected_gaussian_norm(2.0, 1) == pytest.approx(2.0 * np.sqrt(2 / np.pi))
    assert 0 < 2.0 * np.sqrt(61_650) - expected_gaussian_norm(2.0, 61_650) < 3e-3


@pytest.mark.parametrize(("cohort", "expected"), [(5, 55.52), (10, 29.68), (943, 0.3145)])
def test_at_the_default_settings_small_federations_carry_more_noise_than_signal(cohort, expected):
    # The command's defaults: clip norm 1, noise multiplier 1, the MovieLens-100K vocabulary (61,650 numbers).
    noise = DistributedNoise(1.0, 1.0, plan_neighbourhood(cohort).min_survivors)
    check = NoiseCheck.of(noise, default_layout().size, cohort)
    assert check.noise_norm == pytest.approx(expected, rel=1e-3)
    assert check.noise_dominates == (cohort < 943)


def test_the_rule_is_a_setting_of_the_command_and_on_by_default():
    assert CoordinatorSettings().withhold_noisy is True
    text = CliRunner().invoke(cli, ["coordinator", "serve", "--help"], terminal_width=200).output
    assert "--withhold-noisy / --release-noisy" in text and "[default: withhold-noisy]" in text


# -- the coordinator ------------------------------------------------------------------------------------


class Federation:
    """A coordinator in one process and cohorts of `size` clients running the real client stages."""

    def __init__(self, tmp_path, size: int, clock=time.time, initial=None, **settings) -> None:
        self.storage = SQLiteStorage(tmp_path / "coordinator.sqlite3")
        self.settings = CoordinatorSettings(min_cohort=size, max_cohort=size, epsilon_budget=1e6,
                                            **{"max_round_epsilon": None, **settings})
        self.coordinator = Coordinator(self.storage, Ed25519PrivateKey.generate(), self.settings, LAYOUT, initial,
                                       clock=clock)
        self.size = size
        self.rng = np.random.default_rng(7)

    def base(self):
        return verify_release(self.coordinator.latest_release_bytes(), self.coordinator.public_key)

    def rounds(self, state: str) -> list[tuple]:
        with self.storage.read() as tx:
            return tx.all("select round_id, reason, summands, sum_vector from rounds where state = ?", [state])

    def run(self, drop_after_share: int = 0) -> tuple[str, dict]:
        """One round; the last `drop_after_share` clients leave after sharing their keys. Returns the round
        id and the round's status as its first client sees it."""
        coordinator, base = self.coordinator, self.base()
        devices = [f"device-{self.rng.integers(1 << 62):016x}" for _ in range(self.size)]
        joined = [coordinator.check_in(d, base.version) for d in devices]
        round_id = joined[0]["round_id"]
        status = coordinator.status(round_id, devices[0])
        if status["state"] != "advertise":
            return round_id, status
        config = status["config"]
        plan, noise, quantization = check_round_config(config, POLICY, base)
        seed = bytes.fromhex(config["graph_seed"])
        clients = [ClientRound(round_id, int(j["index"]), seed, plan, noise, quantization,
                               np.random.default_rng(int(j["index"]))) for j in joined]
        pairs = list(zip(devices, clients))
        for device, client in pairs:
            coordinator.submit(round_id, device, protocol.Stage.ADVERTISE_KEYS, protocol.encode(client.advertise()))
        for device, client in pairs:
            message = client.share(coordinator.neighbour_keys(round_id, device))
            coordinator.submit(round_id, device, protocol.Stage.SHARE_KEYS, protocol.encode(message))
        staying = pairs[:self.size - drop_after_share]
        for device, client in staying:
            delta = self.rng.standard_normal(LAYOUT.size)
            message = client.masked_input(coordinator.envelopes_for(round_id, device), delta)
            coordinator.submit(round_id, device, protocol.Stage.MASKED_INPUT, protocol.encode(message))
        if drop_after_share:  # the stage ends at its deadline without them
            time.sleep(self.settings.stage_timeout + 0.1)
            coordinator.status(round_id, staying[0][0])
        for device, client in staying:
            message = client.unmasking(coordinator.survivors_for(round_id, device))
            coordinator.submit(round_id, device, protocol.Stage.UNMASKING, protocol.encode(message))
        return round_id, coordinator.status(round_id, devices[0])


@pytest.fixture
def federation(tmp_path, request):
    size, settings = request.param
    federation = Federation(tmp_path, size, **settings)
    yield federation
    federation.storage.close()


def noise_in(cohort: int, summands: int, noise_multiplier: float) -> NoiseCheck:
    return NoiseCheck.of(DistributedNoise(1.0, noise_multiplier, plan_neighbourhood(cohort).min_survivors),
                         LAYOUT.size, summands)


@pytest.mark.parametrize("federation", [(3, {})], indirect=True)
def test_a_round_whose_noise_dominates_is_withheld_as_its_cohort_forms(federation):
    round_id, status = federation.run()
    check = noise_in(3, 3, 1.0)
    assert check.noise_norm == pytest.approx(30.04, rel=1e-3)
    assert status["state"] == "withheld" and status["summands"] is None  # nothing was uploaded
    assert status["reason"] == check.reason()
    assert status["reason"].startswith("its noise (expected norm 30 in the average of 3 updates of 8,124 numbers) "
                                       "would be larger than any signal it could carry (at most 1, the clip norm)")
    assert federation.base().version == 1  # nothing published
    info = federation.coordinator.info()
    assert (info["epsilon"], info["rounds"]) == (0.0, 0)  # nothing was summed: nothing is spent
    # 8,124 numbers at noise multiplier 1 need a cohort of 108 (the noise falls like 1/sqrt(n * n_min))
    assert federation.coordinator.smallest_releasable_cohort(LAYOUT.size) == 108
    assert noise_in(108, 108, 1.0).noise_norm <= 1.0 < noise_in(107, 107, 1.0).noise_norm
    # The next check-in opens a new round rather than joining the withheld one.
    assert federation.run()[0] != round_id


@pytest.mark.parametrize("federation", [(3, {"noise_multiplier": 0.02})], indirect=True)
def test_a_round_whose_signal_bound_dominates_is_released_with_its_figures(federation):
    _, status = federation.run()
    assert status["state"] == "done" and status["released_version"] == 2
    release = federation.base()
    check = noise_in(3, 3, 0.02)
    assert check.noise_norm == pytest.approx(0.6008, rel=1e-3)
    meta = release.metadata
    assert (meta["noise_norm"], meta["signal_bound"], meta["min_contributors"], meta["summands"]) == (
        pytest.approx(check.noise_norm), 1.0, 3, 3)
    assert federation.coordinator.smallest_releasable_cohort(LAYOUT.size) == 3


@pytest.mark.parametrize("federation", [(5, {"noise_multiplier": 0.047, "stage_timeout": 0.5})], indirect=True)
def test_dropouts_that_leave_more_noise_than_signal_make_the_release_wait_for_another_cohort(federation):
    full, short = noise_in(5, 5, 0.047), noise_in(5, 4, 0.047)
    assert full.noise_norm < 1.0 < short.noise_norm  # five would release; four would not
    round_id, status = federation.run(drop_after_share=1)
    # The four updates are summed (their masked inputs gone) and wait in the period: nothing is published yet.
    assert status["state"] == "summed" and status["summands"] == 4
    with federation.storage.read() as tx:
        assert tx.all("select count(*) from masked_inputs") == [(0,)]
        assert tx.all("select count(*) from revealed_shares") == [(0,)]
    assert federation.base().version == 1
    # The noised sum was computed, so its devices have spent a step, and the coordinator says so.
    info = federation.coordinator.info()
    assert info["rounds"] == 1 and info["epsilon"] > 0
    # Another cohort on the same version (other devices: one summed cohort per device and period) joins it,
    # and the nine updates together carry more signal than noise: one release of both.
    second, status = federation.run()
    assert status["state"] == "done" and status["released_version"] == 2
    meta = federation.base().metadata
    assert (meta["summands"], meta["cohorts"], sorted(meta["round_ids"])) == (9, 2, sorted([round_id, second]))
    assert meta["noise_norm"] == pytest.approx(noise_in(5, 9, 0.047).noise_norm) and meta["noise_norm"] < 1.0
    # Each device was in one period: the most any device has spent is one step, as the release says.
    assert meta["rounds"] == 1 and meta["epsilon"] == pytest.approx(info["epsilon"])
    assert json.loads(json.dumps(status["config"]))["epsilon_after"] == pytest.approx(meta["epsilon"])


@pytest.mark.parametrize("federation", [(3, {"withhold_noisy": False})], indirect=True)
def test_with_the_rule_off_the_noisy_average_is_published(federation):
    _, status = federation.run()
    assert status["state"] == "done"
    meta = federation.base().metadata
    assert meta["noise_norm"] > 30 * meta["signal_bound"]
    assert federation.coordinator.smallest_releasable_cohort(LAYOUT.size) == 3


# -- what the devices are told, and what they count as spent ------------------------------------------------


def test_devices_whose_sum_waits_for_more_count_their_upload_as_spent(tmp_path):
    # Five clients at noise multiplier 0.047 over the test vocabulary: five summands would release, four
    # would not. One leaves after sharing its keys: the four's sum waits in its period for another cohort.
    assert noise_in(5, 5, 0.047).noise_norm < 1.0 < noise_in(5, 4, 0.047).noise_norm
    clients = make_clients(5, make_catalog(), {4: "share-keys"})
    server = start_server(tmp_path, min_cohort=5, max_cohort=5, stage_timeout=4.0, noise_multiplier=0.047,
                          epsilon_budget=1e6, withhold_noisy=True, max_round_epsilon=0)
    try:
        started = time.monotonic()
        run_clients(server, clients, replace(HARNESS_POLICY, min_noise_multiplier=0.04, max_round_epsilon=None))
        waited = time.monotonic() - started
    finally:
        server.stop()
    assert isinstance(clients[4].error, RoundCancelled) and clients[4].ledger == []
    # No time can be promised for the release: the round ends for each device at once, its upload pending.
    assert waited < HARNESS_POLICY.round_timeout
    for client in clients[:4]:
        assert client.error is None and client.outcome.state == "summed", repr(client.error)
        (row,) = client.ledger
        assert row["state"] == "pending" and row["release_version"] is None
    assert "withheld" not in server.log()


def test_every_upload_counts_as_spent_but_those_the_coordinator_never_summed():
    from agent.core.store import Store
    from agent.core.sync.consent import privacy_total
    from agent.federation.accounting import privacy_spent

    store = Store.memory()
    for at, state in enumerate(["released", "withheld", "pending", "aborted", "pending", "dropped"]):
        store.record_upload({"at": float(at), "coordinator_key": "k", "round_id": f"{at:032x}", "state": state,
                             "bytes_sent": 1, "parameters": 1, "pre_clip_norm": 0.5, "clip_norm": 1.0,
                             "noise_multiplier": 1.0, "noise_std": 0.5, "cohort_size": 5, "target_delta": 1e-5,
                             "epsilon_server": 1.0, "delta_server": 1e-5, "epsilon_client": 1.0})
    assert store.spent_noise_multipliers("k") == [1.0] * 4
    total = privacy_total(store, "k")
    assert (total.released_rounds, total.counted_rounds, total.uploads) == (1, 4, 6)
    assert total.epsilon_client == pytest.approx(privacy_spent([1.0] * 4, 1e-5).epsilon)
    assert total.rounds_phrase() == ("4 rounds that may have used your updates (1 released, 1 withheld after summing, "
                                     "2 awaiting the coordinator's record, counted as spent)")
    store.close()


def test_a_late_upload_is_refused_and_the_stage_it_missed_stays_ended(tmp_path):
    # A refused request rolls back its transaction: the round's move past its deadline must be committed first,
    # or the round would stay in the stage for every later request.
    now = [1_000.0]
    storage = SQLiteStorage(tmp_path / "late.sqlite3")
    coordinator = Coordinator(storage, Ed25519PrivateKey.generate(), CoordinatorSettings(
        min_cohort=3, max_cohort=3, stage_timeout=30.0, withhold_noisy=False, max_round_epsilon=None), LAYOUT,
        clock=lambda: now[0])
    devices = ["late-a", "late-b", "late-c"]
    joined = [coordinator.check_in(device) for device in devices]
    round_id = joined[0]["round_id"]
    assert coordinator.status(round_id, devices[0])["state"] == "advertise"
    now[0] += 31.0  # nobody advertised within the stage's 30 s
    client = ClientRound(round_id, 1, bytes.fromhex(_config(storage, round_id)["graph_seed"]), *_plan(storage, round_id))
    with pytest.raises(CoordinatorError) as refused:
        coordinator.submit(round_id, devices[0], protocol.Stage.ADVERTISE_KEYS, protocol.encode(client.advertise()))
    assert refused.value.code == "stale_round"
    with storage.read() as tx:
        assert tx.one("select state from rounds where round_id = ?", [round_id])[0] == "aborted"
    storage.close()


def _config(storage, round_id):
    with storage.read() as tx:
        return json.loads(tx.one("select config from rounds where round_id = ?", [round_id])[0])


def _plan(storage, round_id):
    from agent.server.cohort import RoundConfig

    config = RoundConfig(**_config(storage, round_id))
    return config.plan(), config.noise(), config.quantization()


def test_turned_away_devices_are_told_to_come_back_when_there_will_be_room(tmp_path):
    # One cohort of 3 at a time, each at most a 60 s window and four 30 s stages: 3 devices in 180 s.
    now = [5_000.0]
    storage = SQLiteStorage(tmp_path / "pace.sqlite3")
    coordinator = Coordinator(storage, Ed25519PrivateKey.generate(), CoordinatorSettings(
        min_cohort=3, max_cohort=3, checkin_window=60.0, stage_timeout=30.0, max_concurrent_rounds=1,
        withhold_noisy=False, max_round_epsilon=None), LAYOUT, clock=lambda: now[0])
    for device in ("in-a", "in-b", "in-c"):
        coordinator.check_in(device)  # the cohort forms: the next ones are turned away
    told = []
    for number in range(300):
        with pytest.raises(CoordinatorError) as refused:
            coordinator.check_in(f"waiting-{number}")
        assert refused.value.code == "round_in_progress"
        told.append(refused.value.retry_after)
    # The first few are told when the cohort ends at the latest (its first stage, then three more); the
    # 300th, how long 300 devices take at 3 per 180 s.
    assert told[0] == pytest.approx(4 * 30.0)
    assert told[-1] == pytest.approx(300 / (3 / 180.0))
    assert all(later >= earlier for earlier, later in zip(told, told[1:]))
    # The same device asking again is counted once; devices turned away over an hour ago no longer count.
    with pytest.raises(CoordinatorError) as again:
        coordinator.check_in("waiting-0")
    assert again.value.retry_after == pytest.approx(told[-1])
    now[0] += 3601.0  # the cohort has long ended (aborted: nobody advertised); a new one forms
    for device in ("next-a", "next-b", "next-c"):
        coordinator.check_in(device)
    with pytest.raises(CoordinatorError) as later:
        coordinator.check_in("next-d")
    assert later.value.code == "round_in_progress" and later.value.retry_after == pytest.approx(4 * 30.0)
    storage.close()


def test_a_device_already_summed_in_a_waiting_period_is_told_how_long_the_period_needs_at_its_pace(
        tmp_path, monkeypatch):
    # Five at noise multiplier 0.047 would release; a cohort left with four waits in its period for more.
    now = [10_000.0]
    federation = Federation(tmp_path, 5, clock=lambda: now[0], noise_multiplier=0.047, stage_timeout=0.5)
    monkeypatch.setattr(time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))  # the dropout's wait
    assert federation.coordinator.smallest_releasable_cohort(LAYOUT.size) == 5
    round_id, status = federation.run(drop_after_share=1)
    assert status["state"] == "summed" and status["summands"] == 4
    with federation.storage.read() as tx:
        ((member,),) = tx.all("select device_id from participants where round_id = ? and stage >= 3 limit 1",
                              [round_id])
        ((opened,),) = tx.all("select created_at from rounds where round_id = ?", [round_id])

    def told() -> float:
        with pytest.raises(CoordinatorError) as refused:
            federation.coordinator.check_in(member)
        assert refused.value.code == "already_in_period"
        return refused.value.retry_after

    # Soon after: a cohort's time (a check-in window and four stages), as before any pace is known.
    assert told() == pytest.approx(federation.settings.checkin_window + 4 * 0.5)
    # Four updates summed in 4,000 s: the fifth is expected in another 1,000 s, and the device is told so
    # rather than to ask again every minute.
    now[0] = opened + 4000.0
    assert told() == pytest.approx(1000.0)
