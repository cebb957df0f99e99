"""Admission and the device's privacy floor, over real HTTPS against `ownrec coordinator serve`: only enrolled
devices register (operator-issued codes, stored hashed, capped, expiring, revocable), registration and check-in
are rate-limited, and an honest device in a cohort of fakes the operator enrolled keeps its round within its own
bound, or refuses it. Then small groups: a coordinator and clients at a minimum of 3, and why a round cannot form."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.cli import cli
from agent.cli.sync import EXIT_REFUSED
from agent.core.store import Store
from agent.core.sync import consent
from agent.core.sync.client import (BLOCKED_STATE, SENT_EVENT, ClientPolicy, CoordinatorLink, RoundCannotForm,
                                    RoundRunner, check_round_config)
from agent.core.sync.parameters import train_global_delta
from agent.federation import protocol
from agent.federation.clipping import DistributedNoise, clip_to_norm
from agent.federation.signing import public_bytes, verify_release
from agent.federation.stages import ClientRound
from sync_harness import POLICY, TRAINING, make_catalog, make_clients, make_person, run_clients
from test_sync_attacks import Manual, refused
from test_sync_round import db_url, query, server_for  # noqa: F401 - db_url: a fixture (SQLite, PostgreSQL)


def admin(server, *args: str) -> subprocess.CompletedProcess:
    """An operator's `ownrec coordinator` command against the running coordinator's database."""
    return subprocess.run([sys.executable, "-m", "agent.cli", "coordinator", *args, "--state-dir",
                           str(server.state_dir), "--db", server.db_url], capture_output=True, text=True, timeout=60)


def checkin(server, key: Ed25519PrivateKey, token: str | None):
    link = CoordinatorLink(server.pin, key)
    body = {"device_public": public_bytes(key).hex(), "base_version": 1}
    if token is not None:
        body["enrolment_token"] = token
    try:
        return link.request("POST", "/v1/checkin", json.dumps(body).encode()).json()
    finally:
        link.close()


def test_only_enrolled_devices_register_with_capped_expiring_revocable_codes_stored_hashed(tmp_path, db_url):  # noqa: F811
    with server_for(tmp_path, db_url, min_cohort=10, max_cohort=10, checkin_window=300.0) as server:
        devices_before = query(server, "select count(*) from devices")
        stranger = Ed25519PrivateKey.generate()
        refused(lambda: checkin(server, stranger, None), 403, "not_enrolled", "sync join PIN_FILE --token CODE")
        refused(lambda: checkin(server, stranger, "AAAA-BBBB-CCCC-DDDD-EEEE"), 403, "bad_enrolment_token",
                "not one this coordinator issued")
        assert query(server, "select count(*) from devices") == devices_before  # nothing of theirs is kept

        issued = admin(server, "enrol", "--devices", "2", "--expires", "7d", "--note", "the Smiths")
        assert issued.returncode == 0, issued.stderr
        code = issued.stdout.strip()
        assert len(code) == 24 and code.count("-") == 4 and "enrols up to 2 devices" in issued.stderr
        first, second, third = (Ed25519PrivateKey.generate() for _ in range(3))
        joined = checkin(server, first, code.lower().replace("-", " "))  # as typed: case and spacing do not matter
        assert joined["index"] == 1
        # Enrolled, the device checks in again without the code (here: it is already in the forming cohort).
        refused(lambda: checkin(server, first, None), 409, "already_in_cohort")
        assert checkin(server, second, code)["index"] == 2
        refused(lambda: checkin(server, third, code), 403, "bad_enrolment_token", "already enrolled its 2 device(s)")

        # Only the code's hash is stored: a copy of the database holds no code that enrols anyone.
        rows = query(server, "select * from enrolment_tokens")
        assert len(rows) == 2 and not any(code.replace("-", "") in str(row).replace("-", "").upper() for row in rows)
        listed = admin(server, "tokens").stdout
        assert "the Smiths" in listed and "used" in listed and "2/2" in listed and code not in listed
        token_id = next(line.split()[0] for line in listed.splitlines() if "the Smiths" in line)

        expiring = admin(server, "enrol", "--expires", "1s").stdout.strip()
        time.sleep(1.5)
        refused(lambda: checkin(server, third, expiring), 403, "bad_enrolment_token", "has expired")
        bad = admin(server, "enrol", "--expires", "soon")
        assert bad.returncode == 2 and "a duration is a positive number with a unit" in bad.stderr

        revoked = admin(server, "revoke", token_id)
        assert revoked.returncode == 0 and "the 2 device(s) it enrolled can no longer check in" in revoked.stdout
        refused(lambda: checkin(server, second, None), 403, "enrolment_revoked")
        unknown = admin(server, "revoke", "nothing")
        assert unknown.returncode == 1 and "no enrolment token 'nothing'" in unknown.stderr


def test_registration_and_check_in_are_rate_limited_per_address_and_per_code(tmp_path, db_url):  # noqa: F811
    with server_for(tmp_path, db_url, min_cohort=10, max_cohort=10, checkin_window=300.0,
                    registrations_per_hour=4, checkins_per_hour=6) as server:
        code = admin(server, "enrol", "--devices", "100").stdout.strip()
        # The harness's own code was issued before: the limits bind per address, whatever the code.
        for _ in range(2):  # refused attempts use up the address's share too
            refused(lambda: checkin(server, Ed25519PrivateKey.generate(), None), 403, "not_enrolled")
        keys = [Ed25519PrivateKey.generate() for _ in range(3)]
        for key in keys[:2]:
            checkin(server, key, code)
        error = refused(lambda: checkin(server, keys[2], code), 429, "rate_limited",
                        "too many device registrations from this address")
        # ...with the bucket's wait as the time to come back, which the device's scheduler honours.
        assert error.retry_after is not None and error.retry_after > 0
        assert f"try again in {error.retry_after:.0f} s" in str(error)
        assert query(server, "select count(*) from device_enrolments") == [(2,)]
        # Check-ins: 6 an hour from this address; the five attempts above used five.
        refused(lambda: checkin(server, keys[0], None), 409, "already_in_cohort")
        refused(lambda: checkin(server, keys[0], None), 429, "rate_limited", "too many check-ins from this address")


def test_a_burst_of_registrations_is_stopped_at_the_limit(tmp_path):
    """The attack that worked before admission: mass registration of device keys."""
    with server_for(tmp_path, None, min_cohort=3000, max_cohort=3000, checkin_window=300.0,
                    registrations_per_hour=20, checkins_per_hour=100_000) as server:
        code = admin(server, "enrol", "--devices", "2000").stdout.strip()
        outcomes: dict[str, int] = {}
        for _ in range(60):
            try:
                checkin(server, Ed25519PrivateKey.generate(), code)
                outcomes["admitted"] = outcomes.get("admitted", 0) + 1
            except Exception as error:  # noqa: BLE001 - counted by code
                outcomes[getattr(error, "code", repr(error))] = outcomes.get(getattr(error, "code", repr(error)), 0) + 1
        assert outcomes == {"admitted": 20, "rate_limited": 40}


class FakeDevice:
    """A device the operator enrolled and controls: it follows the protocol, but its update is zero and it
    adds no noise, so the sum holds only the honest devices' updates and their own noise."""

    def __init__(self, server, token: str) -> None:
        self.manual = Manual(server)
        self.manual.token = token
        self.error: BaseException | None = None

    def run(self, parameters_check) -> None:
        try:
            m = self.manual
            m.check_in(1)
            config = m.wait("forming")["config"]
            release = verify_release(m.link.request("GET", "/v1/releases/latest", signed=False).content,
                                     m.link.pin.signing_public_key)
            plan, _, quantization = check_round_config(config, ClientPolicy(min_cohort=3), release)
            silent = DistributedNoise(float(config["clip_norm"]), 0.0, plan.min_survivors)
            stages = ClientRound(m.round_id, m.index, bytes.fromhex(config["graph_seed"]), plan, silent,
                                 quantization)
            m.post("advertise-keys", protocol.encode(stages.advertise()))
            m.wait("advertise")
            m.post("share-keys", protocol.encode(stages.share(m.get("neighbour-keys"))))
            m.wait("share")
            zero = np.zeros(int(config["parameters"]))
            m.post("masked-input", protocol.encode(stages.masked_input(m.get("envelopes"), zero)))
            m.wait("masked")
            m.post("unmasking", protocol.encode(stages.unmasking(m.get("survivors"))))
        except BaseException as error:  # noqa: BLE001 - the test asserts on it
            self.error = error


