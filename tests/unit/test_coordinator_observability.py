"""The coordinator's operations surface, run as deployed (`ownrec coordinator serve`, HTTPS on loopback): its
JSON log lines of round events and refusals, GET /healthz and GET /metrics, on SQLite and on PostgreSQL with two
workers (OWNREC_TEST_POSTGRES_URL; skipped when unset)."""

from __future__ import annotations

import json
import os
import secrets
import ssl
from urllib.parse import urlparse

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.federation.signing import device_id_of, public_bytes, sign_request
from agent.server.coordinator import Coordinator
from agent.server.metrics import health
from agent.server.observability import FIELDS
from agent.server.settings import CoordinatorSettings
from agent.server.state import SQLiteStorage
from agent.server.app import default_layout, load_or_create_signing_key
from sync_harness import make_catalog, make_clients, postgres_database, run_clients, start_server

POSTGRES_URL = os.environ.get("OWNREC_TEST_POSTGRES_URL")
STAGES = ("forming", "advertise", "share", "masked", "unmask")
ROUND = {"min_cohort": 3, "max_cohort": 3, "log_level": "info", "log_format": "json"}


def fresh_client(server) -> httpx.Client:
    """A new HTTPS connection each time: with several workers, requests land on either of them."""
    return httpx.Client(base_url=server.pin.url, verify=ssl.create_default_context(cadata=server.pin.tls_certificate),
                        timeout=30)


