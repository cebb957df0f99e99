"""Shared builders for the federated-sync tests over real HTTP: a coordinator subprocess on a free
loopback port (the `ownrec coordinator serve` command, TLS and all) and synthetic clients."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.api import Agent
from agent.core.paths import Home
from agent.core.ranker.adapters import PersonalAdapter
from agent.core.ranker.model import Catalog
from agent.core.store import Store
from agent.core.sync.client import (ClientPolicy, CoordinatorLink, CoordinatorPin, LocalTrainingData, RoundOutcome,
                                    RoundRunner)
from agent.core.sync.parameters import GlobalTrainingSettings

DIM = 384
VOCABULARY = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


POSTGRES_URL = os.environ.get("OWNREC_TEST_POSTGRES_URL")


@contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a fresh database on OWNREC_TEST_POSTGRES_URL's server, dropped after (the test is skipped
    when no server is named)."""
    if not POSTGRES_URL:
        pytest.skip("OWNREC_TEST_POSTGRES_URL is not set (bash packaging/postgres.sh starts a throwaway cluster)")
    import psycopg

    name = f"ownrec_test_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"create database {name}")
    try:
        yield urlunparse(urlparse(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"drop database if exists {name} with (force)")


@dataclass
class Server:
    process: subprocess.Popen
    pin: CoordinatorPin
    state_dir: Path
    db_url: str
    log_path: Path
    token: str | None = None  # an enrolment code for every simulated device (`enrol`)

    def log(self) -> str:
        """What the coordinator has written (its uvicorn and ownrec lines)."""
        return self.log_path.read_text()

    def enrol(self, devices: int = 1, expires: str = "1d") -> str:
        """A fresh enrolment code, issued by the operator's command against this coordinator's database."""
        result = subprocess.run([sys.executable, "-m", "agent.cli", "coordinator", "enrol", "--devices", str(devices),
                                 "--expires", expires, "--state-dir", str(self.state_dir), "--db", self.db_url],
                                capture_output=True, text=True, env=os.environ.copy(), timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"enrol failed: {result.stderr}")
        return result.stdout.strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(tmp_path: Path, db_url: str | None = None, items_file: Path | str | None = None,
                 **settings) -> Server:
    """`items_file`: None for the test vocabulary (VOCABULARY refs test:0..), "movielens" for the command's
    default (the MovieLens-100K films), or a file of refs."""
    state_dir = tmp_path / "coordinator"
    port = free_port()
    db_url = db_url or f"sqlite:///{state_dir / 'coordinator.sqlite3'}"
    # The protocol's tests run cohorts of 3 to 20 over this small vocabulary, whose averages carry more noise
    # than signal: the coordinator would withhold them (`withhold_noisy`), so these tests publish them; the
    # tests of that rule turn it back on. They also check the release against the exact average of what the
    # clients sent, so the coordinator's shrinkage (tests/unit/test_shrinkage.py) is off unless a test asks.
    # Many simulated devices share one address (and one enrolment code): the rate limits are raised out of
    # their way, except where a test is about them.
    options = {"min_cohort": 20, "max_cohort": 20, "checkin_window": 30.0, "stage_timeout": 30.0,
               "noise_multiplier": 1.0, "clip_norm": 1.0, "epsilon_budget": 50.0, "withhold_noisy": False,
               "registrations_per_hour": 100_000, "checkins_per_hour": 100_000,
               "shrink_noise": False, **settings}
    command = [sys.executable, "-m", "agent.cli", "coordinator", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--state-dir", str(state_dir), "--db", db_url, "--log-level", "warning"]
    if items_file is None:
        items = tmp_path / "items.txt"
        items.write_text("\n".join(f"test:{i}" for i in range(VOCABULARY)))
        command += ["--items", str(items)]
    elif items_file != "movielens":
        command += ["--items", str(items_file)]
    for name, value in options.items():
        if name == "withhold_noisy":
            command.append("--withhold-noisy" if value else "--release-noisy")
        elif name == "shrink_noise":
            command.append("--shrink-noise" if value else "--no-shrink-noise")
        else:
            command += [f"--{name.replace('_', '-')}", str(value)]
    log_path = tmp_path / "coordinator.log"  # a file, not a pipe: nobody reads a pipe while the server runs
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=os.environ.copy())
    pin_path = state_dir / "coordinator-pin.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the coordinator exited: {log_path.read_text()[-2000:]}")
        if pin_path.exists():
            pin = CoordinatorPin.from_file(pin_path)
            try:
                import ssl
                httpx.get(pin.url + "/v1/info", verify=ssl.create_default_context(cadata=pin.tls_certificate),
                          timeout=2).raise_for_status()
                server = Server(process, pin, state_dir, db_url, log_path)
                server.token = server.enrol(devices=1000)
                return server
            except (httpx.HTTPError, ValueError):
                pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the coordinator did not start within 60 s")


