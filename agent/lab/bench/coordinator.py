"""`ownrec bench sync`: one federated round with N simulated clients on loopback, measured.

The coordinator runs as `ownrec coordinator serve` in its own process (uvicorn, TLS, SQLite, one
worker), so its CPU time and peak memory are its own (read from /proc; Linux only). The clients run
the product client (`RoundRunner`), one thread and one HTTPS connection each, spread over several
worker processes (`agent.lab.bench.coordinator_clients`) started with single-threaded BLAS: 1,000 client
threads in one process with numpy's multithreaded OpenBLAS overflowed its compiled thread table
("precompiled NUM_THREADS exceeded") and died of heap corruption. The shared vector is the real
default layout (384 x 16 + 1,682 MovieLens items x (1 bias + 32 residual values) = 61,650 parameters) unless
`items` says otherwise.

Alongside the round, `client_round_costs` measures one client's secure-aggregation work (masking,
Shamir shares, envelopes) at larger cohorts than fit on one machine, to show it grows with log n
(the neighbourhood degree k), not n.

`run_sync_bench` gathers both (with the bytes of each client split by kind of request); `sync_markdown`
renders the BENCHMARKS.md sync section and `sync_summary_rows` the headline rows of its summary table,
each beside its target (`agent.lab.bench.runner` assembles the whole report); `write_sync_section` replaces
the section between the sync markers of any other file, leaving the rest as it was.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from agent.core.atomic import write_text_atomic
from agent.lab.bench.product import SummaryRow, verdict
from agent.lab.bench.sync_costs import client_round_costs
from agent.lab.reports import measured_where
from agent.core.sync.client import POLL_SECONDS, CoordinatorPin
from agent.server.app import MOVIELENS_ITEMS

Log = Callable[[str], None]

COST_COHORTS = (100, 1_000, 10_000, 100_000)  # 100,000: k keeps growing like log n past what fits here
CLIENTS_PER_WORKER = 250        # threads per worker process; two cores are shared by all of them anyway
FLOWER_SECAGG_PLUS_BYTES_PER_PARAMETER = 8
TARGET_BYTES_PER_PARAMETER = 4
TARGET_OVERHEAD_BYTES = 16 * 1024
SECTION_BEGIN, SECTION_END = "<!-- sync:begin -->", "<!-- sync:end -->"
SINGLE_THREADED_BLAS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class SyncBenchFailed(RuntimeError):
    """The round did not complete for every simulated client, or a process of the bench failed."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _memory_bytes(pid: int, field: str) -> int:
    """VmHWM (peak resident set) or VmRSS (current) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise SyncBenchFailed(f"/proc/{pid}/status has no {field}")


def default_stage_timeout(clients: int) -> float:
    """Seconds per stage: generous, since a stage ends as soon as every client has submitted, and a
    timeout only turns slow clients into dropouts. 0.3 s per client covers 1,000 on two cores."""
    return max(60.0, 0.3 * clients)


def default_ramp(clients: int) -> float:
    """Seconds over which the clients start: 10 ms apart, so 1,000 TLS handshakes do not all hit the
    coordinator in the same instant (its connect timeout is 10 s)."""
    return 0.01 * clients


def default_workers(clients: int) -> int:
    return max(1, min(clients, max(2, math.ceil(clients / CLIENTS_PER_WORKER))))


def _split(clients: int, workers: int) -> list[tuple[int, int]]:
    """(first index, count) per worker, as even as possible."""
    base, extra = divmod(clients, workers)
    spans, first = [], 0
    for worker in range(workers):
        count = base + (1 if worker < extra else 0)
        spans.append((first, count))
        first += count
    return spans


def _start_coordinator(folder: Path, clients: int, stage_timeout: float, items_file: Path
                       ) -> tuple[subprocess.Popen, CoordinatorPin, Path, int]:
    state_dir = folder / "coordinator"
    log_path = folder / "coordinator.log"
    port = _free_port()
    # The round forms the moment the whole cohort has checked in (min = max = clients).
    command = [sys.executable, "-m", "agent.cli", "coordinator", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--state-dir", str(state_dir), "--items", str(items_file),
               "--min-cohort", str(clients), "--max-cohort", str(clients),
               "--checkin-window", str(stage_timeout), "--stage-timeout", str(stage_timeout),
               # The bench measures a round to its signed release; a small cohort's average would be withheld
               # (more noise than signal), which ends the round before the release is signed and verified.
               "--release-noisy", "--log-level", "warning",
               # Every simulated device checks in from this one address with one enrolment code.
               "--registrations-per-hour", str(max(20, 2 * clients)), "--checkins-per-hour", str(max(600, 4 * clients))]
    with open(log_path, "wb") as log_file:  # a file, not a pipe: a full pipe would stall the server
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        pin, parameters = _wait_for_coordinator(server, state_dir / "coordinator-pin.json", log_path)
    except BaseException:
        _stop(server)
        raise
    return server, pin, log_path, parameters


def _wait_for_coordinator(server: subprocess.Popen, pin_path: Path, log_path: Path) -> tuple[CoordinatorPin, int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SyncBenchFailed(f"the coordinator exited: {log_path.read_text(errors='replace')[-2000:]}")
        if pin_path.exists():
            pin = CoordinatorPin.from_file(pin_path)
            try:
                context = ssl.create_default_context(cadata=pin.tls_certificate)
                info = httpx.get(pin.url + "/v1/info", verify=context, timeout=2)
                info.raise_for_status()
                return pin, int(info.json()["parameters"])
            except (httpx.HTTPError, ValueError):
                pass
        time.sleep(0.2)
    raise SyncBenchFailed("the coordinator did not start within 60 s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _enrol(state_dir: Path, devices: int) -> str:
    """An enrolment code for the simulated devices, from the operator's command."""
    result = subprocess.run([sys.executable, "-m", "agent.cli", "coordinator", "enrol", "--devices", str(devices),
                             "--expires", "1d", "--state-dir", str(state_dir)], capture_output=True, text=True,
                            timeout=120)
    if result.returncode != 0:
        raise SyncBenchFailed(f"enrolling the simulated devices failed: {result.stderr[-2000:]}")
    return result.stdout.strip()


