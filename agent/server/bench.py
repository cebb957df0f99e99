"""One federated round with N simulated clients on loopback, measured: for `ownrec bench`.

The coordinator runs as `ownrec coordinator serve` in a subprocess (TLS, SQLite, one worker), so its CPU
time and peak memory are its own (read from /proc). The clients run the product client (`RoundRunner`)
in this process, one thread and one HTTPS connection each, on synthetic people over a synthetic
MovieLens-sized catalog (the shared vector is the real default layout: 384 x 16 + 1,682 = 7,826
parameters). Linux only (/proc).

Measured limit: at 1,000 client threads in one process, numpy's bundled OpenBLAS ran past its
compiled thread count ("precompiled NUM_THREADS exceeded") and the process died of heap corruption
during check-in. 100 clients run fine; 1,000 need the clients spread over several processes (not done).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.ranker.adapters import PersonalAdapter
from agent.core.ranker.model import Catalog
from agent.core.store import Store
from agent.core.sync.client import ClientPolicy, CoordinatorLink, CoordinatorPin, LocalTrainingData, RoundRunner
from agent.server.app import MOVIELENS_ITEMS

DIM = 384


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _synthetic_people(count: int, seed: int) -> list[LocalTrainingData]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((MOVIELENS_ITEMS, DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    catalog = Catalog(np.arange(1, MOVIELENS_ITEMS + 1, dtype=np.int64),
                      [f"movielens-100k:{i}" for i in range(1, MOVIELENS_ITEMS + 1)], X)
    people = []
    for person in range(count):
        personal = PersonalAdapter.fresh(DIM, 8, seed=person)
        personal.p = rng.standard_normal(DIM).astype(np.float32)
        rated = rng.choice(catalog.ids, size=20, replace=False)
        people.append(LocalTrainingData(catalog, personal, {int(i): float(rng.choice([-1.0, 1.0])) for i in rated}))
    return people


def bench_sync_round(clients: int, *, stage_timeout: float = 600.0, seed: int = 0) -> dict[str, Any]:
    """Run one round with `clients` simulated clients; wall time, server CPU and peak memory, bytes per client."""
    people = _synthetic_people(clients, seed)
    with tempfile.TemporaryDirectory(prefix="ownrec-bench-sync-") as folder:
        state_dir = Path(folder) / "coordinator"
        port = _free_port()
        command = [sys.executable, "-m", "agent.cli", "coordinator", "serve", "--host", "127.0.0.1",
                   "--port", str(port), "--state-dir", str(state_dir), "--min-cohort", str(clients),
                   "--max-cohort", str(clients), "--checkin-window", str(stage_timeout),
                   "--stage-timeout", str(stage_timeout), "--log-level", "warning"]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            pin = _wait_for_pin(server, state_dir / "coordinator-pin.json")
            cpu_before = _cpu_seconds(server.pid)
            outcomes: list[Any] = [None] * clients
            errors: list[BaseException] = []
            policy = ClientPolicy(min_cohort=3, round_timeout=stage_timeout * 5)

            def one(position: int) -> None:
                store = Store.memory()
                link = CoordinatorLink(pin, Ed25519PrivateKey.generate(), timeout=stage_timeout)
                try:
                    outcomes[position] = RoundRunner(link, store.db, policy).run(people[position])
                except BaseException as error:  # noqa: BLE001 - reported below
                    errors.append(error)
                finally:
                    link.close()
                    store.close()

            threading.stack_size(512 * 1024)  # a thousand client threads
            threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            server_cpu = _cpu_seconds(server.pid) - cpu_before
            peak = _peak_rss_bytes(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    if errors:
        raise RuntimeError(f"{len(errors)} of {clients} clients failed; first: {errors[0]!r}")
    sent = np.array([o.bytes_sent for o in outcomes])
    uploads = np.array([o.upload_bytes for o in outcomes])
    parameters = DIM * 16 + MOVIELENS_ITEMS
    return {
        "clients": clients,
        "parameters": parameters,
        "wall_seconds": wall,
        "server_cpu_seconds": server_cpu,
        "server_peak_rss_bytes": peak,
        "bytes_sent_per_client_median": float(np.median(sent)),
        "upload_bytes_per_client_median": float(np.median(uploads)),
        "overhead_bytes_per_client": float(np.median(sent)) - 4 * parameters,
        "released_version": outcomes[0].released_version,
    }


def _wait_for_pin(server: subprocess.Popen, pin_path: Path) -> CoordinatorPin:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the coordinator exited: {server.stderr.read().decode()[-2000:]}")
        if pin_path.exists():
            pin = CoordinatorPin.from_file(pin_path)
            try:
                context = ssl.create_default_context(cadata=pin.tls_certificate)
                httpx.get(pin.url + "/v1/info", verify=context, timeout=2).raise_for_status()
                return pin
            except (httpx.HTTPError, ValueError):
                pass
        time.sleep(0.2)
    raise RuntimeError("the coordinator did not start within 60 s")
