"""Federated rounds over real HTTPS on loopback: the coordinator runs as `ownrec coordinator serve` in a
subprocess, and simulated clients run the product client (`RoundRunner`) in threads. Against SQLite, and
against PostgreSQL when OWNREC_TEST_POSTGRES_URL is set (packaging/postgres.sh starts one)."""

from __future__ import annotations

import os
import sqlite3
import ssl
from contextlib import contextmanager

import httpx
import numpy as np
import pytest

from agent.core.sync.client import RoundAborted, RoundCancelled
from agent.federation.accounting import device_noise, gaussian_epsilon
from agent.federation.clipping import DistributedNoise, clip_to_norm
from agent.federation.neighbourhood import plan_neighbourhood
from agent.core.sync.parameters import train_global_delta
from agent.federation.quantize import QuantizationPlan
from agent.federation.signing import verify_release
from sync_harness import TRAINING, make_catalog, make_clients, postgres_database, run_clients, start_server

POSTGRES_URL = os.environ.get("OWNREC_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """None (SQLite in the coordinator's state directory), or a fresh PostgreSQL database per test."""
    if request.param == "sqlite":
        yield None
        return
    with postgres_database() as url:
        yield url


@contextmanager
def server_for(tmp_path, db_url, **settings):
    server = start_server(tmp_path, db_url, **settings)
    try:
        yield server
    finally:
        server.stop()


def query(server, sql: str) -> list[tuple]:
    """Read the coordinator's own database directly (what a breach of it would expose)."""
    if server.db_url.startswith("sqlite"):
        with sqlite3.connect(server.db_url[len("sqlite:///"):]) as connection:
            return connection.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(server.db_url) as connection:
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in connection.execute(sql).fetchall()]


def expected_contributions(clients, base_vector, layout, cohort_size: int, clip_norm=1.0, noise_multiplier=1.0,
                           max_round_epsilon=10.0):
    """Each client's clipped and noised delta, recomputed here from its data and its seeded generator: its
    distributed share raised to the privacy floor that the coordinator and the clients share by default."""
    plan = plan_neighbourhood(cohort_size)
    noise = device_noise(DistributedNoise(clip_norm, noise_multiplier, plan.min_survivors), max_round_epsilon, 1e-5)
    vectors = {}
    for client in clients:
        delta = train_global_delta(layout, base_vector, client.data.personal, client.data.catalog,
                                   client.data.labels, TRAINING)
        clipped, _ = clip_to_norm(delta, clip_norm)
        vectors[client.seed] = noise.add_to(clipped, client.rng())  # the same draws encode_update makes first
    return vectors, QuantizationPlan.for_cohort(noise, cohort_size)


def released(server, version: int):
    (body,) = query(server, f"select body from releases where version = {version}")[0]
    return verify_release(bytes(body), server.pin.signing_public_key)


def test_full_round_of_20_clients_releases_their_average(tmp_path, db_url):
    catalog = make_catalog()
    clients = make_clients(20, catalog)
    # `ownrec coordinator serve --server-learning-rate 0.5 --item-learning-rate 4`: B_g moves half the cohort
    # average, the item rows twice it.
    with server_for(tmp_path, db_url, server_learning_rate=0.5, item_learning_rate=4) as server:
        run_clients(server, clients)
        errors = [repr(c.error) for c in clients if c.error]
        assert not errors, errors
        assert {c.outcome.state for c in clients} == {"released"}
        base, new = released(server, 1), released(server, 2)
        assert [c.outcome.released_version for c in clients] == [2] * 20
        contributions, quantization = expected_contributions(clients, base.vector, base.layout, 20)
        rate = np.full(base.layout.size, 0.5)
        rate[base.layout.item_offset:] = 0.5 * 4
        expected = base.vector + rate * np.mean(list(contributions.values()), axis=0)
        # Stochastic rounding moves each summand by less than one step, so the average by less than one step.
        assert np.all(np.abs(new.vector - expected) <= rate * quantization.step)
        moved = np.abs(new.vector - base.vector)
        assert moved[:base.layout.item_offset].max() > 10 * quantization.step  # the round really moved B_g ...
        assert moved[base.layout.item_offset:].max() > 20 * quantization.step  # ... and the item rows
        assert new.metadata["summands"] == 20 and new.metadata["rounds"] == 1
        assert (new.metadata["server_learning_rate"], new.metadata["item_learning_rate"]) == (0.5, 4)
        info = httpx.get(server.pin.url + "/v1/info", verify=ssl.create_default_context(
            cadata=server.pin.tls_certificate)).json()
        assert (info["server_learning_rate"], info["item_learning_rate"]) == (0.5, 4)

        # The ledger: one row per upload, with the figures the person is shown.
        for client in clients:
            (row,) = client.ledger
            assert row["state"] == "released" and row["release_version"] == 2
            assert row["clip_norm"] == 1.0 and row["noise_multiplier"] == 1.0
            # The distributed share (1/sqrt(14) per number) is below this device's floor: at epsilon 10 for the
            # round with no other noise in the sum, it adds about 0.5.
            assert 1.0 / np.sqrt(plan_neighbourhood(20).min_survivors) < 0.49 < row["noise_std"] < 0.51
            assert row["epsilon_round_worst"] == pytest.approx(gaussian_epsilon(row["noise_std"], 1e-5))
            assert 9.99 < row["epsilon_round_worst"] <= 10.0
            assert row["epsilon_round_honest"] == pytest.approx(gaussian_epsilon(1.0, 1e-5))  # 4.38
            assert row["pre_clip_norm"] == pytest.approx(np.linalg.norm(train_global_delta(
                base.layout, base.vector, client.data.personal, catalog, client.data.labels, TRAINING)))
            assert row["epsilon_client"] == pytest.approx(row["epsilon_server"]) and 4 < row["epsilon_server"] < 6
            assert row["bytes_sent"] == client.outcome.bytes_sent
            assert 4 * base.layout.size < client.outcome.upload_bytes < 4 * base.layout.size + 16 * 1024

        # What the coordinator stored: masked vectors and the sum, nothing unmasked.
        tables = {name for (name,) in query(server, "select name from sqlite_master where type = 'table'")} \
            if server.db_url.startswith("sqlite") else {name for (name,) in query(
                server, "select tablename from pg_tables where schemaname = 'public'")}
        assert tables == {"coordinator_lock", "coordinator_settings", "devices", "request_nonces", "rounds",
                          "participants", "envelopes", "masked_inputs", "revealed_shares", "releases",
                          "enrolment_tokens", "device_enrolments", "rate_limits", "round_stage_ends", "refusal_counts",
                          "device_steps", "device_privacy"}
        # Each device's privacy, counted once its update was summed: one step (this round's period) each.
        steps = query(server, "select device_id, period, noise_multiplier from device_steps")
        assert len(steps) == 20 and {(period, z) for _, period, z in steps} == {("1", 1.0)}
        assert query(server, "select count(*), count(distinct steps) from device_privacy") == [(20, 1)]
        # Enrolment codes are kept only as hashes: nothing in the database is the code itself.
        ((stored_hash, devices),) = query(server, "select token_hash, devices from enrolment_tokens")
        assert devices == 20 and server.token.replace("-", "") not in stored_hash.upper()
        assert all(server.token not in str(row) for row in query(server, "select * from enrolment_tokens"))
        # Once the cohort was summed its masked inputs were deleted, and once its release was out, its sum:
        # what stays of the round is its row (state, summands, release), for the devices' signed outcomes.
        assert query(server, "select count(*) from masked_inputs") == [(0,)]
        assert query(server, "select state, sum_vector, summands, released_version from rounds") == [
            ("done", None, 20, 2)]
        assert query(server, "select count(*) from revealed_shares") == [(0,)]
        assert query(server, "select count(*) from envelopes") == [(0,)]


DROPOUTS = {
    # 3 leave after sharing their keys (their masks are recovered from shares), 3 after sending their
    # masked input (their inputs count; their self masks are removed from their neighbours' shares).
    "mixed": {**{i: "share-keys" for i in (2, 5, 11)}, **{i: "masked-input" for i in (7, 13, 17)}},
    # 30% leave after masking: six self masks rebuilt from the fourteen who answer the unmasking stage.
    "after-masking": {i: "masked-input" for i in (1, 4, 8, 12, 15, 19)},
}


@pytest.mark.parametrize("dropouts", sorted(DROPOUTS))
def test_a_round_survives_30_percent_dropouts(tmp_path, db_url, dropouts):
    catalog = make_catalog()
    drops = DROPOUTS[dropouts]
    clients = make_clients(20, catalog, drops)
    with server_for(tmp_path, db_url, stage_timeout=6.0) as server:
        run_clients(server, clients)
        for client in clients:
            if client.drop_after:
                assert isinstance(client.error, RoundCancelled)
            else:
                assert client.error is None and client.outcome.state == "released", repr(client.error)
        base, new = released(server, 1), released(server, 2)
        counted = [c for c in clients if c.drop_after != "share-keys"]
        contributions, quantization = expected_contributions(counted, base.vector, base.layout, 20)
        expected = base.vector + np.mean(list(contributions.values()), axis=0)
        assert new.metadata["summands"] == len(counted)
        assert np.max(np.abs(new.vector - expected)) <= quantization.step
        # Gone after sending their masked input: they did not see the end, so their rows stay pending (counted as
        # spent) until the next contact settles them.
        cancelled = [c for c in clients if c.drop_after == "masked-input"]
        assert all(c.ledger[0]["state"] == "pending" and c.ledger[0]["settled_at"] is None for c in cancelled)


def test_below_the_threshold_the_round_aborts_and_nothing_changes(tmp_path, db_url):
    catalog = make_catalog()
    clients = make_clients(20, catalog, {i: "share-keys" for i in range(7)})  # 13 left, 14 needed
    with server_for(tmp_path, db_url, stage_timeout=4.0) as server:
        run_clients(server, clients)
        for client in clients[7:]:
            assert isinstance(client.error, RoundAborted), repr(client.error)
            assert "fewer than the 14" in str(client.error)
            (row,) = client.ledger  # their masked input went up before the stage ended short
            assert row["state"] == "aborted" and row["release_version"] is None
        assert query(server, "select version from releases") == [(1,)]
        assert query(server, "select state, sum_vector from rounds") == [("aborted", None)]
        assert query(server, "select count(*) from masked_inputs") == [(0,)]
        assert query(server, "select count(*) from envelopes") == [(0,)]


def test_two_workers_share_one_postgresql(tmp_path):
    with postgres_database() as url:
        clients = make_clients(20, make_catalog())
        with server_for(tmp_path, url, workers=2) as server:  # requests land on either worker
            run_clients(server, clients)
            assert [c.error for c in clients] == [None] * 20
            assert query(server, "select version from releases order by version") == [(1,), (2,)]
            assert query(server, "select summands from rounds") == [(20,)]