def _start_workers(folder: Path, pin_path: Path, items_file: Path, spans: list[tuple[int, int]], seed: int,
                   timeout: float, ramp: float, token: str) -> list[tuple[subprocess.Popen, Path]]:
    environment = {**os.environ, **SINGLE_THREADED_BLAS}  # read by OpenBLAS when numpy loads in the worker
    workers = []
    for number, (first, count) in enumerate(spans):
        log_path = folder / f"worker-{number}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "agent.lab.bench.coordinator_clients", "--pin", str(pin_path), "--items", str(items_file),
                 "--first", str(first), "--count", str(count), "--seed", str(seed), "--timeout", str(timeout),
                 "--ramp", str(ramp), "--token", token],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=environment, text=True)
        workers.append((process, log_path))
    for process, log_path in workers:
        if process.stdout.readline().strip() != "ready":
            raise SyncBenchFailed(f"a client worker failed to start: {log_path.read_text(errors='replace')[-2000:]}")
    return workers


def bench_sync_round(clients: int, *, workers: int | None = None, stage_timeout: float | None = None,
                     items: Sequence[str] | None = None, seed: int = 0, log: Log = print) -> dict[str, Any]:
    """One round with `clients` simulated clients over `workers` processes: wall time, the coordinator's
    CPU time and peak memory, and the bytes each client sent (request lines, headers and bodies)."""
    if clients < 3:
        raise SyncBenchFailed(f"a round needs at least 3 clients, not {clients}")
    workers = workers or default_workers(clients)
    stage_timeout = stage_timeout or default_stage_timeout(clients)
    refs = list(items) if items is not None else [f"movielens-100k:{i}" for i in range(1, MOVIELENS_ITEMS + 1)]
    spans = _split(clients, min(workers, clients))
    ramp = default_ramp(clients)
    with tempfile.TemporaryDirectory(prefix="ownrec-bench-sync-") as name:
        folder = Path(name)
        items_file = folder / "items.txt"
        items_file.write_text("\n".join(refs) + "\n")
        server, pin, server_log, parameters = _start_coordinator(folder, clients, stage_timeout, items_file)
        started_workers: list[tuple[subprocess.Popen, Path]] = []
        try:
            log(f"sync round: {clients} clients over {len(spans)} worker processes, stage timeout {stage_timeout:.0f} s")
            started_workers = _start_workers(folder, folder / "coordinator" / "coordinator-pin.json", items_file,
                                             spans, seed, stage_timeout, ramp, _enrol(folder / "coordinator", clients))
            rss_before = _memory_bytes(server.pid, "VmRSS")
            cpu_before = _cpu_seconds(server.pid)
            started = time.perf_counter()
            for process, _ in started_workers:
                process.stdin.write("go\n")
                process.stdin.flush()
            reports = []
            for process, log_path in started_workers:
                try:
                    output, _ = process.communicate(timeout=stage_timeout * 8)
                except subprocess.TimeoutExpired:
                    raise SyncBenchFailed(f"the round took longer than {stage_timeout * 8:.0f} s") from None
                lines = output.strip().splitlines()
                if process.returncode != 0 or not lines:
                    raise SyncBenchFailed(f"a client worker failed (exit {process.returncode}): "
                                          f"{log_path.read_text(errors='replace')[-2000:]}")
                reports.append(json.loads(lines[-1]))
            wall = time.perf_counter() - started
            server_cpu = _cpu_seconds(server.pid) - cpu_before
            peak = _memory_bytes(server.pid, "VmHWM")
            if server.poll() is not None:
                raise SyncBenchFailed(f"the coordinator exited: {server_log.read_text(errors='replace')[-2000:]}")
        finally:
            for process, _ in started_workers:
                _stop(process)
            _stop(server)
    outcomes = [outcome for report in reports for outcome in report["clients"]]
    failed = [o for o in outcomes if o.get("state") != "released"]
    if failed:
        raise SyncBenchFailed(f"{len(failed)} of {clients} clients did not finish the round; first: "
                              f"{failed[0].get('error', failed[0].get('state'))}")
    sent = np.array([o["bytes_sent"] for o in outcomes], dtype=np.float64)
    uploads = np.array([o["upload_bytes"] for o in outcomes], dtype=np.float64)
    median_sent = float(np.median(sent))
    slowest = outcomes[int(np.argmax(sent))]
    return {
        "clients": clients,
        "worker_processes": len(spans),
        "stage_timeout_seconds": stage_timeout,
        "start_ramp_seconds": ramp,
        "connect_retries": int(sum(o.get("connect_retries", 0) for o in outcomes)),
        "parameters": parameters,
        "wall_seconds": round(wall, 2),
        "server_cpu_seconds": round(server_cpu, 2),
        "server_rss_at_start_bytes": rss_before,
        "server_peak_rss_bytes": peak,
        "client_cpu_seconds_total": round(sum(r["cpu_seconds"] for r in reports), 2),
        "bytes_sent_per_client_median": median_sent,
        "bytes_sent_per_client_max": float(sent.max()),
        "stage_message_bytes_per_client_median": float(np.median(uploads)),
        "bytes_per_parameter": round(median_sent / parameters, 3),
        "overhead_bytes_per_client": median_sent - TARGET_BYTES_PER_PARAMETER * parameters,
        "released_version": outcomes[0]["released_version"],
        "sent_by_kind_median": _by_kind(outcomes),
        "sent_by_kind_slowest_client": {kind: {"requests": count, "bytes": size}
                                        for kind, (count, size) in sorted(slowest["sent_by_kind"].items())},
    }