def sybil_round(server, honest_policy: ClientPolicy):
    """Nine fakes check in, then one honest device; the honest device's outcome, its ledger and the fakes."""
    fakes_code = admin(server, "enrol", "--devices", "9", "--note", "the operator's own fakes").stdout.strip()
    fakes = [FakeDevice(server, fakes_code) for _ in range(9)]
    threads = [threading.Thread(target=fake.run, args=(None,), daemon=True) for fake in fakes]
    for thread in threads:
        thread.start()
    time.sleep(3.0)  # the fakes are in the forming cohort first
    honest = make_clients(1, make_catalog())
    run_clients(server, honest, honest_policy, token=admin(server, "enrol").stdout.strip())
    for thread in threads:
        thread.join(120)
    return honest[0], fakes


def test_with_nine_fakes_an_honest_device_keeps_its_round_within_its_own_bound(tmp_path):
    # The coordinator makes room for the default floor (epsilon 10 a round); the honest device holds to it.
    with server_for(tmp_path, None, min_cohort=10, max_cohort=10, checkin_window=60.0, stage_timeout=30.0) as server:
        policy = ClientPolicy(min_cohort=10, max_round_epsilon=10.0, round_timeout=180.0, training=TRAINING)
        honest, fakes = sybil_round(server, policy)
        assert honest.error is None and all(fake.error is None for fake in fakes), \
            (repr(honest.error), [repr(f.error) for f in fakes])
        outcome = honest.outcome
        assert outcome.state == "released" and outcome.released_version == 2
        base, new = (verify_release(bytes(body), server.pin.signing_public_key) for (body,) in
                     query(server, "select body from releases order by version"))
        # The dishonest coordinator's view: the sum of ten inputs, nine of them zero, is the honest update alone.
        delta = train_global_delta(base.layout, base.vector, honest.data.personal, honest.data.catalog,
                                   honest.data.labels, TRAINING)
        clipped, _ = clip_to_norm(delta, 1.0)
        residual = (new.vector - base.vector) * 10 - clipped  # what protects the honest device: its own noise
        # Without the floor, the device would add 1/sqrt(7) = 0.378 per number (epsilon 14.2 for this round);
        # with it, 0.5: measured over 8,124 numbers (quantization adds ~1e-6).
        assert residual.std() == pytest.approx(0.4999, rel=0.03)
        (row,) = honest.ledger
        assert row["noise_std"] == pytest.approx(0.4999, rel=1e-3) and row["noise_multiplier"] == 1.0
        assert 9.99 < row["epsilon_round_worst"] <= 10.0
        assert row["epsilon_round_honest"] == pytest.approx(4.377, abs=0.01)
        assert new.metadata["max_round_epsilon"] == 10.0
        assert new.metadata["device_noise_std"] == pytest.approx(row["noise_std"])


