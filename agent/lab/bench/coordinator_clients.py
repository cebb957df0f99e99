"""A worker process of `ownrec bench sync`: many simulated clients, one thread and one HTTPS connection each.

    python -m agent.lab.bench.coordinator_clients --pin PIN --items FILE --token CODE --first I --count M
                                         [--seed S] [--timeout T] [--ramp R]

Runs clients I .. I+M-1 (the product's `RoundRunner`, each with its own in-memory ledger and device key)
on synthetic people over a synthetic MovieLens-sized catalog, starting them over R seconds (devices do
not all open a TLS connection in the same millisecond). It prepares everything, prints `ready`,
waits for a line on stdin (so every worker starts the round at the same moment), runs the round and
prints one JSON line: the outcome of each client, and this worker's wall and CPU time.

The parent starts it with OPENBLAS_NUM_THREADS=1 (and OMP_NUM_THREADS=1): with numpy's default
multithreaded OpenBLAS, hundreds of threads calling BLAS at once overflow its compiled buffer table
("precompiled NUM_THREADS exceeded") and corrupt the heap. Single-threaded BLAS runs in the calling thread.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from typing import Any

import httpx
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.ranker.adapters import PersonalAdapter
from agent.core.ranker.model import Catalog
from agent.core.store import Store
from agent.core.sync.client import ClientPolicy, CoordinatorLink, CoordinatorPin, LocalTrainingData, RoundRunner

DIM = 384
RATED_PER_PERSON = 20
CONNECT_RETRIES = 3
THREAD_STACK_BYTES = 512 * 1024  # hundreds of client threads per worker: the default 8 MiB stacks add up


def synthetic_catalog(refs: list[str], seed: int) -> Catalog:
    """Random unit vectors for the coordinator's item vocabulary (the same in every worker: same seed)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((len(refs), DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return Catalog(np.arange(1, len(refs) + 1, dtype=np.int64), refs, X)


def synthetic_person(catalog: Catalog, seed: int, index: int) -> LocalTrainingData:
    rng = np.random.default_rng([seed, index])  # person `index` is the same whichever worker runs it
    personal = PersonalAdapter.fresh(DIM, 8, seed=index)
    personal.p = rng.standard_normal(DIM).astype(np.float32)
    rated = rng.choice(catalog.ids, size=min(RATED_PER_PERSON, len(catalog)), replace=False)
    return LocalTrainingData(catalog, personal, {int(i): float(rng.choice([-1.0, 1.0])) for i in rated})


def run_clients(pin: CoordinatorPin, people: list[LocalTrainingData], timeout: float, ramp: float, token: str
                ) -> list[dict[str, Any]]:
    """One round for each person, the clients starting evenly over `ramp` seconds; the outcome (or the
    error) of each."""
    results: list[dict[str, Any]] = [{} for _ in people]
    policy = ClientPolicy(min_cohort=3, round_timeout=timeout * 6)  # four stages, check-in and the release

    def one(position: int) -> None:
        retries = 0
        while True:
            store = Store.memory()
            link = CoordinatorLink(pin, Ed25519PrivateKey.generate(), timeout=timeout)
            try:
                outcome = RoundRunner(link, store, policy, enrolment_token=token).run(people[position])
                results[position] = {"state": outcome.state, "bytes_sent": outcome.bytes_sent,
                                     "upload_bytes": outcome.upload_bytes, "connect_retries": retries,
                                     "released_version": outcome.released_version,
                                     "sent_by_kind": link.sent_by_kind}
                return
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                # The TLS handshake queued behind a thousand others: a device tries again. A failure after
                # check-in cannot be retried (the coordinator refuses a second check-in) and is reported.
                retries += 1
                if retries > CONNECT_RETRIES:
                    results[position] = {"state": "error", "error": f"{type(error).__name__}: {error}"}
                    print(f"client {position}: {results[position]['error']}", file=sys.stderr, flush=True)
                    return
                time.sleep(random.uniform(1.0, 5.0))
            except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the bench
                results[position] = {"state": "error", "error": f"{type(error).__name__}: {error}"}
                print(f"client {position}: {results[position]['error']}", file=sys.stderr, flush=True)
                return
            finally:
                link.close()
                store.close()

    threading.stack_size(THREAD_STACK_BYTES)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(people))]
    for thread in threads:
        thread.start()
        time.sleep(ramp / len(threads))
    for thread in threads:
        thread.join()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", required=True, help="the coordinator-pin.json to join")
    parser.add_argument("--first", type=int, required=True, help="index of this worker's first client")
    parser.add_argument("--count", type=int, required=True, help="how many clients this worker runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="HTTP timeout; the round's is 6x this")
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds over which this worker's clients start")
    parser.add_argument("--items", required=True, help="the coordinator's item vocabulary, one ref per line")
    parser.add_argument("--token", required=True, help="the enrolment code the simulated devices join with")
    args = parser.parse_args(argv)

    pin = CoordinatorPin.from_file(args.pin)
    refs = [line.strip() for line in open(args.items, encoding="utf-8") if line.strip()]
    catalog = synthetic_catalog(refs, args.seed)
    people = [synthetic_person(catalog, args.seed, index) for index in range(args.first, args.first + args.count)]
    print("ready", flush=True)
    if not sys.stdin.readline():
        return  # the parent went away before the start
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    results = run_clients(pin, people, args.timeout, args.ramp, args.token)
    print(json.dumps({"clients": results, "wall_seconds": time.perf_counter() - wall_started,
                      "cpu_seconds": time.process_time() - cpu_started}), flush=True)


if __name__ == "__main__":
    main()
