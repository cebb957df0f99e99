"""A worker process of `ownrec bench sync --throughput`: simulated devices that take part in rounds again and
again for a while, as `ownrec sync run --forever` does.

    python -m agent.lab.bench.throughput_clients --pin PIN --items FILE --token CODE --first I --count M
                                                 --duration SECONDS [--dropout P] [--round-timeout T] [--seed S]

Each device (one thread, one HTTPS connection, its own key and in-memory ledger) runs the product client
(`RoundRunner`) round after round, training each time on the latest release. A refused check-in is retried
at the coordinator's `retry_after`, without the scheduler's random spread (`scheduler.come_back_in`): the bench
measures the coordinator under the full demand of its devices. In each round a device leaves with probability
`dropout`, right after one of its first four steps (check-in and three uploads) chosen at random, as an app
closed mid-round; it comes back a few seconds later. It prints `ready`, waits for a line on stdin, runs
until `duration` seconds have passed (no round starts after that; rounds under way finish), and prints one
JSON line: when each round ended (seconds from the start), how each ended, and the refusals by code.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.store import Store
from agent.core.sync.client import (ClientPolicy, CoordinatorLink, CoordinatorPin, CoordinatorRefused, RoundCancelled,
                                    RoundCannotForm, RoundRunner)
from agent.federation.errors import SyncError
from agent.lab.bench.coordinator_clients import THREAD_STACK_BYTES, synthetic_catalog, synthetic_person

MIN_RETRY_SECONDS = 0.5  # as the scheduler: never hammer the coordinator, even when told 0
LEAVE_AFTER = ("checked-in", "advertise-keys", "share-keys", "masked-input")
BACK_AFTER_LEAVING_SECONDS = 3.0


def run_devices(pin: CoordinatorPin, people: list, duration: float, token: str, dropout: float,
                seed: int, round_timeout: float) -> dict[str, Any]:
    ended: list[tuple[float, str]] = []
    refusals: Counter = Counter()
    errors: list[str] = []
    examples: dict[str, str] = {}  # the first refusal of each code, in words
    guard = threading.Lock()
    policy = ClientPolicy(min_cohort=3, round_timeout=round_timeout)
    started = time.monotonic()

    def one(position: int, person) -> None:
        rng = random.Random(seed * 1_000_003 + position)
        store = Store.memory()
        link = CoordinatorLink(pin, Ed25519PrivateKey.generate(), timeout=120.0)
        try:
            while time.monotonic() - started < duration:
                wait = 0.0
                cancel = threading.Event()
                leave = rng.choice(LEAVE_AFTER) if rng.random() < dropout else None

                def progress(stage: str, cancel=cancel, leave=leave) -> None:
                    if stage == leave:
                        cancel.set()  # the app closes right after this step

                try:
                    # The code is ignored once the device is enrolled (its first check-in enrols it).
                    outcome = RoundRunner(link, store, policy, cancel, progress, enrolment_token=token).run(person)
                    with guard:
                        ended.append((time.monotonic() - started, outcome.state))
                except (RoundCannotForm, CoordinatorRefused) as refusal:
                    with guard:
                        refusals[refusal.code] += 1
                        examples.setdefault(refusal.code, str(refusal))
                    wait = refusal.retry_after if refusal.retry_after is not None else 5.0
                except RoundCancelled:
                    with guard:
                        ended.append((time.monotonic() - started, "left"))
                    wait = BACK_AFTER_LEAVING_SECONDS
                except (SyncError, httpx.HTTPError) as error:
                    with guard:
                        errors.append(f"{type(error).__name__}: {error}")
                    wait = 1.0
                time.sleep(max(MIN_RETRY_SECONDS, min(wait, duration - (time.monotonic() - started))))
        finally:
            link.close()
            store.close()

    threading.stack_size(THREAD_STACK_BYTES)
    threads = [threading.Thread(target=one, args=(i, person), daemon=True) for i, person in enumerate(people)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    return {"ended": ended, "refusals": dict(refusals), "refusal_examples": examples, "errors": errors[:20],
            "error_count": len(errors)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--pin", "--items", "--token"):
        parser.add_argument(name, required=True)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--round-timeout", type=float, default=600.0, help="a device gives a round up after this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    refs = [line.strip() for line in open(args.items, encoding="utf-8") if line.strip()]
    catalog = synthetic_catalog(refs, args.seed)
    people = [synthetic_person(catalog, args.seed, i) for i in range(args.first, args.first + args.count)]
    print("ready", flush=True)
    if not sys.stdin.readline():
        return
    print(json.dumps(run_devices(CoordinatorPin.from_file(args.pin), people, args.duration, args.token,
                                 args.dropout, args.seed, args.round_timeout)), flush=True)


if __name__ == "__main__":
    main()