def get(server, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    with fresh_client(server) as client:
        return client.get(path, headers=headers or {})


def signed_get(server, key, path: str) -> httpx.Response:
    with fresh_client(server) as client:
        return client.get(path, headers=sign_request(key, "GET", path, b""))


def scrape(server, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics, by (sample name, sorted labels)."""
    response = get(server, "/metrics", headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def refusals(samples, code: str, status: int) -> float:
    return samples.get(("ownrec_refusals_total", (("code", code), ("status", str(status)))), 0.0)


def log_lines(server) -> list[dict]:
    lines = [line for line in server.log().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object, uvicorn's included


def run_round(server, count: int = 3):
    clients = make_clients(count, make_catalog())
    run_clients(server, clients)
    assert [c.error for c in clients] == [None] * count
    assert {c.outcome.released_version for c in clients} == {2}
    return clients


def refuse_twice(server, key) -> None:
    """One unauthenticated request and one signed by a registered device for a round that does not exist."""
    missing = "0" * 32
    response = get(server, f"/v1/rounds/{missing}/status")
    assert (response.status_code, response.json()["error"]) == (401, "unauthenticated")
    response = signed_get(server, key, f"/v1/rounds/{missing}/outcome")
    assert (response.status_code, response.json()["error"]) == (404, "unknown_round")


def assert_round_metrics(samples, devices: int) -> None:
    assert samples[("ownrec_releases_total", ())] == 1
    assert samples[("ownrec_release_latest_version", ())] == 2
    assert samples[("ownrec_rounds_finished_total", (("state", "done"),))] == 1
    assert samples[("ownrec_rounds_finished_total", (("state", "aborted"),))] == 0
    assert samples[("ownrec_rounds_active", (("state", "advertise"),))] == 0
    assert samples[("ownrec_checkins_total", ())] == devices
    assert samples[("ownrec_devices_registered", ())] == devices
    assert samples[("ownrec_devices_enrolled", ())] == devices
    for stage in STAGES:  # each stage of the one round ended once
        assert samples[("ownrec_stage_duration_seconds_count", (("stage", stage),))] == 1
        assert samples[("ownrec_stage_duration_seconds_bucket", (("le", "+Inf"), ("stage", stage)))] == 1
        assert samples[("ownrec_stage_duration_seconds_sum", (("stage", stage),))] >= 0
    assert samples[("ownrec_privacy_epsilon_spent", ())] > 0
    assert samples[("ownrec_privacy_epsilon_budget", ())] == 50.0  # the harness's budget


def test_a_round_and_two_refusals_show_in_the_metrics_and_the_json_log(tmp_path):
    server = start_server(tmp_path, **ROUND)
    try:
        before = scrape(server)
        assert before[("ownrec_releases_total", ())] == 0
        assert before[("ownrec_stage_duration_seconds_count", (("stage", "advertise"),))] == 0
        clients = run_round(server)
        middle = scrape(server)
        assert_round_metrics(middle, devices=3)
        info = get(server, "/v1/info").json()
        assert middle[("ownrec_privacy_epsilon_spent", ())] == pytest.approx(info["epsilon"])
        refuse_twice(server, clients[0].key)
        after = scrape(server)
        assert refusals(after, "unauthenticated", 401) == refusals(middle, "unauthenticated", 401) + 1
        assert refusals(after, "unknown_round", 404) == refusals(middle, "unknown_round", 404) + 1
        response = get(server, "/v1/no-such-thing")
        assert (response.status_code, response.json()["error"]) == (404, "no_such_endpoint")
        assert refusals(scrape(server), "no_such_endpoint", 404) == 1

        health_response = get(server, "/healthz")
        assert health_response.status_code == 200
        assert health_response.json() == {"status": "ok", "database": "reachable", "latest_version": 2,
                                          "active_rounds": 0}
    finally:
        server.stop()

    lines = log_lines(server)
    events = [line for line in lines if "event" in line]
    assert all(line["logger"] == "ownrec.coordinator" for line in events)
    (opened,) = [e for e in events if e["event"] == "round_opened"]
    round_id = opened["round_id"]
    (formed,) = [e for e in events if e["event"] == "cohort_formed"]
    assert (formed["round_id"], formed["cohort_size"]) == (round_id, 3) and formed["seconds"] >= 0
    ended = [e for e in events if e["event"] == "stage_ended"]
    assert [(e["stage"], e["survivors"]) for e in ended] == [(s, 3) for s in STAGES[1:]]
    assert all(e["seconds"] >= 0 and e["round_id"] == round_id for e in ended)
    (summed,) = [e for e in events if e["event"] == "round_summed"]
    assert (summed["round_id"], summed["summands"], summed["level"]) == (round_id, 3, "info")
    (released,) = [e for e in events if e["event"] == "release_published"]
    assert (released["round_ids"], released["cohorts"], released["version"], released["summands"]) == \
        ([round_id], 1, 2, 3)
    refused = {e["code"]: e for e in events if e["event"] == "request_refused"}
    assert refused["unauthenticated"]["status"] == 401
    assert refused["unauthenticated"]["route"] == "/v1/rounds/{round_id}/status"
    assert "device" not in refused["unauthenticated"] and "claimed_device" not in refused["unauthenticated"]
    device = device_id_of(public_bytes(clients[0].key))
    assert (refused["unknown_round"]["device"], refused["unknown_round"]["status"]) == (device, 404)
    assert refused["unknown_round"]["address"] == "127.0.0.1"
    # No vector, key or code reaches the log: only the fields named in `observability`, no public key, no token.
    text = server.log()
    assert server.token not in text
    assert not any(public_bytes(c.key).hex() in text for c in clients)
    allowed = {"time", "level", "logger", "message", "pid", "exception"} | set(FIELDS)
    assert all(set(line) <= allowed for line in lines)
    assert max(len(line) for line in text.splitlines()) < 1000


def test_metrics_need_the_bearer_token_when_one_is_configured(tmp_path):
    token_file = tmp_path / "metrics-token"
    token = secrets.token_hex(32)
    token_file.write_text(token + "\n")
    server = start_server(tmp_path, log_format="json", metrics_token_file=token_file)
    try:
        response = get(server, "/metrics")
        assert (response.status_code, response.json()["error"]) == (401, "metrics_unauthorized")
        assert get(server, "/metrics", {"authorization": "Bearer wrong"}).status_code == 401
        samples = scrape(server, {"authorization": f"Bearer {token}"})
        assert refusals(samples, "metrics_unauthorized", 401) == 2
        assert get(server, "/healthz").status_code == 200  # health stays open: it says nothing private
    finally:
        server.stop()
    assert token not in server.log()


def test_health_is_503_when_the_database_does_not_answer(tmp_path):
    storage = SQLiteStorage(tmp_path / "coordinator.sqlite3")
    coordinator = Coordinator(storage, load_or_create_signing_key(tmp_path), CoordinatorSettings(min_cohort=3),
                              default_layout=default_layout(dim=8, rank=2, residual_rank=2))
    assert health(coordinator) == (200, {"status": "ok", "database": "reachable", "latest_version": 1,
                                         "active_rounds": 0})
    storage.close()  # every query now fails, as when the database is gone
    assert health(coordinator) == (503, {"status": "unavailable", "database": "unreachable"})


def test_two_workers_on_postgresql_report_the_same_totals(tmp_path):
    """Refusals are answered by whichever worker takes the connection; every scrape, on either worker, must
    count all of them (per-process counters would not). Then the database refuses connections: 503."""
    with postgres_database() as url:
        import psycopg

        name = urlparse(url).path.lstrip("/")
        server = start_server(tmp_path, url, workers=2, **ROUND)
        try:
            run_round(server)
            base = refusals(scrape(server), "unauthenticated", 401)
            for _ in range(12):
                assert get(server, f"/v1/rounds/{'0' * 32}/status").status_code == 401
            for _ in range(6):
                samples = scrape(server)
                assert refusals(samples, "unauthenticated", 401) == base + 12
                assert_round_metrics(samples, devices=3)
            assert get(server, "/healthz").json()["latest_version"] == 2

            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute(f"alter database {name} with allow_connections false")
                admin.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", [name])
            response = get(server, "/healthz")
            assert (response.status_code, response.json()) == (503, {"status": "unavailable",
                                                                     "database": "unreachable"})
            assert get(server, "/metrics").status_code == 503
            with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
                admin.execute(f"alter database {name} with allow_connections true")
            assert get(server, "/healthz").status_code == 200  # a worker reconnects by itself
            assert refusals(scrape(server), "unauthenticated", 401) == base + 12
        finally:
            server.stop()
        pids = {line["pid"] for line in log_lines(server) if line.get("event") == "request_refused"}
        print(f"refusals answered by {len(pids)} worker process(es)")


def test_auto_log_format_is_text_on_a_terminal_and_json_otherwise():
    from agent.server.observability import resolve_log_format

    primary, secondary = os.openpty()
    read, write = os.pipe()
    try:
        with open(secondary, "w", closefd=False) as terminal, open(write, "w", closefd=False) as pipe:
            assert resolve_log_format("auto", terminal) == "text"
            assert resolve_log_format("auto", pipe) == "json"
            assert resolve_log_format("text", pipe) == "text"
    finally:
        for descriptor in (primary, secondary, read, write):
            os.close(descriptor)
    with pytest.raises(ValueError, match="unknown log format 'yaml'"):
        resolve_log_format("yaml")


def test_a_json_line_carries_only_the_named_fields():
    import logging

    from agent.server.observability import JsonFormatter

    record = logging.LogRecord("ownrec.coordinator", logging.INFO, __file__, 1, "round %s opened", ("ab",), None)
    record.ownrec = {"event": "round_opened", "round_id": "ab", "vector": [0.5] * 4, "token": "SECRET"}
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "round ab opened" and (line["event"], line["round_id"]) == ("round_opened", "ab")
    assert "vector" not in line and "token" not in line and line["level"] == "info" and line["pid"] == os.getpid()