def test_with_nine_fakes_an_honest_device_refuses_a_round_without_room_for_its_floor(tmp_path):
    # The coordinator makes room only for a floor of epsilon 50: the honest device (epsilon 10) refuses.
    with server_for(tmp_path, None, min_cohort=10, max_cohort=10, checkin_window=60.0, stage_timeout=10.0,
                    max_round_epsilon=50.0) as server:
        policy = ClientPolicy(min_cohort=10, max_round_epsilon=10.0, round_timeout=180.0, training=TRAINING)
        honest, _ = sybil_round(server, policy)
        assert isinstance(honest.error, RoundCannotForm) and honest.error.code == "declined"
        assert "needs noise of std 0.4999 per number" in str(honest.error)
        assert "made room for 0.378" in str(honest.error)
        assert honest.ledger == []  # nothing derived from the person's data was uploaded
        # What it did send is in its log: the public reads, the check-in with its enrolment code, the polls.
        (sent,) = [json.loads(e["payload"]) for e in honest.events if e["kind"] == SENT_EVENT]
        assert set(sent["by_kind"]) == {"release", "info", "checkin", "status"} and sent["enrolment_token_sent"]
        assert "masked" not in sent["message"] and "register this device's key" in sent["message"]


# -- small groups ------------------------------------------------------------------------------------


