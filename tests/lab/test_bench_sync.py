"""`ownrec bench sync` end to end: a real coordinator process, 12 product clients over 2 worker processes
on loopback HTTPS, and the BENCHMARKS.md sync section replaced without touching the rest."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from agent.federation.neighbourhood import plan_neighbourhood
from agent.lab.bench.runner import suite_results_in, write_suite_report, write_sync_report
from agent.lab.bench.sync_costs import client_round_costs
from agent.lab.bench.coordinator import (SECTION_BEGIN, SECTION_END, SyncBenchFailed, TARGET_OVERHEAD_BYTES,
                                replace_sync_section, sync_summary_rows, work_grows_with_log_n, write_sync_section)

PARAMETERS = 384 * 16 + 1682 * (1 + 32)  # the default layout: B_g (384 x 16) + per MovieLens-100K film a bias and a 32-d residual

BEFORE = "# Benchmarks\n\n| what | ownrec |\n|---|---|\n| ranking | 8 ms |\n\n"
AFTER = "\nRaw figures:\n\n```json\n{\"quick\": false}\n```\n"


def test_bench_sync_command_measures_one_round_and_replaces_only_its_section(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text(BEFORE + SECTION_BEGIN + "\nold figures\n" + SECTION_END + AFTER)
    done = subprocess.run([sys.executable, "-m", "agent.cli", "bench", "sync", "--clients", "12", "--workers", "2",
                           "--json", "--output", str(report)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "12 clients over 2 worker processes" in done.stderr  # progress goes to stderr, figures to stdout
    results = json.loads(done.stdout)

    assert results["parameters"] == PARAMETERS
    (round_,) = results["rounds"]
    assert round_["clients"] == 12 and round_["worker_processes"] == 2
    assert round_["released_version"] == 2  # every client verified the round's signed release
    assert 0 < round_["wall_seconds"] < 60
    assert round_["server_cpu_seconds"] > 0
    assert round_["server_peak_rss_bytes"] >= round_["server_rss_at_start_bytes"] > 10 * 2**20
    # The masked input alone is 4 bytes per parameter; everything else is a fixed overhead under 16 KiB.
    assert 4 * PARAMETERS < round_["stage_message_bytes_per_client_median"] <= round_["bytes_sent_per_client_median"]
    assert 0 < round_["overhead_bytes_per_client"] < TARGET_OVERHEAD_BYTES
    assert round_["overhead_bytes_per_client"] == round_["bytes_sent_per_client_median"] - 4 * PARAMETERS
    assert 4 < round_["bytes_per_parameter"] < 4 + TARGET_OVERHEAD_BYTES / PARAMETERS
    assert round_["bytes_per_parameter"] < results["flower_secagg_plus_bytes_per_parameter"]
    # Where the bytes go: the client that sent the most, request by request, adds up to what it sent.
    slowest = round_["sent_by_kind_slowest_client"]
    assert sum(kind["bytes"] for kind in slowest.values()) == round_["bytes_sent_per_client_max"]
    assert {kind: slowest[kind]["requests"] for kind in ("checkin", "advertise-keys", "share-keys", "masked-input",
                                                          "unmasking", "neighbour-keys", "envelopes", "survivors")} \
        == dict.fromkeys(("checkin", "advertise-keys", "share-keys", "masked-input", "unmasking", "neighbour-keys",
                          "envelopes", "survivors"), 1)
    assert slowest["release"]["requests"] == 2 and slowest["status"]["requests"] >= 5  # one long poll per wait at least
    status = round_["sent_by_kind_median"]["status"]
    assert status["bytes"] / status["requests"] < 300  # a signed GET: request line, host and one auth header

    costs = {cost["cohort_size"]: cost for cost in results["client_costs"]}
    assert sorted(costs) == [100, 1_000, 10_000, 100_000]
    degrees = [costs[n]["neighbours"] for n in sorted(costs)]
    assert degrees == sorted(degrees) and degrees[-1] < 200  # sparse: k grows with n, but nowhere near n
    assert costs[100_000]["neighbours_per_log2_n"] < costs[1_000]["neighbours_per_log2_n"]  # k / log n levels off
    assert all(0 < cost["client_seconds"] < 5 for cost in costs.values())
    assert all(cost["bytes_per_parameter"] < 8 for cost in costs.values())

    text = report.read_text()
    assert text.startswith(BEFORE + SECTION_BEGIN) and text.endswith(SECTION_END + AFTER)
    assert "old figures" not in text and text.count(SECTION_BEGIN) == 1
    section = text[len(BEFORE):-len(AFTER)]
    assert "| 12 clients |" in section and f"{PARAMETERS:,} parameters" in section
    assert f"**{round_['bytes_per_parameter']:.2f}**" in section and "Flower SecAgg+" in section
    assert f"| 100,000 | {costs[100_000]['neighbours']} |" in section
    assert "| status | " in section and "| masked-input | 1 req, " in section

    # In a report `ownrec bench` wrote, the sync figures are replaced and the whole report rendered again:
    # the summary table and the section agree, the other figures stay, and the report says the sync run was later.
    suite = tmp_path / "SUITE.md"
    write_suite_report(suite, {**CORE_FIGURES, "sync": {"error": "an older run that failed"}})
    assert "an older run that failed" in suite.read_text() and SECTION_BEGIN not in suite.read_text()
    write_sync_report(suite, results)
    rendered = suite.read_text()
    assert "an older run that failed" not in rendered and rendered.count(SECTION_BEGIN) == 1
    assert f"**{round_['bytes_per_parameter']:.2f} B/param** (median client)" in rendered  # the summary row
    assert "| rank 100,000 synthetic items (slate 20) | p50 **9.5 ms**" in rendered       # the core rows, kept
    assert "from a later `ownrec bench sync`" in rendered
    assert suite_results_in(suite)["sync"]["rounds"] == results["rounds"]


def test_sync_section_is_appended_once_then_replaced(tmp_path: Path) -> None:
    report = tmp_path / "BENCHMARKS.md"
    report.write_text(BEFORE)
    first = f"{SECTION_BEGIN}\none\n{SECTION_END}"
    write_sync_section(report, first)
    assert report.read_text() == BEFORE.rstrip("\n") + "\n\n" + first + "\n"
    write_sync_section(report, f"{SECTION_BEGIN}\ntwo\n{SECTION_END}")
    assert report.read_text() == BEFORE.rstrip("\n") + "\n\n" + f"{SECTION_BEGIN}\ntwo\n{SECTION_END}" + "\n"
    assert not list(tmp_path.glob(".BENCHMARKS.md.*"))  # the temporary file was renamed, not left behind


def test_a_half_marked_section_is_refused_rather_than_duplicated() -> None:
    with pytest.raises(SyncBenchFailed, match="only one of"):
        replace_sync_section(BEFORE + SECTION_BEGIN + "\nno end marker\n", f"{SECTION_BEGIN}\nx\n{SECTION_END}")


def test_the_cli_refuses_a_cohort_too_small_for_a_round(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "agent.cli", "bench", "sync", "--clients", "100,2",
                           "--output", str(tmp_path / "B.md")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "at least 3 clients" in done.stderr
    assert not (tmp_path / "B.md").exists()


CORE_FIGURES = {
    "machine": {"cpus": 2, "python": "3.11", "platform": "Linux", "numpy": "2"}, "quick": True,
    "encoder": {"texts": 1682, "ownrec_texts_per_s": 900.0, "sentence_transformers_texts_per_s": 400.0,
                "speedup": 2.25, "mean_cosine": 0.993, "min_cosine": 0.98},
    "ranking_demo": {"items": 1682, "slate": 20, "p50_ms": 3.0, "p95_ms": 3.5},
    "ranking_100k": {"items": 100_000, "slate": 20, "p50_ms": 9.5, "p95_ms": 12.0},
    "feedback": {"p50_ms": 8.0, "p95_ms": 12.0, "full_retrain_s": 0.6, "full_retrain_labels": 60},
    "first_feed": {"median_s": 1.7, "max_s": 1.8, "n": 3},
}


def sync_results(overheads: dict[int, tuple[float, float]], per_log2_n: dict[int, float]) -> dict:
    """Sync figures with the given (median, slowest) fixed overhead per cohort and client seconds / log2 n."""
    rounds = [{"clients": n, "wall_seconds": 1.0, "server_cpu_seconds": 1.0, "server_peak_rss_bytes": 2**28,
               "bytes_per_parameter": 4 + median / PARAMETERS, "overhead_bytes_per_client": median,
               "bytes_sent_per_client_median": 4 * PARAMETERS + median,
               "bytes_sent_per_client_max": 4 * PARAMETERS + slowest} for n, (median, slowest) in overheads.items()]
    costs = [{"cohort_size": n, "neighbours": 10 + n.bit_length(), "client_seconds": ratio * math.log2(n),
              "client_seconds_per_log2_n": ratio} for n, ratio in per_log2_n.items()]
    return {"parameters": PARAMETERS, "flower_secagg_plus_bytes_per_parameter": 8, "rounds": rounds,
            "client_costs": costs}


def test_sync_summary_rows_judge_the_slowest_client_and_the_growth_of_the_work() -> None:
    rows = sync_summary_rows(sync_results({100: (7000, 7500), 1000: (12000, 16 * 1024 + 1)},
                                          {100: 0.001, 1000: 0.002, 100_000: 0.0029}))
    verdicts = {row.what: row.verdict for row in rows if row.target}
    assert verdicts == {
        f"federated sync: bytes a client sends in one round, 100 clients, {PARAMETERS:,} shared parameters": "met",
        # The median client is under 16 KiB, the slowest one byte over: missed.
        f"federated sync: bytes a client sends in one round, 1,000 clients, {PARAMETERS:,} shared parameters": "missed",
        "federated sync: one client's secure-aggregation work, n = 100 to 100,000": "met"}
    assert all("Flower SecAgg+: 8 B/param" in row.peer for row in rows if "bytes a client sends" in row.what)
    # Work per log2 n doubling from 1,000 to 100,000 clients is not "no faster than log n".
    assert not work_grows_with_log_n(sync_results({}, {100: 0.001, 1000: 0.002, 100_000: 0.004})["client_costs"])
    assert work_grows_with_log_n(sync_results({}, {100: 0.001, 1000: 0.002, 100_000: 0.0029})["client_costs"])
    (failed,) = sync_summary_rows({"error": "the coordinator exited"})
    assert failed.verdict == "not measured" and "the coordinator exited" in failed.ownrec


def test_client_round_costs_report_time_and_bytes():
    costs = client_round_costs(parameter_count=2000, cohort_size=100, repeats=1)
    assert costs["neighbours"] == plan_neighbourhood(100).degree
    assert costs["bytes_per_stage"]["masked_input"] == 26 + 4 + 4 * 2000
    assert costs["fixed_overhead_bytes"] < 16 * 1024
    assert 0 < costs["client_seconds"] < 5
