"""`ownrec bench sync` end to end: a real coordinator process, 12 product clients over 2 worker processes
on loopback HTTPS, and the BENCHMARKS.md sync section replaced without touching the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.server.bench import (SECTION_BEGIN, SECTION_END, SyncBenchFailed, TARGET_OVERHEAD_BYTES,
                                replace_sync_section, write_sync_section)

PARAMETERS = 384 * 16 + 1682  # the default layout: B_g (384 x 16) + one bias per MovieLens-100K film

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