def _by_kind(outcomes: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per request kind (status, checkin, advertise-keys, ...): the median over clients of how many such
    requests a client sent and of their bytes (0 for a client that sent none)."""
    kinds = sorted({kind for o in outcomes for kind in o["sent_by_kind"]})
    return {kind: {"requests": float(np.median([o["sent_by_kind"].get(kind, [0, 0])[0] for o in outcomes])),
                   "bytes": float(np.median([o["sent_by_kind"].get(kind, [0, 0])[1] for o in outcomes]))}
            for kind in kinds}


def bench_client_costs(parameters: int, cohorts: Sequence[int] = COST_COHORTS, repeats: int = 5) -> list[dict]:
    """One client's secure-aggregation work per round (no server needed) at each cohort size."""
    rows = []
    for n in cohorts:
        costs = client_round_costs(parameters, n, repeats=repeats)
        costs["client_seconds_per_log2_n"] = costs["client_seconds"] / math.log2(n)
        costs["neighbours_per_log2_n"] = costs["neighbours"] / math.log2(n)
        rows.append(costs)
    return rows


def run_sync_bench(clients: Sequence[int] = (100, 1000), log: Log = print, *, workers: int | None = None,
                   cost_cohorts: Sequence[int] = COST_COHORTS, items: Sequence[str] | None = None,
                   stage_timeout: float | None = None) -> dict[str, Any]:
    """The figures for the BENCHMARKS.md sync section: one real round per cohort in `clients`, and one
    client's secure-aggregation work at each of `cost_cohorts`."""
    rounds = [bench_sync_round(n, workers=workers, items=items, stage_timeout=stage_timeout, log=log)
              for n in clients]
    parameters = rounds[0]["parameters"] if rounds else 384 * 16 + MOVIELENS_ITEMS
    log(f"per-client secure-aggregation work at cohorts {', '.join(f'{n:,}' for n in cost_cohorts)}")
    return {
        # other jobs share the CPUs: the load at the end says how much
        "machine": {**measured_where(), "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "parameters": parameters,
        "targets": {"bytes_per_parameter": TARGET_BYTES_PER_PARAMETER, "overhead_bytes": TARGET_OVERHEAD_BYTES,
                    "client_work": "grows no faster than log n"},
        "flower_secagg_plus_bytes_per_parameter": FLOWER_SECAGG_PLUS_BYTES_PER_PARAMETER,
        "rounds": rounds,
        "client_costs": bench_client_costs(parameters, cost_cohorts),
    }


def _kib(size: float) -> str:
    return f"{size / 1024:,.1f} KiB"


def _mib(size: float) -> str:
    return f"{size / 2**20:,.0f} MiB"


def sync_markdown(results: dict[str, Any]) -> str:
    """The BENCHMARKS.md sync section, markers included."""
    parameters, rounds = results["parameters"], results["rounds"]
    flower = results["flower_secagg_plus_bytes_per_parameter"]
    machine = results["machine"]
    header = "| measure | " + " | ".join(f"{r['clients']:,} clients" for r in rounds) + " | target | Flower SecAgg+ |"
    lines = [
        SECTION_BEGIN,
        "## Federated sync: one round on loopback",
        "",
        "Written by `ownrec bench` (and `ownrec bench sync` alone). One secure-aggregation round of the product client (`RoundRunner`) against "
        "`ownrec coordinator serve` (uvicorn, HTTPS, SQLite, one process) on 127.0.0.1; the simulated clients are "
        "threads spread over worker processes, each with its own HTTPS connection, device key and ledger, training "
        f"on a synthetic person. Shared vector: {parameters:,} parameters. Machine: {machine['cpus']} CPUs, "
        f"{machine['platform']}, Python {machine['python']}; the clients and the coordinator share these CPUs.",
        "",
        header,
        "|---|" + "---|" * len(rounds) + "---|---|",
        "| wall time, check-in to the verified release | " + " | ".join(f"**{r['wall_seconds']:.1f} s**" for r in rounds)
        + " | | |",
        "| coordinator CPU time (user + system) | " + " | ".join(f"{r['server_cpu_seconds']:.1f} s" for r in rounds)
        + " | | |",
        "| coordinator peak memory (VmHWM; at start) | " + " | ".join(
            f"{_mib(r['server_peak_rss_bytes'])} ({_mib(r['server_rss_at_start_bytes'])})" for r in rounds) + " | | |",
        "| bytes sent per client (median; max) | " + " | ".join(
            f"{r['bytes_sent_per_client_median']:,.0f} B; {r['bytes_sent_per_client_max']:,.0f} B" for r in rounds)
        + f" | <= 4 B x {parameters:,} + 16 KiB = {4 * parameters + TARGET_OVERHEAD_BYTES:,} B"
        f" | {flower} B x {parameters:,} = {flower * parameters:,} B + its overhead |",
        "| bytes per shared parameter | " + " | ".join(f"**{r['bytes_per_parameter']:.2f}**" for r in rounds)
        + f" | 4 + overhead | {flower} |",
        "| fixed overhead per client (sent - 4 B x parameters) | " + " | ".join(
            f"**{_kib(r['overhead_bytes_per_client'])}**" for r in rounds) + " | < 16 KiB | |",
        "| of which the four stage messages | " + " | ".join(
            f"{r['stage_message_bytes_per_client_median']:,.0f} B" for r in rounds) + " | | |",
        "| client worker processes; clients started over; stage timeout | " + " | ".join(
            f"{r['worker_processes']}; {r['start_ramp_seconds']:.0f} s; {r['stage_timeout_seconds']:.0f} s"
            for r in rounds) + " | | |",
        "| TLS connections retried after a connect timeout | " + " | ".join(
            str(r.get("connect_retries", 0)) for r in rounds) + " | | |",
        "",
        "Overhead target (< 16 KiB over 4 B per parameter): " + "; ".join(
            f"{r['clients']:,} clients: median client {'met' if r['overhead_bytes_per_client'] < TARGET_OVERHEAD_BYTES else 'missed'}"
            f", slowest client {'met' if r['bytes_sent_per_client_max'] - 4 * parameters < TARGET_OVERHEAD_BYTES else 'missed'}"
            f" ({_kib(r['bytes_sent_per_client_max'] - 4 * parameters)})"
            for r in rounds) + (f". Load average at the end: {machine['load_average_1min_at_end']} on {machine['cpus']} CPUs."
                                if "load_average_1min_at_end" in machine else "."),
        "",
        "Bytes are what the client writes at the HTTP layer, exactly as HTTP/1.1 puts them on the connection: request "
        "lines, headers and bodies of every request in the round. TLS adds about 22 bytes per record and one handshake "
        "per connection on top. Every request but the two release fetches carries one signature header "
        "(`x-ownrec-auth`, about 160 bytes); a long poll returns as soon as the round moves on, so a client polls once "
        f"per wait unless the wait outlasts the poll ({POLL_SECONDS:g} s).",
        "",
        *_by_kind_table(rounds),
        "",
        "One client's secure-aggregation work per round (`client_round_costs`: key generation, Shamir shares and "
        "sealed envelopes to its k neighbours, opening theirs, clip + noise + quantize + mask, the unmasking reply; CPU time "
        "of the client thread, median of 5 on this machine, no server). Target: grows no faster than log n. The "
        "unmasking step reads the whole survivor list the coordinator sends (n entries), the one part that grows with n.",
        "",
        "| cohort n | neighbours k | k / log2 n | threshold t | sharing | opening | masking | unmasking | total "
        "| total / log2 n | bytes sent | bytes / param |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results["client_costs"]:
        s = c["seconds_per_stage"]
        lines.append(
            f"| {c['cohort_size']:,} | {c['neighbours']} | {c['neighbours_per_log2_n']:.1f} | {c['threshold']} | "
            f"{s['sharing'] * 1000:.1f} ms | {s['opening'] * 1000:.1f} ms | {s['masking'] * 1000:.1f} ms | "
            f"{s['unmasking'] * 1000:.1f} ms | **{c['client_seconds'] * 1000:.1f} ms** | "
            f"{c['client_seconds_per_log2_n'] * 1000:.2f} ms | {c['bytes_sent']:,} B | {c['bytes_per_parameter']:.2f} |")
    lines += ["", SECTION_END]
    return "\n".join(lines)


LOG_GROWTH_ALLOWANCE = 1.5  # time / log2 n may drift this much from 1,000 clients to the largest cohort (noise)


def work_grows_with_log_n(costs: list[dict[str, Any]]) -> bool:
    """The per-client work target: from n = 1,000 (below it the degree is set by the small-cohort regime of
    `plan_neighbourhood`) to the largest cohort measured, client seconds / log2 n grows by at most
    LOG_GROWTH_ALLOWANCE. Work linear in n would multiply it by about 60 from 1,000 to 100,000."""
    ordered = sorted(costs, key=lambda c: c["cohort_size"])
    reference = next((c for c in ordered if c["cohort_size"] >= 1_000), ordered[0])
    largest = ordered[-1]
    return largest["client_seconds_per_log2_n"] <= LOG_GROWTH_ALLOWANCE * reference["client_seconds_per_log2_n"]


def sync_summary_rows(results: dict[str, Any]) -> list[SummaryRow]:
    """The sync headline figures for the BENCHMARKS.md summary table, each beside its target."""
    if "error" in results:
        return [SummaryRow("federated sync, one round on loopback", f"failed: {results['error']}", "",
                           f"<= {TARGET_BYTES_PER_PARAMETER} B/param + < 16 KiB per client", "not measured")]
    parameters, flower = results["parameters"], results["flower_secagg_plus_bytes_per_parameter"]
    rows = []
    for r in results["rounds"]:
        slowest = r["bytes_sent_per_client_max"] - TARGET_BYTES_PER_PARAMETER * parameters
        rows += [
            SummaryRow(f"federated sync: bytes a client sends in one round, {r['clients']:,} clients, "
                       f"{parameters:,} shared parameters",
                       f"**{r['bytes_per_parameter']:.2f} B/param** (median client); fixed overhead "
                       f"{_kib(r['overhead_bytes_per_client'])} median, **{_kib(slowest)}** slowest client",
                       f"Flower SecAgg+: {flower} B/param (published figure, not measured here)",
                       f"<= {TARGET_BYTES_PER_PARAMETER} B/param + < 16 KiB per client",
                       verdict(r["overhead_bytes_per_client"] < TARGET_OVERHEAD_BYTES
                               and slowest < TARGET_OVERHEAD_BYTES)),
            SummaryRow(f"federated sync: one round, {r['clients']:,} clients (check-in to verified release)",
                       f"**{r['wall_seconds']:.1f} s**; coordinator CPU {r['server_cpu_seconds']:.1f} s, peak memory "
                       f"{_mib(r['server_peak_rss_bytes'])}"),
        ]
    costs = sorted(results["client_costs"], key=lambda c: c["cohort_size"])
    if costs:
        first, last = costs[0], costs[-1]
        rows.append(SummaryRow(
            f"federated sync: one client's secure-aggregation work, n = {first['cohort_size']:,} to "
            f"{last['cohort_size']:,}",
            f"{first['client_seconds'] * 1000:.1f} → **{last['client_seconds'] * 1000:.1f} ms** (k "
            f"{first['neighbours']} → {last['neighbours']}); per log2 n: "
            + ", ".join(f"{c['client_seconds_per_log2_n'] * 1000:.2f}" for c in costs) + " ms", "",
            f"grows no faster than log n (time / log2 n within {LOG_GROWTH_ALLOWANCE}x from n = 1,000 up)",
            verdict(work_grows_with_log_n(costs))))
    return rows


def _by_kind_table(rounds: list[dict[str, Any]]) -> list[str]:
    """Where a client's bytes go: requests and bytes per kind of request, median client and slowest client."""
    rounds = [r for r in rounds if "sent_by_kind_median" in r]
    if not rounds:
        return []
    kinds = sorted({kind for r in rounds for kind in r["sent_by_kind_median"]},
                   key=lambda k: (k != "status", k))
    lines = ["Where a client's bytes go, by request (median client / the client that sent the most):", "",
             "| request | " + " | ".join(f"{r['clients']:,} clients" for r in rounds) + " |",
             "|---|" + "---|" * len(rounds)]
    for kind in kinds:
        cells = []
        for r in rounds:
            median = r["sent_by_kind_median"].get(kind, {"requests": 0, "bytes": 0})
            slowest = r["sent_by_kind_slowest_client"].get(kind, {"requests": 0, "bytes": 0})
            cells.append(f"{median['requests']:g} req, {median['bytes']:,.0f} B / "
                         f"{slowest['requests']:g} req, {slowest['bytes']:,.0f} B")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def replace_sync_section(document: str, section: str) -> str:
    """`document` with its sync section (markers included) replaced by `section`, or `section` appended."""
    pattern = re.compile(re.escape(SECTION_BEGIN) + r".*?" + re.escape(SECTION_END), re.DOTALL)
    if (SECTION_BEGIN in document) != (SECTION_END in document):
        raise SyncBenchFailed(f"the document has only one of {SECTION_BEGIN} and {SECTION_END}: fix it by hand")
    if pattern.search(document):
        return pattern.sub(lambda _: section, document, count=1)
    return document.rstrip("\n") + ("\n\n" if document.strip() else "") + section + "\n"


def write_sync_section(path: Path, section: str) -> None:
    """Replace (or add) the sync section of the file at `path`, write-temp-then-rename."""
    path = Path(path)
    document = path.read_text(encoding="utf-8") if path.exists() else ""
    write_text_atomic(path, replace_sync_section(document, section))
