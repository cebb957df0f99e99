"""Concurrent cohorts and release periods over real HTTPS (`agent.server.periods`): cohorts running at once
make one release from their combined sums, a refused device comes back when it is told, and what the
coordinator stores stays bounded as rounds go on. Against SQLite, and PostgreSQL when
OWNREC_TEST_POSTGRES_URL is set; the PostgreSQL cases with three workers."""

from __future__ import annotations

import os
import ssl
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from sync_harness import POLICY, make_catalog, make_clients, run_clients
from test_sync_round import db_url, expected_contributions, query, released, server_for  # noqa: F401 (fixture)

from agent.federation.accounting import gaussian_epsilon


def info(server) -> dict:
    return httpx.get(server.pin.url + "/v1/info", verify=ssl.create_default_context(
        cadata=server.pin.tls_certificate)).json()


def workers_for(url) -> dict:
    """Three workers on PostgreSQL (several processes sharing the load), one on SQLite."""
    return {} if url is None else {"workers": 3}


def test_two_cohorts_at_once_make_one_release_of_their_combined_average(tmp_path, db_url):  # noqa: F811
    catalog = make_catalog()
    clients = make_clients(10, catalog)
    # Cohorts of five, two at a time, and a period of 15 s: the ten devices make two cohorts on version 1.
    with server_for(tmp_path, db_url, min_cohort=5, max_cohort=5, max_concurrent_rounds=2, release_period=15.0,
                    **workers_for(db_url)) as server:
        # A round lasts the period and then its stages: under a loaded machine, 120 s was once too short to see
        # the release within the round (the outcome was "summed").
        run_clients(server, clients, replace(POLICY, round_timeout=600.0))
        errors = [repr(c.error) for c in clients if c.error]
        assert not errors, errors
        assert [c.outcome.state for c in clients] == ["released"] * 10
        assert {c.outcome.released_version for c in clients} == {2}
        rounds = query(server, "select round_id, state, summands, released_version, sum_vector, created_at "
                               "from rounds order by created_at")
        assert [(state, summands, version, vector) for _, state, summands, version, vector, _ in rounds] == [
            ("done", 5, 2, None)] * 2  # both released in version 2, their sums dropped since
        # The second opened while the first was running (its stages take seconds; the period 15 s).
        assert rounds[1][5] - rounds[0][5] < 15.0
        base, new = released(server, 1), released(server, 2)
        assert new.metadata["round_ids"] == sorted(r[0] for r in rounds) and new.metadata["cohorts"] == 2
        assert new.metadata["summands"] == 10
        # The release is base + the average of all ten clients' (clipped, noised) updates, whichever cohort.
        contributions, quantization = expected_contributions(clients, base.vector, base.layout, 5)
        expected = base.vector + np.mean(list(contributions.values()), axis=0)
        assert np.all(np.abs(new.vector - expected) <= quantization.step)
        assert np.abs(new.vector - base.vector).max() > 10 * quantization.step
        # One composition step for everyone: the two cohorts hold different people.
        announced = info(server)
        assert announced["rounds"] == 1 and new.metadata["rounds"] == 1
        assert announced["epsilon"] == pytest.approx(gaussian_epsilon(1.0, 1e-5), rel=1e-6)
        for client in clients:
            (row,) = client.ledger
            assert (row["state"], row["release_version"]) == ("released", 2)
            assert row["epsilon_client"] == pytest.approx(announced["epsilon"], rel=1e-6)
        # Nothing per device is left once the cohorts were summed.
        for table in ("masked_inputs", "envelopes", "revealed_shares"):
            assert query(server, f"select count(*) from {table}") == [(0,)]


