"""`ownrec bench sync --throughput`, run small: both coordinators measured in one run with real clients over
loopback HTTPS, the device-rounds read from each coordinator's database (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

POSTGRES_URL = os.environ.get("OWNREC_TEST_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES_URL, reason="OWNREC_TEST_POSTGRES_URL is not set (packaging/postgres.sh)")
def test_throughput_mode_measures_both_configurations_in_one_run(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    done = subprocess.run([sys.executable, "-m", "agent.cli", "bench", "sync", "--throughput", "20", "--devices", "12",
                           "--cohort", "3", "--stage-timeout", "5", "--dropout", "0", "--json",
                           "--postgres-url", POSTGRES_URL, "--output", str(report)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    one, many = results["one_at_a_time"], results["concurrent"]
    assert (one["database"], one["server_workers"], one["settings"]["max_concurrent_rounds"]) == ("sqlite", 1, 1)
    assert one["settings"]["release_period"] == 0.0
    assert (many["database"], many["server_workers"]) == ("postgresql", 3)
    assert many["settings"]["max_concurrent_rounds"] > 1 and many["settings"]["release_period"] > 0
    for measured in (one, many):
        assert measured["devices"] == 12 and measured["settings"]["min_cohort"] == 3
        assert measured["errors"] == len(measured["first_errors"]) or len(measured["first_errors"]) == 5
        # Every release holds whole cohorts of at least 3; one at a time, each cohort is a release of its own.
        assert measured["device_rounds"] >= 3 * measured["cohorts_released"] >= 3
        # `seconds` is reported to 0.1 s; the rate is computed from the unrounded time
        assert measured["device_rounds_per_hour"] == pytest.approx(
            measured["device_rounds"] * 3600 / measured["seconds"], rel=0.06 / measured["seconds"], abs=1)
        assert measured["seconds"] >= 20
        assert measured["client_rounds_by_outcome"].get("released", 0) >= 3
    assert one["releases"] == one["cohorts_released"]
    assert many["releases"] <= many["cohorts_released"]
    assert results["speedup"] == round(many["device_rounds_per_hour"] / one["device_rounds_per_hour"], 2)
    assert results["target_speedup"] == 5.0
    assert "device-rounds per hour" not in done.stdout  # --json: the figures only
    assert "throughput, one cohort at a time, SQLite, 1 worker: 12 devices for 20 s" in done.stderr
    # Not a report the suite wrote: the section alone, with both figures and the ratio.
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\n## Federated sync: cohorts at once\n")
    assert f"**{many['device_rounds_per_hour']:,}**" in text and f"**{results['speedup']:.1f}x**" in text


def test_throughput_mode_needs_postgresql():
    done = subprocess.run([sys.executable, "-m", "agent.cli", "bench", "sync", "--throughput", "20"],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "OWNREC_TEST_POSTGRES_URL"})
    assert done.returncode != 0 and "give --postgres-url" in done.stderr and "Traceback" not in done.stderr
