"""`ownrec bench sync --throughput SECONDS`: device-rounds per hour, one cohort at a time against concurrent cohorts.

Two coordinators, measured one after the other in the same run with the same devices, cohort size and
timeouts: `ownrec coordinator serve` with one worker on SQLite running one cohort at a time (each cohort its
own release, `--max-concurrent-rounds 1 --release-period 0`), and with three workers on PostgreSQL running
cohorts concurrently, one release per period (`--max-concurrent-rounds K --release-period P`). The devices
are the product client (`RoundRunner`) in worker processes (`throughput_clients`), one thread and HTTPS
connection each, taking part round after round and coming back when a refusal says to, for `seconds`;
each leaves a round midway with probability `dropout` (then its stage waits out its timeout, as deployed).

A device-round is one device's update summed into a published release, counted from the coordinator's
database (the summands of its released cohorts). The rate is device-rounds over the time from the start to
the last release (no round starts after `seconds`; those under way finish). Cohorts summed but waiting for a
release due after the devices stopped are not counted: with periods, the figure is a lower bound.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

from agent.lab.bench.coordinator import (SINGLE_THREADED_BLAS, Log, SyncBenchFailed, _enrol, _free_port, _split,
                                         _stop, _wait_for_coordinator)
from agent.lab.bench.product import SummaryRow, verdict
from agent.lab.reports import measured_where

TARGET_SPEEDUP = 5.0
VOCABULARY = 60  # a small shared vector: the bench measures the coordinator's pace, not one update's size


def _serve(folder: Path, db_url: str | None, workers: int, settings: dict[str, Any], items_file: Path
           ) -> tuple[subprocess.Popen, Path]:
    state_dir = folder / "coordinator"
    log_path = folder / "coordinator.log"
    command = [sys.executable, "-m", "agent.cli", "coordinator", "serve", "--host", "127.0.0.1",
               "--port", str(_free_port()), "--state-dir", str(state_dir), "--items", str(items_file),
               "--workers", str(workers), "--release-noisy", "--log-level", "warning"]
    if db_url:
        command += ["--db", db_url]
    for name, value in settings.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        _wait_for_coordinator(server, state_dir / "coordinator-pin.json", log_path)
    except BaseException:
        _stop(server)
        raise
    return server, log_path


def _released(db_url: str) -> tuple[int, int, int, float | None]:
    """From the coordinator's database: device-rounds released, cohorts released, releases, the last one's time."""
    sql = ("select coalesce(sum(summands), 0), count(*), count(distinct released_version), "
           "(select max(created_at) from releases where round_id is not null) from rounds where state = 'done'")
    if db_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(db_url[len("sqlite:///"):]) as connection:
            row = connection.execute(sql).fetchone()
    else:
        import psycopg

        with psycopg.connect(db_url) as connection:
            row = connection.execute(sql).fetchone()
    return int(row[0]), int(row[1]), int(row[2]), row[3]


def measure(label: str, devices: int, seconds: float, settings: dict[str, Any], *, dropout: float = 0.0,
            db_url: str | None = None, server_workers: int = 1, client_workers: int = 2,
            log: Log = print) -> dict[str, Any]:
    """One coordinator configuration: `devices` devices taking part for `seconds`; device-rounds per hour."""
    with tempfile.TemporaryDirectory(prefix="ownrec-bench-throughput-") as name:
        folder = Path(name)
        items_file = folder / "items.txt"
        items_file.write_text("\n".join(f"bench:{i}" for i in range(VOCABULARY)) + "\n")
        server, server_log = _serve(folder, db_url, server_workers, settings, items_file)
        processes: list[tuple[subprocess.Popen, Path]] = []
        # A device gives up a round that has not released within its period, four stages and a check-in window.
        round_timeout = settings["release_period"] + 5 * settings["stage_timeout"] + 2 * settings["checkin_window"]
        try:
            token = _enrol(folder / "coordinator", devices) if not db_url else _enrol_db(folder, db_url, devices)
            environment = {**os.environ, **SINGLE_THREADED_BLAS}
            for number, (first, count) in enumerate(_split(devices, min(client_workers, devices))):
                log_path = folder / f"devices-{number}.log"
                with open(log_path, "wb") as log_file:
                    processes.append((subprocess.Popen(
                        [sys.executable, "-m", "agent.lab.bench.throughput_clients", "--pin",
                         str(folder / "coordinator" / "coordinator-pin.json"), "--items", str(items_file),
                         "--token", token, "--first", str(first), "--count", str(count), "--duration", str(seconds),
                         "--dropout", str(dropout), "--round-timeout", str(round_timeout)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=environment, text=True),
                        log_path))
            for process, log_path in processes:
                if process.stdout.readline().strip() != "ready":
                    raise SyncBenchFailed(f"a device worker failed to start: {log_path.read_text(errors='replace')[-2000:]}")
            log(f"throughput, {label}: {devices} devices for {seconds:.0f} s")
            started = time.time()
            for process, _ in processes:
                process.stdin.write("go\n")
                process.stdin.flush()
            reports = []
            for process, log_path in processes:
                try:
                    output, _ = process.communicate(timeout=seconds + 900)
                except subprocess.TimeoutExpired:
                    raise SyncBenchFailed(f"the devices did not finish within {seconds + 900:.0f} s") from None
                lines = output.strip().splitlines()
                if process.returncode != 0 or not lines:
                    raise SyncBenchFailed(f"a device worker failed: {log_path.read_text(errors='replace')[-2000:]}")
                reports.append(json.loads(lines[-1]))
            if server.poll() is not None:
                raise SyncBenchFailed(f"the coordinator exited: {server_log.read_text(errors='replace')[-2000:]}")
            device_rounds, cohorts, releases, last = _released(
                db_url or f"sqlite:///{folder / 'coordinator' / 'coordinator.sqlite3'}")
        finally:
            for process, _ in processes:
                _stop(process)
            _stop(server)
    ended = [(at, state) for report in reports for at, state in report["ended"]]
    refusals: Counter = Counter()
    for report in reports:
        refusals.update(report["refusals"])
    elapsed = max(seconds, (last or started) - started)
    return {"label": label, "devices": devices, "seconds": round(elapsed, 1), "settings": settings,
            "server_workers": server_workers, "database": "postgresql" if db_url else "sqlite",
            "device_rounds": device_rounds, "cohorts_released": cohorts, "releases": releases,
            "device_rounds_per_hour": round(device_rounds * 3600.0 / elapsed),
            "client_rounds_by_outcome": dict(Counter(state for _, state in ended)), "refusals": dict(refusals),
            "refusal_examples": {k: v for report in reports for k, v in report["refusal_examples"].items()},
            "errors": sum(report["error_count"] for report in reports),
            "first_errors": [e for report in reports for e in report["errors"]][:5]}


def _enrol_db(folder: Path, db_url: str, devices: int) -> str:
    result = subprocess.run([sys.executable, "-m", "agent.cli", "coordinator", "enrol", "--devices", str(devices),
                             "--expires", "1d", "--state-dir", str(folder / "coordinator"), "--db", db_url],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SyncBenchFailed(f"enrolling the simulated devices failed: {result.stderr[-2000:]}")
    return result.stdout.strip()


def _fresh_database(postgres_url: str) -> tuple[str, str]:
    import psycopg

    name = f"ownrec_bench_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"create database {name}")
    parts = urlparse(postgres_url)
    return name, urlunparse((parts.scheme, parts.netloc, f"/{name}", parts.params, parts.query, parts.fragment))


def _drop_database(postgres_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"drop database if exists {name} with (force)")


def run_throughput_bench(postgres_url: str, seconds: float = 120.0, devices: int = 120, cohort: int = 10, *,
                         concurrent: int = 8, release_period: float | None = None, stage_timeout: float = 15.0,
                         dropout: float = 0.2, log: Log = print) -> dict[str, Any]:
    """One cohort at a time (SQLite, one worker) against concurrent cohorts (PostgreSQL, three workers)."""
    if devices < cohort or cohort < 3:
        raise SyncBenchFailed(f"need at least 3 devices per cohort and a cohort's worth of devices, not {devices} "
                              f"devices in cohorts of {cohort}")
    common = {"min_cohort": cohort, "max_cohort": cohort, "checkin_window": 5.0, "stage_timeout": stage_timeout,
              "epsilon_budget": 1e9, "registrations_per_hour": 100_000, "checkins_per_hour": 1_000_000,
              "keep_releases": 2}
    # A period long enough for waves of cohorts (a round with a dropout takes up to four stage timeouts).
    period = release_period if release_period is not None else max(5 * stage_timeout, seconds / 2)
    one = measure("one cohort at a time, SQLite, 1 worker", devices, seconds,
                  {**common, "max_concurrent_rounds": 1, "release_period": 0.0}, dropout=dropout, log=log)
    name, url = _fresh_database(postgres_url)
    try:
        many = measure(f"up to {concurrent} cohorts at once, PostgreSQL, 3 workers", devices, seconds,
                       {**common, "max_concurrent_rounds": concurrent, "release_period": period}, dropout=dropout,
                       db_url=url, server_workers=3, log=log)
    finally:
        _drop_database(postgres_url, name)
    speedup = many["device_rounds_per_hour"] / max(one["device_rounds_per_hour"], 1)
    return {"machine": {**measured_where(), "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
            "cohort": cohort, "devices": devices, "seconds": seconds, "dropout": dropout,
            "parameters_vocabulary": VOCABULARY,
            "one_at_a_time": one, "concurrent": many, "speedup": round(speedup, 2), "target_speedup": TARGET_SPEEDUP,
            "at": time.time()}


def throughput_summary_rows(results: dict[str, Any]) -> list[SummaryRow]:
    """The headline for the BENCHMARKS.md summary table: concurrent cohorts against one at a time."""
    one, many = results["one_at_a_time"], results["concurrent"]
    return [SummaryRow(f"federated sync: device-rounds per hour, {results['devices']} devices in cohorts of "
                       f"{results['cohort']}, dropout {results['dropout']:g} (`bench sync --throughput`)",
                       f"**{many['device_rounds_per_hour']:,}** ({many['label']})",
                       f"{one['device_rounds_per_hour']:,} ({one['label']}) → **{results['speedup']:.1f}x**",
                       f">= {results['target_speedup']:g}x one cohort at a time",
                       verdict(results["speedup"] >= results["target_speedup"]))]


def throughput_markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    rows = [results["one_at_a_time"], results["concurrent"]]
    lines = ["## Federated sync: cohorts at once", "",
             "Written by `ownrec bench sync --throughput`: two coordinators measured one after the other in one run, "
             "with the same devices (the product client over HTTPS on loopback), cohort size and timeouts. Machine: "
             f"{machine['cpus']} CPUs, load average {machine['load_average_1min_at_end']} at the end (the devices "
             "and the coordinators share these CPUs).", "",
             "| configuration | device-rounds / hour | device-rounds | seconds | refusals |", "|---|---|---|---|---|"]
    for r in rows:
        refusals = ", ".join(f"{code} {count}" for code, count in sorted(r["refusals"].items())) or "none"
        lines.append(f"| {r['label']} | **{r['device_rounds_per_hour']:,}** | {r['device_rounds']} | {r['seconds']} "
                     f"| {refusals} |")
    lines.append("")
    lines.append(f"{results['devices']} devices in cohorts of {results['cohort']}, each leaving a round midway with "
                 f"probability {results['dropout']:g}, stage timeout "
                 f"{results['one_at_a_time']['settings']['stage_timeout']:g} s: concurrent / one at a time = "
                 f"**{results['speedup']:.1f}x** (target >= {results['target_speedup']:g}x).")
    return "\n".join(lines)
