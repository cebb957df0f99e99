"""Headless sync (`ownrec sync run`, `--forever`): the app scheduler's rules without the app, one line and an exit
code for each outcome, the coordinator's retry times honoured, and no connection at all while sync is off.
Against a real agent (real encoder, real SQLite) and `ownrec coordinator serve` over HTTPS on loopback."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from helpers import catalog, onboarded_agent
from sync_harness import make_catalog, make_clients, run_clients, start_server

from agent.cli import cli
from agent.cli.sync import (EXIT_INTERRUPTED, EXIT_NOT_JOINED, EXIT_NOT_NOW, EXIT_OFF, EXIT_REFUSED,
                            EXIT_RELEASED)
from agent.core.api import Agent
from agent.core.sync.scheduler import APP_ACTIVE_STATE, LAST_START_STATE, RETRY_AT_STATE

LIKES = ["test:sci-0", "test:sci-3", "test:mys-1"]
# Runs the CLI with an audit hook that reports every socket connection and name lookup the process attempts.
AUDITED = ("import sys\n"
           "def hook(event, args):\n"
           "    if event in ('socket.connect', 'socket.getaddrinfo', 'socket.bind'):\n"
           "        sys.stderr.write(f'NETWORK {event} {args[1:]!r}\\n')\n"
           "sys.addaudithook(hook)\n"
           "from agent.cli import main\n"
           "sys.argv = ['ownrec', *sys.argv[1:]]\n"
           "main()\n")


@pytest.fixture
def person(encoder, ownrec_home):
    """An onboarded person with a few likes, closed: the commands open the data folder themselves."""
    agent = onboarded_agent(encoder, catalog())
    for at, ref in enumerate(LIKES):
        agent.store.add_interaction(agent.store.resolve_item(ref).id, "like", at=float(at + 1))
    agent.retrain()
    agent.close()
    return ownrec_home


def sync_run(*args: str):
    return CliRunner().invoke(cli, ["sync", "run", *args])


def coordinator_devices(server) -> int:
    with sqlite3.connect(server.db_url[len("sqlite:///"):]) as db:
        return db.execute("select count(*) from devices").fetchone()[0]


def join_and_turn_on(runner: CliRunner, server, min_cohort: int | None = None) -> None:
    """The person joins `server` with its enrolment code (taking part in cohorts of `min_cohort`) and turns sync on."""
    runner.invoke(cli, ["sync", "join", str(server.state_dir / "coordinator-pin.json"), "--token", server.token])
    if min_cohort is not None:
        runner.invoke(cli, ["config", "set", "sync.min_cohort", str(min_cohort)])
    runner.invoke(cli, ["sync", "on"])


def test_with_sync_off_it_opens_no_connection_at_all(person, tmp_path):
    server = start_server(tmp_path, min_cohort=3, max_cohort=3)
    try:
        runner = CliRunner()
        assert runner.invoke(cli, ["sync", "join", str(server.state_dir / "coordinator-pin.json"), "--token", server.token]).exit_code == 0
        assert runner.invoke(cli, ["sync", "off"]).exit_code == 0
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        once = subprocess.run([sys.executable, "-c", AUDITED, "sync", "run"], capture_output=True, text=True,
                              env=env, timeout=120)
        assert once.returncode == EXIT_OFF, once.stderr
        assert once.stdout == "sync is off: nothing was sent (`ownrec sync on` to take part)\n"
        assert "NETWORK" not in once.stderr, once.stderr
        # --forever waits (without a connection) for sync to be turned on; a service manager's SIGTERM ends it.
        forever = subprocess.Popen([sys.executable, "-c", AUDITED, "sync", "run", "--forever"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert forever.stdout.readline() == "sync is off: nothing was sent (`ownrec sync on` to take part)\n"
        time.sleep(1.0)
        forever.send_signal(signal.SIGTERM)
        out, err = forever.communicate(timeout=30)
        assert forever.returncode == EXIT_INTERRUPTED and err.strip().endswith("interrupted"), err
        assert "NETWORK" not in err and "Traceback" not in err
        assert coordinator_devices(server) == 0  # the coordinator never heard of this device
    finally:
        server.stop()


def test_not_joined_and_a_damaged_pin_are_said_plainly(person):
    assert CliRunner().invoke(cli, ["sync", "on"]).exit_code == 0
    result = sync_run()
    assert result.exit_code == EXIT_NOT_JOINED
    assert result.output == "not joined: no coordinator pinned: `ownrec sync join PATH`\n"
    agent = Agent.open()
    (agent.home.sync() / "coordinator-pin.json").parent.mkdir(parents=True, exist_ok=True)
    (agent.home.sync() / "coordinator-pin.json").write_text("{not json")
    agent.close()
    result = sync_run()
    assert result.exit_code == EXIT_NOT_JOINED and result.output.startswith("not joined: ")
    assert "is not a usable coordinator pin" in result.output


def test_a_headless_round_releases_and_every_figure_shown_is_the_ledgers(person, tmp_path):
    # The default client policy wants a cohort of at least 10: nine simulated people and this device.
    server = start_server(tmp_path, min_cohort=10, max_cohort=10, checkin_window=120.0, stage_timeout=60.0)
    try:
        runner = CliRunner()
        join_and_turn_on(runner, server)
        others = threading.Thread(target=run_clients, args=(server, make_clients(9, make_catalog())))
        others.start()
        result = sync_run()
        others.join(120)
        assert result.exit_code == EXIT_RELEASED, result.output
        agent = Agent.open()
        try:
            (row,) = [dict(r) for r in agent.store.db["sync_ledger"].rows]
            total = agent.sync_privacy(server.pin.signing_public_key.hex())
        finally:
            agent.close()
        assert (row["state"], row["release_version"]) == ("released", 2) and row["settled_at"] is not None
        line = result.output.strip()
        assert "\n" not in line
        privacy = (f"privacy spent: ε = {total.epsilon_client:.2f} at δ = 1e-05 over 1 released round (computed "
                   f"here; the coordinator reports ε = {row['epsilon_server']:.2f})")
        assert line.startswith(f"round {row['round_id'][:8]} released as version 2; {privacy}; version 2 ")
        assert privacy in runner.invoke(cli, ["sync", "status"]).output
        log = runner.invoke(cli, ["sync", "log"]).output
        assert privacy in log and f"{row['bytes_sent']:,}" in log and "released" in log

        # The interval (sync.interval_minutes, 60 by default) has not passed: nothing is sent.
        again = sync_run()
        assert again.exit_code == EXIT_NOT_NOW and again.output == "not now: next round in 60 min\n"
    finally:
        server.stop()


def test_a_refused_check_in_comes_back_at_the_coordinators_retry_time(person, tmp_path):
    server = start_server(tmp_path, min_cohort=3, max_cohort=3, checkin_window=120.0, stage_timeout=20.0)
    try:
        runner = CliRunner()
        join_and_turn_on(runner, server, min_cohort=3)  # cohorts of three
        # A round of three others is running (one of them left after check-in: the stage waits its 20 s out).
        others = make_clients(3, make_catalog(), {0: "checked-in"})
        running = threading.Thread(target=run_clients, args=(server, others))
        running.start()
        with sqlite3.connect(server.db_url[len("sqlite:///"):]) as db:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not db.execute(
                    "select 1 from rounds where state = 'advertise'").fetchone():
                time.sleep(0.1)
        result = sync_run()
        assert result.exit_code == EXIT_REFUSED, result.output
        agent = Agent.open()
        retry_at = agent.store.get_state(RETRY_AT_STATE)
        agent.close()
        # The coordinator's time: when the running cohort's release is expected, its first stage's deadline
        # plus the three stages after it at most (each cohort is released on its own by default).
        waited = retry_at - time.time()
        # ...spread (`come_back_in`): up to a quarter more after a first refusal.
        assert 3 * 20 < waited <= 1.25 * (4 * 20) + 1
        assert result.output.startswith("round refused by the coordinator: the release period on version 1 has closed")
        assert "(release_pending); next check-in in " in result.output, result.output
        assert "s (the coordinator asked for " in result.output and "refused devices spread out)" in result.output
        # Not a whole interval (60 min): until that time, and no longer.
        again = sync_run()
        assert again.exit_code == EXIT_NOT_NOW
        assert again.output.startswith("not now: the coordinator turned this device away: next check-in in ")
        agent = Agent.open()
        agent.store.set_state(RETRY_AT_STATE, time.time() - 1)  # the retry time has come
        assert agent.store.get_state(LAST_START_STATE) > time.time() - 60  # a start less than a minute ago
        scheduler = agent.sync_scheduler(in_app=False)
        assert scheduler.decide().kind == "start"
        # A key press in the app (kept in the store) holds a headless round back, as it does the app's.
        agent.store.set_state(APP_ACTIVE_STATE, time.time())
        assert scheduler.decide().phase == "waiting until the app is idle for 30 s"
        agent.close()
        running.join(120)
    finally:
        server.stop()


def test_ctrl_c_cancels_the_round_and_exits_cleanly(person, tmp_path):
    server = start_server(tmp_path, min_cohort=3, max_cohort=3, checkin_window=300.0)
    try:
        runner = CliRunner()
        join_and_turn_on(runner, server, min_cohort=3)  # cohorts of three
        # As from a terminal: Ctrl-C's signal handled by default (an ignored SIGINT would be inherited).
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "sync", "run", "--forever"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": os.getcwd()},
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        with sqlite3.connect(server.db_url[len("sqlite:///"):]) as db:  # checked in, alone: it waits for two more
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not db.execute("select 1 from participants").fetchone():
                time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = process.communicate(timeout=60)
        assert process.returncode == EXIT_INTERRUPTED, (out, err)
        assert time.monotonic() - sent < 10
        assert err.strip() == "interrupted: the round was cancelled" and "Traceback" not in err
        agent = Agent.open()
        assert agent.store.db["sync_ledger"].count == 0  # nothing derived from data was uploaded
        (event,) = [json.loads(e["payload"]) for e in agent.store.events() if e["kind"] == "sync_round"]
        assert event["state"] == "cancelled"
        agent.store.set_state(LAST_START_STATE, time.time() - 3600)
        agent.close()
        # The coordinator still counts it in the forming cohort: it says so, and when to come back (the cohort's
        # check-in deadline, plus the four stages at most).
        result = sync_run()
        assert result.exit_code == EXIT_REFUSED
        assert result.output.startswith("round refused by the coordinator: this device is already in round ")
        assert "(already_in_cohort); next check-in in " in result.output
        agent = Agent.open()
        assert 300 - 30 < agent.store.get_state(RETRY_AT_STATE) - time.time() <= 1.25 * (300 + 4 * 30)
        agent.close()
    finally:
        server.stop()


def test_the_service_units_run_sync_run_and_count_its_outcomes_as_success():
    import configparser
    import plistlib
    from pathlib import Path

    from agent.cli.sync import EXIT_NO_RELEASE

    packaging = Path(__file__).parent.parent.parent / "packaging"
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(packaging / "systemd" / "ownrec-sync.service")
    assert service["Service"]["ExecStart"].endswith("/ownrec sync run")
    assert service["Service"]["Type"] == "oneshot"
    success = {int(code) for code in service["Service"]["SuccessExitStatus"].split()}
    assert success == {EXIT_OFF, EXIT_NOT_JOINED, EXIT_NOT_NOW, EXIT_REFUSED, EXIT_NO_RELEASE}
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(packaging / "systemd" / "ownrec-sync.timer")
    assert timer["Install"]["WantedBy"] == "timers.target" and timer["Timer"]["OnUnitActiveSec"] == "15min"
    launchd = plistlib.loads((packaging / "launchd" / "org.ownrec.sync.plist").read_bytes())
    assert launchd["ProgramArguments"][1:] == ["sync", "run"] and launchd["StartInterval"] == 900


def test_one_run_is_one_round_even_when_the_interval_has_passed_by_its_end(person, tmp_path):
    from sync_harness import POLICY

    server = start_server(tmp_path, min_cohort=3, max_cohort=3, checkin_window=120.0)
    try:
        agent = Agent.open()
        agent.join_sync(server.state_dir / "coordinator-pin.json", server.token)
        agent.set_sync(True, "cli")
        scheduler = agent.sync_scheduler(in_app=False, policy=POLICY)
        scheduler.interval_minutes = 0  # another round would be due the moment this one ends
        others = threading.Thread(target=run_clients, args=(server, make_clients(2, make_catalog())))
        others.start()
        decision, report = scheduler.run_once()
        others.join(120)
        assert decision.kind == "start" and report.state == "released", report
        time.sleep(1.0)
        assert not scheduler.round_running
        with sqlite3.connect(server.db_url[len("sqlite:///"):]) as db:
            assert db.execute("select count(*) from participants").fetchone()[0] == 3  # one check-in from here
        assert [json.loads(e["payload"])["state"] for e in agent.store.events() if e["kind"] == "sync_round"] \
            == ["released"]
        agent.close()
    finally:
        server.stop()


def test_forever_comes_back_at_the_retry_time_and_takes_part(person, tmp_path):
    server = start_server(tmp_path, min_cohort=10, max_cohort=10, checkin_window=120.0, stage_timeout=6.0)
    try:
        runner = CliRunner()
        join_and_turn_on(runner, server)
        # A round of ten others is running; one left after checking in, so its first stage waits 6 s.
        first = threading.Thread(target=run_clients, args=(server, make_clients(10, make_catalog(),
                                                                                    {0: "checked-in"})))
        first.start()
        with sqlite3.connect(server.db_url[len("sqlite:///"):]) as db:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not db.execute(
                    "select 1 from rounds where state = 'advertise'").fetchone():
                time.sleep(0.05)
        # As from a terminal: Ctrl-C's signal handled by default (an ignored SIGINT would be inherited).
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "sync", "run", "--forever"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": os.getcwd()},
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            refused = process.stdout.readline()
            refused_at = time.monotonic()
            assert refused.startswith("round refused by the coordinator: the release period on version 1 "), refused
            retry = float(refused.split("next check-in in ")[1].split(" s")[0])
            assert 0 < retry <= 6 + 4 * 6
            first.join(120)
            # Nine more people check in; the device comes back at its retry time (not an hour later) and makes ten.
            second = threading.Thread(target=run_clients, args=(server, make_clients(9, make_catalog())))
            second.start()
            released = process.stdout.readline()
            assert " released as version " in released and "; privacy spent: ε = " in released, released
            assert time.monotonic() - refused_at < retry + 60
            second.join(120)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=60)
        assert process.returncode == EXIT_INTERRUPTED and "Traceback" not in err, err
    finally:
        server.stop()


def test_refused_devices_come_back_spread_out_and_less_often_with_each_refusal_in_a_row():
    import random

    from agent.core.sync.scheduler import come_back_in

    rng = random.Random(3)
    # Never before the coordinator's time; a first refusal adds up to a quarter of it.
    first = [come_back_in(120.0, 1, 3600.0, rng) for _ in range(1000)]
    assert 120.0 <= min(first) and max(first) <= 150.0
    assert len({round(w) for w in first}) > 25  # 1,000 devices turned away together do not return in one second
    # The random part doubles with each refusal in a row, up to one interval.
    spans = [max(come_back_in(120.0, k, 3600.0, rng) for _ in range(2000)) - 120.0 for k in (1, 2, 3, 10)]
    assert 25 < spans[0] <= 30 and 50 < spans[1] <= 60 and 100 < spans[2] <= 120 and 3400 < spans[3] <= 3600
    # A time of 0 ("fetch the release and come back") still waits a moment.
    assert 1.0 <= come_back_in(0.0, 1, 3600.0, rng) <= 1.25
    assert 1.0 <= come_back_in(None, 1, 3600.0, rng) <= 1.25