def test_five_devices_at_a_minimum_of_three_release_and_say_why_when_a_round_cannot_form(tmp_path):
    small = ClientPolicy(min_cohort=3, round_timeout=60.0, training=TRAINING)
    with server_for(tmp_path, None, min_cohort=3, max_cohort=5, checkin_window=5.0, stage_timeout=20.0) as server:
        clients = make_clients(5, make_catalog())
        run_clients(server, clients, small, stagger=0.2)
        assert [repr(c.error) for c in clients if c.error] == []
        assert {c.outcome.state for c in clients} == {"released"}
        assert {c.outcome.released_version for c in clients} == {2}

        # A device that asks for cohorts of at least 6: this coordinator forms at most 5. It says so before
        # training or checking in, and what it sent (two public reads) is in its log.
        store = Store.memory()
        link = CoordinatorLink(server.pin, Ed25519PrivateKey.generate())
        with pytest.raises(RoundCannotForm) as caught:
            RoundRunner(link, store, ClientPolicy(min_cohort=6, training=TRAINING),
                        enrolment_token=server.token).run(make_person(make_catalog(), 9))
        link.close()
        assert caught.value.retry and str(caught.value) == (
            "the coordinator forms cohorts of 3 to 5 devices, and this device takes part only in cohorts of at "
            "least 6 (the setting sync.min_cohort): no round can include it")
        assert consent.blocked(store, server.pin.signing_public_key.hex())["code"] == "cohort_too_small"
        (sent,) = consent.events(store)
        assert sent.kind == "sent" and set(sent.figures["by_kind"]) == {"release", "info"}

        # Alone at the coordinator, a device waits for a cohort that never forms, and says how far it got.
        lonely = make_clients(1, make_catalog())
        run_clients(server, lonely, ClientPolicy(min_cohort=3, round_timeout=8.0, training=TRAINING))
        assert isinstance(lonely[0].error, RoundCannotForm) and lonely[0].error.code == "not_formed"
        assert "1 device(s) had checked in, and the coordinator forms a cohort from 3" in str(lonely[0].error)


def test_a_budget_no_round_fits_is_announced_and_the_device_stops_asking(tmp_path, encoder):
    from helpers import catalog, onboarded_agent

    # One round at z = 1 costs epsilon 4.38: a budget of 3 allows none.
    with server_for(tmp_path, None, min_cohort=3, max_cohort=3, epsilon_budget=3.0) as server:
        agent = onboarded_agent(encoder, catalog())
        agent.store.add_interaction(agent.store.resolve_item("test:sci-0").id, "like", at=1.0)
        agent.join_sync(server.state_dir / "coordinator-pin.json", server.token)
        agent.set_sync(True, "cli")
        agent.config.set("sync.idle_seconds", 1)
        scheduler = agent.sync_scheduler(policy=POLICY)
        scheduler.last_activity -= 2.0
        scheduler.tick()
        report = scheduler.wait_for_round(60)
        assert report.state == "not formed"
        assert report.message.startswith("one round at this coordinator's noise (multiplier 1) costs more than its "
                                          "privacy budget of 3 per device: it includes no device in any round")
        assert agent.store.get_state(BLOCKED_STATE)["code"] == "budget_exhausted"
        # The next tick starts nothing, whatever the interval: asking again cannot help.
        agent.store.set_state("sync_last_round_started_at", 0.0)
        assert scheduler.tick().startswith("no rounds: one round at this coordinator's noise")
        assert not scheduler.round_running
        agent.close()
        runner = CliRunner()
        status = runner.invoke(cli, ["sync", "status"]).output
        assert "no rounds until you join again: one round at this coordinator's noise" in status
        assert "enrolment: a code waits" in status  # it never checked in: its code was not used
        log = runner.invoke(cli, ["sync", "log"]).output
        assert "sent 2 requests" in log and "read the coordinator's announced settings (public) ×1" in log
        assert "costs more than its privacy budget of 3 per device" in log
        # Headless, the same: one attempt says so, and --forever stops instead of asking again.
        once = runner.invoke(cli, ["sync", "run"])
        assert once.exit_code == EXIT_REFUSED, once.output
        assert once.stdout.startswith("no rounds: one round at this coordinator's noise (multiplier 1) costs more")
        forever = runner.invoke(cli, ["sync", "run", "--forever"])
        assert forever.exit_code == EXIT_REFUSED and forever.stdout == once.stdout
        assert forever.stderr.startswith("stopping: no round can start with this coordinator until you join again")


