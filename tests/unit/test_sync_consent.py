"""Consent, the pinned coordinator, the background scheduler and loading the global adapter: against a
real agent (real encoder, real SQLite) and a real coordinator over HTTPS on loopback (tests/sync_harness)."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
import time

import numpy as np
import pytest
from helpers import catalog, onboarded_agent
from click.testing import CliRunner
from sync_harness import POLICY, make_catalog, make_clients, run_clients, start_server

from agent.cli import cli
from agent.core.api import Agent, SyncScheduler
from agent.core.paths import Home
from agent.core.sync import consent
from agent.core.sync.client import POLL_SECONDS, latest_verified_release
from agent.core.sync.parameters import unflatten
from agent.core.sync.scheduler import LAST_START_STATE

LIKES = ["test:sci-0", "test:sci-3", "test:mys-1"]
DISLIKES = ["test:rom-0"]


@pytest.fixture
def agent(encoder) -> Agent:
    agent = onboarded_agent(encoder, catalog())
    for at, (ref, kind) in enumerate([(r, "like") for r in LIKES] + [(r, "dislike") for r in DISLIKES]):
        agent.store.add_interaction(agent.store.resolve_item(ref).id, kind, at=float(at + 1))
    agent.retrain()
    yield agent
    agent.close()


@pytest.fixture
def server(tmp_path):
    server = start_server(tmp_path, min_cohort=3, max_cohort=3, checkin_window=120.0, stage_timeout=60.0)
    yield server
    server.stop()


# A federation with so little noise (multiplier 0.02: next to no privacy) that a cohort of three releases an
# average whose noise is below its signal bound, with the coordinator's default rule on: a device with too
# few likes to judge a release by adopts such a one (agent.core.sync.adoption). The clients' policy allows it,
# without the privacy floor that would add noise of their own (and that the coordinator would count).
QUIET = replace(POLICY, min_noise_multiplier=0.02, max_round_epsilon=None)


@pytest.fixture
def quiet_server(tmp_path):
    server = start_server(tmp_path, min_cohort=3, max_cohort=3, checkin_window=120.0, stage_timeout=60.0,
                          noise_multiplier=0.02, epsilon_budget=1e6, withhold_noisy=True, max_round_epsilon=0)
    yield server
    server.stop()


def idle_scheduler(agent: Agent, policy=POLICY) -> SyncScheduler:
    """A scheduler (not ticking on its own: the test calls tick) that finds the app idle."""
    agent.config.set("sync.idle_seconds", 1)
    scheduler = agent.sync_scheduler(policy=policy)
    scheduler.last_activity -= 2.0  # the last key press was two seconds ago
    return scheduler


# -- the pin and the consent -----------------------------------------------------------------------


def test_join_checks_the_pin_file_and_keeps_a_copy(server, tmp_path, ownrec_home):
    home = Home(ownrec_home)
    bad = tmp_path / "bad.json"
    for content, problem in [("not json", "expected JSON"),
                             (json.dumps({"url": "http://x:1", "signing_public_key": "00" * 32,
                                          "tls_certificate": server.pin.tls_certificate}), "must be https"),
                             (json.dumps({"url": "https://x:1", "signing_public_key": "00" * 31,
                                          "tls_certificate": server.pin.tls_certificate}), "32 bytes"),
                             (json.dumps({"url": "https://x:1", "signing_public_key": "00" * 32,
                                          "tls_certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n"}), "does not load")]:
        bad.write_text(content)
        with pytest.raises(consent.SyncSetupError, match=problem) as refused:
            consent.join(home, bad)
        assert "ownrec sync join PATH" in str(refused.value)
        assert consent.stored_pin(home) is None
    pinned = consent.join(home, server.state_dir / "coordinator-pin.json")
    assert pinned == server.pin == consent.stored_pin(home)
    assert consent.pin_path(home).read_text() == (server.state_dir / "coordinator-pin.json").read_text()


def test_consent_is_recorded_with_its_origin(agent):
    assert not consent.was_asked(agent.store) and not consent.is_enabled(agent.store)
    assert agent.set_sync(False, "onboarding") is False  # the answer "no" is recorded, not a change
    assert consent.was_asked(agent.store) and not consent.was_ever_enabled(agent.store)
    assert agent.set_sync(True, "tui") is True
    assert agent.set_sync(False, "cli") is True
    assert not consent.is_enabled(agent.store) and consent.was_ever_enabled(agent.store)
    events = [json.loads(e["payload"]) for e in reversed(agent.store.events()) if e["kind"] == "sync_consent"]
    assert events == [{"on": False, "origin": "onboarding"}, {"on": True, "origin": "tui"},
                      {"on": False, "origin": "cli"}]


def test_the_scheduler_waits_for_consent_a_pin_idleness_and_the_interval(agent, server):
    scheduler = idle_scheduler(agent)
    assert scheduler.tick() == "sync is off: no connection is opened"
    agent.set_sync(True, "cli")
    assert scheduler.tick() == "no coordinator pinned: `ownrec sync join PATH`"
    agent.join_sync(server.state_dir / "coordinator-pin.json", server.token)
    scheduler.touch()
    assert scheduler.tick() == "waiting until the app is idle for 1 s"
    agent.store.set_state(LAST_START_STATE, time.time() - 30 * 60)  # a round started half an hour ago
    scheduler.last_activity -= 2.0
    assert scheduler.tick() == "next round in 30 min"
    assert not scheduler.round_running and scheduler.last_report is None
    assert agent.store.db["sync_ledger"].count == 0


# -- rounds ------------------------------------------------------------------------------------------


def test_a_round_from_the_scheduler_loads_the_release_and_rebuilds_the_scorer(agent, quiet_server):
    server = quiet_server
    agent.set_sync(True, "cli")
    agent.join_sync(server.state_dir / "coordinator-pin.json", server.token)
    personal = agent.personal_adapter()
    before_scorer = agent.scorer()
    before = before_scorer.scores(personal)
    assert not before_scorer.global_adapter.B.any()  # the identity until a release is loaded

    scheduler = idle_scheduler(agent, QUIET)
    assert scheduler.tick() == "round starting"
    assert scheduler.tick().startswith("round running")  # one at a time
    others = make_clients(2, make_catalog())
    run_clients(server, others, QUIET)  # two simulated people make the cohort of three
    report = scheduler.wait_for_round(120)
    assert [c.error for c in others] == [None, None]
    assert report.state == "released" and report.released_version == 2, report
    # Three likes are too few to hold any out; a release whose noise is below its signal bound is adopted
    # unchecked, and said so.
    assert report.adoption.startswith("version 2 adopted without a check: too few likes to judge it by (3;")
    assert agent.sync_status().in_use == "version 2"

    (row,) = [dict(r) for r in agent.store.db["sync_ledger"].rows]
    assert row["state"] == "released" and row["release_version"] == 2 and row["cohort_size"] == 3
    assert row["clip_norm"] == 1.0 and row["noise_multiplier"] == 0.02 and row["pre_clip_norm"] > 0
    assert row["epsilon_client"] == pytest.approx(row["epsilon_server"])
    total = agent.sync_privacy(server.pin.signing_public_key.hex())
    assert (total.released_rounds, total.uploads) == (1, 1)
    assert total.epsilon_client == pytest.approx(row["epsilon_client"])

    release = latest_verified_release(agent.store, server.pin)
    assert release.version == 2
    loaded = agent.global_adapter()
    expected = unflatten(release.layout, release.vector)
    assert np.array_equal(loaded.B, expected.B) and np.array_equal(loaded.A, expected.A) and loaded.B.any()
    after_scorer = agent.scorer()
    assert after_scorer is not before_scorer and after_scorer.global_adapter is loaded
    assert np.max(np.abs(after_scorer.scores(personal) - before)) > 1e-6
    # The next interval has not passed: no second round.
    assert scheduler.tick().startswith("next round in")


def test_turning_sync_off_cancels_the_round_in_flight(agent, server):
    agent.set_sync(True, "tui")
    agent.join_sync(server.state_dir / "coordinator-pin.json", server.token)
    scheduler = idle_scheduler(agent)
    scheduler.tick_seconds = 0.2
    scheduler.start()  # ticking on its own, as in the app
    deadline = time.monotonic() + 60
    while scheduler.stage != "checked-in" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scheduler.stage == "checked-in"  # alone in a cohort that needs three: it waits (2 min window)
    agent.set_sync(False, "cli")  # as `ownrec sync off` does: only the stored consent changes
    turned_off = time.monotonic()
    report = scheduler.wait_for_round(30)
    took = time.monotonic() - turned_off
    scheduler.stop()
    assert report.state == "cancelled", report
    assert took < POLL_SECONDS + 2.0
    assert agent.store.db["sync_ledger"].count == 0  # cancelled before anything derived from data went up
    assert scheduler.phase == "stopped"
    assert scheduler.tick() == "sync is off: no connection is opened"


def test_a_tampered_stored_release_is_refused_and_logged(agent, quiet_server):
    server = quiet_server
    agent.set_sync(True, "cli")
    agent.join_sync(server.state_dir / "coordinator-pin.json", server.token)
    scheduler = idle_scheduler(agent, QUIET)
    scheduler.tick()
    run_clients(server, make_clients(2, make_catalog()), QUIET)
    assert scheduler.wait_for_round(120).state == "released"
    assert agent.global_adapter().B.any()  # version 2 was adopted
    key = server.pin.signing_public_key.hex()
    (body,) = agent.store.db.execute("select body from sync_releases where coordinator_key = ? and version = 2",
                                     [key]).fetchone()
    tampered = bytearray(body)
    tampered[-1] ^= 0x01
    agent.store.db.execute("update sync_releases set body = ? where coordinator_key = ? and version = 2",
                           [bytes(tampered), key])
    agent.refresh_global_adapter()
    # The refused row is skipped: what was in use before it was adopted (the identity) is used again.
    assert not agent.global_adapter().B.any()
    assert latest_verified_release(agent.store, server.pin).version == 1
    refusals = [json.loads(e["payload"]) for e in agent.store.events() if e["kind"] == "global_adapter_refused"]
    assert refusals and refusals[0]["version"] == 2 and "not signed by the pinned" in refusals[0]["problem"]


def test_without_consent_a_stored_release_is_not_used(agent, server):
    agent.join_sync(server.state_dir / "coordinator-pin.json", server.token)  # pinned, never turned on
    agent.store.db.execute("insert into sync_releases (coordinator_key, version, received_at, body) values "
                           "(?, 1, 0, ?)", [server.pin.signing_public_key.hex(), b"whatever"])
    assert not agent.global_adapter().B.any()


# -- the command line --------------------------------------------------------------------------------


def test_sync_commands(agent, server):
    agent.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["sync", "on"])
    assert result.exit_code == 0 and "no coordinator is pinned" in result.output
    assert "ownrec sync join PATH" in result.output
    result = runner.invoke(cli, ["sync", "join", str(server.state_dir / "coordinator-pin.json")])
    assert result.exit_code == 0, result.output
    assert consent.fingerprint(server.pin.signing_public_key) in result.output
    status = json.loads(runner.invoke(cli, ["sync", "status", "--json"]).output)
    assert status["enabled"] is True and status["coordinator_url"] == server.pin.url
    assert status["total"]["released_rounds"] == 0
    result = runner.invoke(cli, ["sync", "off"])
    assert result.exit_code == 0 and "sync off" in result.output
    assert json.loads(runner.invoke(cli, ["sync", "status", "--json"]).output)["enabled"] is False
    result = runner.invoke(cli, ["sync", "join", str(server.state_dir / "missing.json")])
    assert result.exit_code == 1 and "cannot read the pin file" in result.output
    assert json.loads(runner.invoke(cli, ["sync", "log", "--json"]).output) == {"uploads": [], "events": []}
    assert "no uploads yet" in runner.invoke(cli, ["sync", "log"]).output


def test_sync_log_prints_the_ledger(agent, server):
    agent.set_sync(True, "cli")
    agent.join_sync(server.state_dir / "coordinator-pin.json", server.token)
    scheduler = idle_scheduler(agent)
    scheduler.tick()
    others = threading.Thread(target=run_clients, args=(server, make_clients(2, make_catalog())))
    others.start()
    assert scheduler.wait_for_round(120).state == "released"
    others.join(60)
    (row,) = [dict(r) for r in agent.store.db["sync_ledger"].rows]
    agent.close()
    runner = CliRunner()
    shown = json.loads(runner.invoke(cli, ["sync", "log", "--json"]).output)
    (upload,) = shown["uploads"]
    assert upload["round_id"] == row["round_id"] and upload["bytes_sent"] == row["bytes_sent"]
    assert upload["epsilon_client"] == pytest.approx(row["epsilon_client"])
    # The release of a cohort of three carries far more noise than signal, and three likes are too few to
    # judge it by: it is kept out, and the log says why with its figures.
    (decision,) = [e for e in shown["events"] if e["kind"] == "adoption"]
    assert decision["kind"] == "adoption" and decision["state"] == "kept"
    noise = decision["figures"]["noise"]
    assert noise["noise_norm"] > 10 * noise["signal_bound"] and noise["summands"] == 3
    text = runner.invoke(cli, ["sync", "log"]).output
    assert row["round_id"][:8] in text and "released" in text and f"{row['bytes_sent']:,}" in text
    assert f"ε = {row['epsilon_client']:.2f} at δ = 1e-05 over 1 released round" in text
    assert (f"version 2 kept out: too few likes to judge it by (3; a check holds out 5 of at least 20), and its "
            f"noise (expected norm {noise['noise_norm']:.3g}) is larger than any signal it could carry (at most 1); "
            "still using no release (the identity)") in text
    status = runner.invoke(cli, ["sync", "status"]).output
    assert "shared adapter in use: no release (the identity)" in status
