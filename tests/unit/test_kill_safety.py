"""`kill -9` at any moment of a command that writes leaves the database passing SQLite's integrity check, every
feedback row committed before it intact, the settings file whole (the old value or the new), and the next
command working. (A device killed during a federated round: test_sync_ledger.py.)

Each command runs as a person runs it, in a process of its own, and is killed at moments drawn at random
(seeded) across the time a whole run of it takes, mostly past its start-up."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest
from helpers import catalog, onboarded_agent, run_ownrec, start_ownrec

from agent.core import paths
from agent.core.config import Config

KILLS_PER_COMMAND = 6


@pytest.fixture
def person(encoder) -> None:
    """A data folder built by the product: a catalog encoded, a few likes, an adapter trained."""
    agent = onboarded_agent(encoder, catalog())
    for ref in agent.store.item_ids()[:8]:
        agent.feedback(ref, "like")
    agent.close()


def feedback_rows() -> list[tuple]:
    with sqlite3.connect(paths.database_path()) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        return conn.execute("select id, item_id, kind, value, at, origin from interactions order by id").fetchall()


def commands(round_: int, items: list[int]) -> dict[str, list[str]]:
    """The commands that write, each with arguments that change something in this round."""
    return {
        "feedback": ["feedback", str(items[20 + round_]), "like"],
        "config set": ["config", "set", "feed.size", str(10 + round_)],
        "traits set": ["traits", "set", "factual", f"{0.3 + 0.05 * round_:.2f}"],
        "retrain": ["retrain"],
    }


def killed_during(args: list[str], after: float) -> int | None:
    """Start `ownrec ARGS`, SIGKILL it `after` seconds later (if it is still running); its exit code."""
    process = start_ownrec(*args)
    try:
        process.wait(after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    process.communicate()
    return process.returncode


def test_kill_9_during_commands_that_write_loses_nothing_committed(person):
    items = [row[0] for row in sqlite3.connect(paths.database_path()).execute("select id from items order by id")]
    rng = np.random.default_rng(21)
    sizes = {Config().get("feed.size")}
    killed = 0
    for name in commands(0, items):
        started = time.monotonic()
        whole = run_ownrec(*commands(0, items)[name])  # a whole run: how long there is to kill it in
        assert whole.returncode == 0, (name, whole.stderr)
        span = time.monotonic() - started
        sizes.add(Config().get("feed.size"))
        for round_ in range(1, KILLS_PER_COMMAND + 1):
            before = feedback_rows()
            # Mostly past start-up (the imports take the first part of a run and write nothing).
            code = killed_during(commands(round_, items)[name], float(rng.uniform(0.3 * span, span)))
            killed += code == -signal.SIGKILL
            after = feedback_rows()  # and the integrity check passed
            assert after[:len(before)] == before, (name, round_)  # every committed row, as it was
            assert len(after) - len(before) <= (1 if name == "feedback" else 0)
            size = Config().get("feed.size")  # the settings file parses, holding the old value or the new
            assert size in sizes | {10 + round_}, (name, round_, size)
            sizes.add(size)
    print(f"killed mid-way: {killed} of {KILLS_PER_COMMAND * len(commands(0, items))} runs")
    assert killed >= 2 * len(commands(0, items))  # most runs were killed mid-way, not after they ended
    # The next runs work on what the kills left: feedback is recorded, the model retrains and recommends.
    rows = len(feedback_rows())
    assert run_ownrec("feedback", str(items[60]), "like").returncode == 0
    assert len(feedback_rows()) == rows + 1
    assert run_ownrec("retrain").returncode == 0
    assert run_ownrec("recommend").returncode == 0
    doctor = run_ownrec("doctor")
    assert "[ok ] database" in doctor.stdout and "[ok ] settings" in doctor.stdout, doctor.stdout