def make_catalog(seed: int = 7) -> Catalog:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((VOCABULARY + 10, DIM)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    refs = [f"test:{i}" for i in range(VOCABULARY)] + [f"local:{i}" for i in range(10)]  # 10 outside the vocabulary
    return Catalog(np.arange(1, len(refs) + 1, dtype=np.int64), refs, X)


def make_person(catalog: Catalog, seed: int) -> LocalTrainingData:
    rng = np.random.default_rng(1000 + seed)
    personal = PersonalAdapter.fresh(DIM, 8, seed=seed)
    personal.p = rng.standard_normal(DIM).astype(np.float32)
    rated = rng.choice(catalog.ids, size=12, replace=False)
    labels = {int(item): float(rng.choice([-1.0, 1.0, 0.5])) for item in rated}
    return LocalTrainingData(catalog=catalog, personal=personal, labels=labels)


TRAINING = GlobalTrainingSettings(epochs=3, seed=3)
POLICY = ClientPolicy(min_cohort=3, round_timeout=120.0, training=TRAINING)


@dataclass
class SimulatedClient:
    seed: int
    data: LocalTrainingData
    key: Ed25519PrivateKey
    cancel: threading.Event
    drop_after: str | None = None
    outcome: RoundOutcome | None = None
    error: BaseException | None = None
    ledger: list | None = None
    events: list | None = None

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(50_000 + self.seed)


def make_clients(count: int, catalog: Catalog, drop_after: dict[int, str] | None = None) -> list[SimulatedClient]:
    drop_after = drop_after or {}
    return [SimulatedClient(seed=i, data=make_person(catalog, i), key=Ed25519PrivateKey.generate(),
                            cancel=threading.Event(), drop_after=drop_after.get(i)) for i in range(count)]


def run_clients(server: Server, clients: list[SimulatedClient], policy: ClientPolicy = POLICY,
                stagger: float = 0.0, link_class: Callable[[SimulatedClient], type[CoordinatorLink]] | None = None,
                token: str | None = None) -> None:
    """Each client in its own thread, over its own HTTPS connection, with its own ledger, enrolled with
    `token` (default: the server's code for the simulated devices). `link_class` may give a client another
    link class (a misbehaving one, for attack tests)."""
    pin, token = server.pin, token or server.token

    def one(client: SimulatedClient) -> None:
        store = Store.memory()
        link = (link_class(client) if link_class else CoordinatorLink)(pin, client.key)

        def progress(stage: str) -> None:
            if stage == client.drop_after:
                client.cancel.set()  # the device goes away right after this upload

        try:
            client.outcome = RoundRunner(link, store, policy, client.cancel, progress, client.rng(),
                                         enrolment_token=token).run(client.data)
        except BaseException as error:  # noqa: BLE001 - recorded for the test to assert on
            client.error = error
        finally:
            client.ledger = [dict(row) for row in store.db["sync_ledger"].rows]
            client.events = store.events(100)
            link.close()
            store.close()

    threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
        if stagger:
            time.sleep(stagger)
    for thread in threads:
        thread.join(timeout=300)


# -- people on the MovieLens demo catalog, for the adoption check ----------------------------------------


@dataclass
class GenrePerson:
    """A device whose person likes one genre: `agent` holds their likes and dislikes; `test_items` are more
    films of that genre that were never given to the device (the test's own held-out items)."""

    agent: Agent
    genre: str
    test_items: list[int]

    def hit_rate(self, negatives: int = 99, top: int = 10) -> float:
        """HR@top of the test items, each ranked among `negatives` unrated items drawn with a fixed seed, as the
        feed scores them (the global adapter in use, steered by the latest likes)."""
        scores = self.agent.scores()
        catalog = self.agent.catalog()
        judged = {e.item_id for e in self.agent.store.interactions()} | set(self.test_items)
        unrated = np.array([row for row, item in enumerate(catalog.ids) if int(item) not in judged])
        rng = np.random.default_rng(0)
        hits = [1 + np.sum(scores[rng.choice(unrated, negatives, replace=False)] > scores[catalog.row(item)]) <= top
                for item in self.test_items]
        return float(np.mean(hits))


def genre_person(folder: Path, template: Path, encoder, genre: str, seed: int, likes: int = 30,
                 dislikes: int = 10, tests: int = 20) -> GenrePerson:
    """An Agent on a copy of the demo template in `folder`, who liked `likes` films of `genre` and disliked
    `dislikes` films outside it (one event each, oldest first), retrained."""
    folder.mkdir(parents=True)
    shutil.copy(template, Home(folder).database)
    agent = Agent.open(encoder, home=folder, seed=seed)
    rng = np.random.default_rng(seed)
    items = agent.store.items()
    inside = [item.id for item in items if genre in item.metadata.get("genres", [])]
    outside = [item.id for item in items if genre not in item.metadata.get("genres", [])]
    assert len(inside) >= likes + tests, f"{genre} has {len(inside)} films, fewer than {likes} + {tests}"
    chosen = [inside[i] for i in rng.permutation(len(inside))[:likes + tests]]
    events = [(item, "like") for item in chosen[:likes]]
    events += [(int(item), "dislike") for item in rng.choice(outside, dislikes, replace=False)]
    for at, (item, kind) in enumerate(events):
        agent.store.add_interaction(item, kind, at=float(at + 1))
    agent.retrain()
    return GenrePerson(agent, genre, chosen[likes:])


def copy_person(person: GenrePerson, folder: Path, encoder) -> GenrePerson:
    """The same person on a copy of their data folder (`person`'s agent must be closed)."""
    shutil.copytree(person.agent.home.root, folder)
    return GenrePerson(Agent.open(encoder, home=folder), person.genre, person.test_items)
