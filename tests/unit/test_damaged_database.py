"""A database with one damaged page: every command says so plainly (never a traceback) and changes nothing,
`doctor` reports what SQLite's check said, and `export` and `ownrec recover` save every row on the pages
that are still whole, the second into a new database the person can switch to.

The database is a real one, built by the product (a catalog encoded, feedback given, imported history), then
damaged the way a disk does it: one page in the middle overwritten."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from agent.core import paths
from agent.core.store import Store
from helpers import catalog, onboarded_agent
from helpers import run_ownrec as ownrec

TABLES = ["items", "interactions", "embeddings", "adapters", "events", "state"]


def counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        return {table: conn.execute(f"select count(*) from {table}").fetchone()[0] for table in TABLES}


def damage_page(database: Path, page: int) -> None:
    """Overwrite page `page` (numbered from 1, as SQLite does) with garbage."""
    size = sqlite3.connect(database).execute("pragma page_size").fetchone()[0]
    with open(database, "r+b") as handle:
        handle.seek((page - 1) * size)
        handle.write(b"\xa5" * size)


def page_owner(database: Path, page: int) -> tuple[str, int, str]:
    """The table or index a page belongs to, the rows (cells) on it and its type."""
    with sqlite3.connect(database) as conn:
        return conn.execute("select name, ncell, pagetype from dbstat where pageno = ?", [page]).fetchone()


@pytest.fixture
def original(encoder) -> Path:
    """A database built by the product, closed cleanly, and a copy of it as it was (to count against)."""
    agent = onboarded_agent(encoder, catalog())
    items = agent.store.item_ids()
    for ref in items[:6]:
        agent.feedback(ref, "like")
    agent.feedback(items[40], "rating", 4.5)
    # A history of 800 events, as an import records it: enough rows for interactions to span many pages.
    agent.store.add_interactions([(items[i % len(items)], "open", None, 1_600_000_000.0 + i, "import:test")
                                  for i in range(800)])
    agent.close()
    copy = paths.data_dir().parent / "original.db"
    shutil.copyfile(paths.database_path(), copy)
    assert not Path(f"{paths.database_path()}-wal").exists() or Path(f"{paths.database_path()}-wal").stat().st_size == 0
    return copy


def middle_page(database: Path) -> int:
    size = sqlite3.connect(database).execute("pragma page_size").fetchone()[0]
    return database.stat().st_size // size // 2


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_command_says_the_database_is_damaged_and_changes_nothing(original, tmp_path):
    database = paths.database_path()
    damage_page(database, middle_page(database))
    before = sha256(database)
    history = tmp_path / "history.csv"
    history.write_text("title,feedback\nNebula Protocol,like\n")
    for command in (["recommend"], ["feedback", "1", "like"], ["import", str(history)], ["traits"],
                    ["undo"], ["retrain"], ["items", "search", "nebula"], ["taste", "space films"]):
        result = ownrec(*command)
        said = result.stdout + result.stderr
        assert result.returncode == 1, (command, said)
        assert "Traceback" not in said, (command, said)
        assert f"the database {database} is damaged" in said and "Run `ownrec recover`" in said, (command, said)
    doctor = ownrec("doctor")
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    line = next(line for line in doctor.stdout.splitlines() if "database:" in line)
    assert line.startswith("[FIX] database:") and "is damaged; SQLite's quick_check says:" in line
    assert "fix: `ownrec recover`" in doctor.stdout
    assert sha256(database) == before  # no command wrote to the damaged file


def test_recover_saves_every_row_on_the_whole_pages_and_the_switch_it_prints_works(original):
    database = paths.database_path()
    page = middle_page(database)
    owner, cells, kind = page_owner(database, page)
    had = counts(original)
    damage_page(database, page)
    before = sha256(database)
    result = ownrec("recover")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert sha256(database) == before
    recovered_path = Path(re.search(r"copied into (.+\.db):", result.stdout).group(1))
    got = counts(recovered_path)
    for table in TABLES:
        if table == owner:  # only the rows on the damaged page are gone
            assert had[table] - (cells if kind == "leaf" else had[table]) <= got[table] <= had[table], table
        else:
            assert got[table] == had[table], (table, owner, got, had)
        lost = had[table] - got[table]
        if got[table] or lost:
            assert re.search(rf"{table}\s+{got[table]:,} recovered, {lost:,} lost", result.stdout), result.stdout
    with sqlite3.connect(recovered_path) as conn:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert conn.execute("pragma foreign_key_check").fetchall() == []
    for line in result.stdout.splitlines():  # the switch, exactly as printed
        if line.startswith("  mv "):
            subprocess.run(shlex.split(line.strip()), check=True)
    assert Path(f"{database}.damaged").exists() and sha256(Path(f"{database}.damaged")) == before
    assert ownrec("recommend").returncode == 0
    doctor = ownrec("doctor")
    assert "[ok ] database" in doctor.stdout, doctor.stdout


def test_recover_skips_only_the_rows_of_a_damaged_page_of_feedback(original):
    """Row by row: a damaged leaf in the middle of the feedback costs exactly the rows on it."""
    database = paths.database_path()
    with sqlite3.connect(database) as conn:
        leaves = [row[0] for row in conn.execute(
            "select pageno from dbstat where name = 'interactions' and pagetype = 'leaf' order by pageno")]
    assert len(leaves) >= 5
    page = leaves[len(leaves) // 2]
    _, cells, _ = page_owner(database, page)
    with sqlite3.connect(original) as conn:
        had = {row[0]: row for row in conn.execute("select * from interactions")}
    damage_page(database, page)
    target = paths.data_dir() / "saved.db"
    result = ownrec("recover", "--output", str(target))
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(target) as conn:
        got = {row[0]: row for row in conn.execute("select * from interactions")}
    assert len(got) == len(had) - cells and all(had[key] == row for key, row in got.items())
    assert re.search(rf"interactions\s+{len(got):,} recovered, {cells} lost", result.stdout), result.stdout


def test_export_writes_what_is_readable_says_what_was_lost_and_exits_1(original):
    database = paths.database_path()
    with sqlite3.connect(database) as conn:
        leaves = [row[0] for row in conn.execute(
            "select pageno from dbstat where name = 'interactions' and pagetype = 'leaf' order by pageno")]
    page = leaves[len(leaves) // 2]
    _, cells, _ = page_owner(database, page)
    had = counts(original)
    damage_page(database, page)
    before = sha256(database)
    target = paths.data_dir() / "export.json"
    result = ownrec("export", "-o", str(target))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "this export holds only the rows that could be read" in result.stderr
    assert "the export is incomplete because the database is damaged" in result.stderr
    exported = json.loads(target.read_text())
    assert len(exported["interactions"]) == had["interactions"] - cells
    assert len(exported["items"]) == had["items"]
    assert exported["recovered_from_damage"]["tables"]["interactions"]["lost"] == cells
    assert sha256(database) == before
    assert not list(paths.data_dir().glob(".ownrec-*"))  # the scratch copy is gone


def test_recover_on_a_whole_database_writes_nothing(original):
    result = ownrec("recover")
    assert result.returncode == 0 and "is not damaged, and nothing was written" in result.stdout
    assert not list(paths.data_dir().glob("ownrec-recovered-*"))


def test_the_app_says_the_database_is_damaged_instead_of_starting(original):
    import asyncio

    from agent.tui.app import OwnrecApp
    from agent.tui.screens import StartScreen
    from agent.tui.screenshot import settle

    database = paths.database_path()
    damage_page(database, middle_page(database))

    async def start() -> str:
        app = OwnrecApp()
        async with app.run_test(size=(100, 30)) as pilot:
            await app.workers.wait_for_complete()
            await settle(pilot)
            assert isinstance(app.screen, StartScreen)
            return str(app.screen.query_one("#message").render())

    shown = asyncio.run(start())
    assert f"the database {database} is damaged" in shown and "ownrec recover" in shown


def test_damage_met_after_the_check_is_reported_as_damage(original):
    """Damage quick_check cannot see at open (here: the store is already open) still reads as damage."""
    from agent.core.store import DatabaseDamaged

    store = Store.open()
    with sqlite3.connect(store.path) as conn:
        leaves = [row[0] for row in conn.execute(
            "select pageno from dbstat where name = 'interactions' and pagetype = 'leaf' order by pageno")]
    damage_page(store.path, leaves[len(leaves) // 2])
    store.db.execute("pragma shrink_memory")  # drop the pages cached before the damage
    with pytest.raises(DatabaseDamaged, match="SQLite says: database disk image is malformed. The step that met"):
        store.interactions()
    store.close()


def test_forget_all_deletes_a_damaged_database_and_what_recover_made(original):
    database = paths.database_path()
    damage_page(database, middle_page(database))
    assert ownrec("recover").returncode == 0
    paths.config_path().write_text("[feed\n")  # and the settings broken too: forgetting needs neither
    result = ownrec("forget", "--all", "--yes")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert not database.exists() and not list(paths.data_dir().glob("ownrec*"))