# -- the parts, on their own ---------------------------------------------------------------------------


def test_the_token_bucket_allows_a_burst_then_refills_at_its_rate(tmp_path):
    from agent.server import admission
    from agent.server.state import SQLiteStorage

    storage = SQLiteStorage(tmp_path / "limits.sqlite3")
    try:
        def take(at: float, bucket: str = "a") -> float | None:
            with storage.write() as tx:
                return admission.take(tx, bucket, 3600.0 / 60, at)  # 60 an hour: one a minute, a burst of 60

        assert [take(1000.0) for _ in range(60)] == [None] * 60
        assert take(1000.0) == 60  # empty: the next in a minute
        assert take(1000.0, "b") is None  # buckets are independent
        assert take(1030.0) == 30  # half a minute later: half a request in the bucket, and a refusal takes none
        assert take(1060.0) is None and take(1060.0) == 60
        assert [take(1000.0 + 3600 * 5) for _ in range(60)] == [None] * 60  # refills to its burst, no further
        assert take(1000.0 + 3600 * 5) == 60
    finally:
        storage.close()


def test_codes_are_typed_forgivingly_and_durations_strictly():
    from agent.server import admission

    code = admission.new_code()
    assert len(code) == 24 and set(code.replace("-", "")) <= set(admission.ALPHABET)
    assert admission.hash_code(code) == admission.hash_code(f" {code.lower().replace('-', ' ')} ")
    assert admission.hash_code(code) != admission.hash_code(admission.new_code())
    assert [admission.parse_duration(t) for t in ("90s", "30m", "12h", "7d", "2w", "1.5h")] == \
        [90, 1800, 43200, 604800, 1209600, 5400]
    for bad in ("7", "d", "-1d", "0h", "7 days", ""):
        with pytest.raises(admission.AdmissionError, match="a duration is a positive number with a unit"):
            admission.parse_duration(bad)


@pytest.mark.parametrize("bound", [1.0, 4.0, 10.0, 30.0])
def test_the_floor_is_the_least_noise_that_keeps_a_round_within_the_bound_alone(bound):
    from agent.federation.accounting import (device_noise, gaussian_epsilon, noise_multiplier_for_epsilon,
                                             worst_case_round_epsilon)

    z = noise_multiplier_for_epsilon(bound, 1e-5)
    assert gaussian_epsilon(z, 1e-5) <= bound < gaussian_epsilon(z * (1 - 1e-6), 1e-5)
    for contributors in (3, 7, 14, 70, 700):
        share = DistributedNoise(1.0, 1.0, contributors)
        own = device_noise(share, bound, 1e-5)
        assert own.std_per_client >= share.std_per_client
        assert worst_case_round_epsilon(own, 1e-5) <= bound
        if own.std_per_client > share.std_per_client:  # raised: to the floor, not beyond it
            assert own.std_per_client == pytest.approx(z, rel=1e-5)
        else:  # the share alone already keeps the round within the bound
            assert worst_case_round_epsilon(share, 1e-5) <= bound
    assert device_noise(DistributedNoise(1.0, 1.0, 7), None, 1e-5) == DistributedNoise(1.0, 1.0, 7)
    assert worst_case_round_epsilon(DistributedNoise(1.0, 0.0, 7), 1e-5) == float("inf")