def test_a_refused_device_comes_back_at_the_time_it_was_given_and_takes_part(tmp_path, db_url):  # noqa: F811
    catalog = make_catalog()
    # One cohort at a time: a device checking in while a cohort runs is told when the release is due.
    with server_for(tmp_path, db_url, min_cohort=3, max_cohort=3, max_concurrent_rounds=1, release_period=0.0,
                    stage_timeout=6.0, **workers_for(db_url)) as server:
        first = make_clients(3, catalog, {0: "checked-in"})  # one leaves: the first stage waits its 6 s out
        running = threading.Thread(target=run_clients, args=(server, first))
        running.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not query(server, "select 1 from rounds where state = 'advertise'"):
            time.sleep(0.05)
        late = make_clients(4, catalog)[3:]
        run_clients(server, late)
        (client,) = late
        error = client.error
        assert error is not None and error.code == "round_in_progress" and error.refused_check_in, repr(error)
        asked_at = time.time()
        assert 0 < error.retry_after <= 6 + 3 * 6 + 1
        running.join(120)
        # The device waits the time it was given (not an interval), then checks in with two others.
        time.sleep(max(0.0, asked_at + error.retry_after - time.time()))
        client.error, client.cancel = None, threading.Event()
        others = make_clients(6, catalog)[4:]
        run_clients(server, [client, *others])
        assert client.error is None and client.outcome.state == "released", repr(client.error)


def test_release_versions_are_never_duplicated_and_stored_bytes_stay_bounded(tmp_path, db_url):  # noqa: F811
    catalog = make_catalog()
    # Three cohorts of three at once, a short period, and the last two releases kept.
    settings = dict(min_cohort=3, max_cohort=3, max_concurrent_rounds=3, release_period=4.0, keep_releases=2,
                    stage_timeout=10.0, **workers_for(db_url))
    sizes = []
    with server_for(tmp_path, db_url, **settings) as server:
        for period in range(3):
            clients = make_clients(9, catalog)
            for client in clients:
                client.seed += 100 * period  # new people every period
            run_clients(server, clients)
            states = [c.outcome.state if c.outcome else type(c.error).__name__ for c in clients]
            assert states.count("released") >= 6, states
            sizes.append(stored_bytes(server))
        versions = [v for (v,) in query(server, "select version from releases order by version")]
        released_versions = [v for (v,) in query(server, "select distinct released_version from rounds where "
                                                         "released_version is not null order by 1")]
        assert released_versions == [2, 3, 4]  # one release per period, whatever the workers
        assert versions == [3, 4]  # the last two bodies; older ones deleted
        assert query(server, "select count(*) from rounds where sum_vector is not null") == [(0,)]
        for table in ("masked_inputs", "envelopes", "revealed_shares"):
            assert query(server, f"select count(*) from {table}") == [(0,)]
        parameters = released(server, 4).layout.size
    # Past the second period (two release bodies kept), a period adds only its small rows (a few hundred bytes
    # per round, participant and new device; SQLite and PostgreSQL grow each table and index a page at a time,
    # which made a quarter too tight: it failed now and then on the code before too): less than half of what
    # its 9 masked inputs alone would add if they were kept (4 bytes a number).
    assert sizes[2] - sizes[1] < 9 * 4 * parameters / 2, sizes


def stored_bytes(server) -> int:
    """What the coordinator stores, less the request nonces (kept 10 minutes whatever the rounds): a compacted
    copy of the SQLite file, or PostgreSQL's tables with their indexes after a vacuum."""
    if server.db_url.startswith("sqlite"):
        import sqlite3

        path = Path(server.db_url[len("sqlite:///"):])
        copy = path.with_name("measured.sqlite3")
        with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        with sqlite3.connect(copy, isolation_level=None) as connection:
            connection.execute("delete from request_nonces")
            connection.execute("vacuum")
        size = os.path.getsize(copy)
        copy.unlink()
        return size
    import psycopg

    with psycopg.connect(server.db_url, autocommit=True) as connection:
        connection.execute("vacuum")
        return int(connection.execute(
            "select sum(pg_total_relation_size(c.oid)) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and c.relkind = 'r' and c.relname <> 'request_nonces'").fetchone()[0])
