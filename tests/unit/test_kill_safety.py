"""`kill -9` at any moment of a command that writes leaves the database passing SQLite's integrity check, every
feedback row committed before it intact, the settings file whole (the old value or the new), and the next
command working. (A device killed during a federated round: test_sync_ledger.py.)

Each command runs as a person runs it, in a process of its own, and is killed at moments drawn at random
(seeded) across the time a whole run of it takes, mostly past its start-up."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable

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


IMPORT_KILLS = 8


def history_csv(path, round_: int, rows: int = 20_000, texts: int = 600) -> str:
    """A history of `rows` rows, one in ten rated, whose ids are this round's own; rows repeat `texts`
    texts, so that writing the rows takes a while as well as encoding (a text is encoded once)."""
    lines = ["id,title,description,year,rating"]
    for i in range(rows):
        story = i % texts
        lines.append(f"r{round_}-{i},Story {round_}-{story},A tale of the river number {story} in round "
                     f"{round_}.,{1950 + story % 70},{(i % 5) + 1 if i % 10 == 0 else ''}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def import_state(round_: int) -> str:
    """Where a killed import of round `round_`'s file stopped, read from the database."""
    with sqlite3.connect(paths.database_path()) as conn:
        if not conn.execute("select 1 from items where external_id = ?", [f"r{round_}-0"]).fetchone():
            return "before its rows were saved"
        if not conn.execute("select 1 from state where key = 'unfinished_imports'").fetchone():
            return "after it finished"
        unencoded = conn.execute("select count(*) from items left join embeddings on embeddings.text_hash ="
                                 " items.text_hash where embeddings.text_hash is null").fetchone()[0]
        return "while encoding" if unencoded else "after encoding, before it was marked done"


def model_through() -> int:
    """The last feedback row the newest full retraining learned from."""
    with sqlite3.connect(paths.database_path()) as conn:
        meta = conn.execute("select meta from adapters where kind = 'personal' and meta like '%\"retrain\"%'"
                            " order by version desc limit 1").fetchone()[0]
    return json.loads(meta)["through"]


def killed_in(args: list[str], phase: Callable[[], bool], after: float) -> None:
    """Start `ownrec ARGS` and SIGKILL it `after` seconds after `phase()` first holds (or once it ends)."""
    process = start_ownrec(*args)
    while process.poll() is None and not phase():
        time.sleep(0.02)
    try:
        process.wait(after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)


def phase_times(args: list[str], round_: int) -> dict[str, float]:
    """Run `ownrec ARGS` to its end, watching the database: when (seconds after the start) each state of
    `import_state` was first seen."""
    started = time.monotonic()
    process = start_ownrec(*args)
    times: dict[str, float] = {}
    while process.poll() is None:
        times.setdefault(import_state(round_), time.monotonic() - started)
        time.sleep(0.02)
    assert process.wait() == 0, process.communicate()[1]
    times.setdefault("after it finished", time.monotonic() - started)
    return times


def test_kill_9_during_import_then_the_next_run_finishes_it(person, tmp_path):
    rng = np.random.default_rng(5)
    times = phase_times(["import", history_csv(tmp_path / "round-0.csv", 0)], 0)
    # One phase after the other: reading and writing the rows (past start-up), encoding, retraining. A kill
    # waits for its phase to show in the database, then for a random part of the time the phase took.
    rows_at = times.get("while encoding", times.get("after encoding, before it was marked done"))
    encoded_at = times.get("after encoding, before it was marked done", rows_at)
    phases = [("before its rows were saved", 0.5 * rows_at, rows_at),
              ("while encoding", 0, 0.7 * (encoded_at - rows_at)),
              ("after encoding, before it was marked done", 0, 0.7 * (times["after it finished"] - encoded_at))]
    print("a whole import:", times)
    seen = []
    for round_ in range(1, IMPORT_KILLS + 1):
        path = history_csv(tmp_path / f"round-{round_}.csv", round_)
        before = feedback_rows()
        phase, low, high = phases[(round_ - 1) % len(phases)]
        killed_in(["import", path], lambda: import_state(round_) == phase, float(rng.uniform(low, high)))
        killed = feedback_rows()  # and the integrity check passed
        assert killed[:len(before)] == before and len(killed) - len(before) in (0, 2000), round_
        seen.append(state := import_state(round_))
        # The next run finishes what the import left, and says so: the same import again, or the feed.
        again = run_ownrec(*(["import", path] if round_ % 2 else ["recommend"]))
        assert again.returncode == 0, again.stderr
        unfinished = state not in ("before its rows were saved", "after it finished")
        assert (f"finishing the import of round-{round_}.csv" in again.stderr) == unfinished, (state, again.stderr)
        rows = feedback_rows()
        assert rows[:len(killed)] == killed
        if round_ % 2:  # the import, run again to its end, has all its rows, once
            assert len(rows) - len(before) == 2000 and "0 items added" in again.stdout or not unfinished
        assert import_state(round_) in ("after it finished", "before its rows were saved")
        with sqlite3.connect(paths.database_path()) as conn:
            assert conn.execute("select count(*) from items left join embeddings on embeddings.text_hash ="
                                " items.text_hash where embeddings.text_hash is null").fetchone()[0] == 0
        assert model_through() == rows[-1][0], (round_, state)  # the model has learned from every row
    print("import killed:", seen)
    assert {phase for phase, _, _ in phases} <= set(seen), seen  # every phase was killed at least once
