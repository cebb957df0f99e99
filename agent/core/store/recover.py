"""`ownrec recover`: copy everything still readable from a damaged database into a new one.

SQLite's own `.recover` idea, done with queries: each table is read in rowid order, and when a read reaches a
damaged page the reader probes forward for the first row it can read again and carries on from there, so one
bad page costs only the rows on it. The rows go into a fresh database with the current schema (its full-text
index is rebuilt by the insert triggers); rows whose parent row was lost (feedback on an item that could not be
read) are dropped, so the new database is whole. The damaged file is never opened for writing: it is read from
a copy.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from agent.core.store.damage import is_damage, quick_check
from agent.core.store.migrations import MIGRATIONS
from agent.core.store.records import StoreError
from agent.core.store.store import Store

LOWEST_ROWID = -(2**63)
HIGHEST_ROWID = 2**63 - 1


@dataclass
class TableRecovery:
    """One table: rows copied, rows lost (None: the damaged file cannot say how many it had)."""

    table: str
    recovered: int = 0
    lost: int | None = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Recovery:
    source: Path
    destination: Path
    problems: list[str]  # what SQLite's check said about the source
    tables: list[TableRecovery]

    @property
    def complete(self) -> bool:
        return all(table.lost == 0 for table in self.tables)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def recover(source: Path, destination: Path) -> Recovery:
    """Copy every readable row of the database `source` into a new database at `destination` (which must
    not exist). StoreError when nothing at all can be read (not even the list of tables)."""
    source, destination = Path(source), Path(destination)
    if not source.exists():
        raise StoreError(f"there is no database at {source} to recover")
    if destination.exists():
        raise StoreError(f"{destination} already exists: choose another file with --output")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".ownrec-recover-") as work:
        copy = Path(work) / "damaged.db"
        shutil.copyfile(source, copy)  # SQLite may write to what it opens (its journal): it opens a copy
        if Path(f"{source}-wal").exists():  # committed changes not yet written into the file itself
            shutil.copyfile(f"{source}-wal", f"{copy}-wal")
        reader = sqlite3.connect(copy)
        try:
            problems = quick_check(reader)
            partial = Path(work) / "recovered.db"
            tables = _copy_tables(reader, partial)
        finally:
            reader.close()
        os.replace(partial, destination)  # only a finished recovery takes the name
    return Recovery(source, destination, problems, tables)


def _source_tables(reader: sqlite3.Connection) -> dict[str, list[str]]:
    """The damaged file's tables and their columns; StoreError when even its list of tables is unreadable."""
    try:
        names = [row[0] for row in reader.execute("select name from sqlite_schema where type = 'table'")]
        columns = {name: [row[1] for row in reader.execute(f"pragma table_info({_quote(name)})")] for name in names}
    except sqlite3.DatabaseError as error:
        if not is_damage(error):
            raise
        raise StoreError(f"nothing can be recovered: even the list of the database's tables is unreadable ({error})")
    # Which schema versions made it (a damaged record of them is skipped like any other damaged rows).
    known = {row[0] for row in _readable_rows(reader, "_migrations", '"name"', [])} if "_migrations" in names else set()
    unknown = known - {fn.__name__ for fn in MIGRATIONS}
    if unknown:
        raise StoreError(f"the database was made by a newer ownrec (it has {', '.join(sorted(unknown))}): recover "
                         "it with that version")
    return columns


def _copy_tables(reader: sqlite3.Connection, destination: Path) -> list[TableRecovery]:
    old_tables = _source_tables(reader)
    store = Store.open(destination)  # a fresh database: the current schema, every migration recorded
    writer = store.db.conn
    try:
        writer.execute("pragma foreign_keys = OFF")  # parents may come after children; orphans are dropped below
        results = []
        for table, columns in _tables_to_copy(writer).items():
            shared = [column for column in columns if column in old_tables.get(table, [])]
            result = TableRecovery(table)
            if table in old_tables and shared:
                _copy_table(reader, writer, table, shared, result)
            results.append(result)
        _drop_orphans(writer, {result.table: result for result in results})
        writer.execute("pragma foreign_keys = ON")
        store.checkpoint()
    finally:
        store.close()
    return results


def _tables_to_copy(writer: sqlite3.Connection) -> dict[str, list[str]]:
    """The new database's tables of rows, with their columns: not the migrations' record (already there), not
    the full-text index and its own tables (the triggers on items fill them)."""
    rows = writer.execute("select name, sql from sqlite_schema where type = 'table'").fetchall()
    virtual = [name for name, sql in rows if sql.upper().startswith("CREATE VIRTUAL TABLE")]
    names = [name for name, _ in rows if name != "_migrations" and not name.startswith("sqlite_")
             and not any(name == v or name.startswith(f"{v}_") for v in virtual)]
    return {name: [row[1] for row in writer.execute(f"pragma table_info({_quote(name)})")] for name in names}


def _copy_table(reader: sqlite3.Connection, writer: sqlite3.Connection, table: str, columns: list[str],
                result: TableRecovery) -> None:
    listed = ", ".join(_quote(column) for column in columns)
    insert = f"insert into {_quote(table)} ({listed}) values ({', '.join('?' * len(columns))})"
    skipped: list[tuple[int, int | None]] = []
    refused = 0
    with writer:
        for values in _readable_rows(reader, table, listed, skipped):
            try:
                writer.execute(insert, values)
                result.recovered += 1
            except sqlite3.IntegrityError:  # a damaged row that breaks a rule of the schema
                refused += 1
    had = _row_count(reader, table)
    if had is not None:
        result.lost = max(had - result.recovered, 0)
    elif skipped:
        result.lost = None
    else:
        result.lost = refused
    if refused:
        result.notes.append(f"{refused} unreadable as valid rows")
    if skipped and had is None:
        result.notes.append(f"{len(skipped)} damaged stretch{'es' if len(skipped) > 1 else ''} skipped; how many "
                            "rows they held cannot be read")


def _readable_rows(reader: sqlite3.Connection, table: str, listed: str,
                   skipped: list[tuple[int, int | None]]) -> Iterator[tuple]:
    """Every row of `table` that can be read, in rowid order; each stretch of rowids skipped over a damage
    goes into `skipped` as (first, last or None: to the end)."""
    select = f"select rowid, {listed} from {_quote(table)} where rowid >= ? order by rowid"
    start: int | None = LOWEST_ROWID
    while start is not None:
        try:
            for row in reader.execute(select, [start]):
                start = _after(row[0])
                yield row[1:]
            return
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
        # The cursor reads one row ahead, so the scan can fail before giving a row that is whole: read that
        # one alone before skipping.
        whole, row = _first_row(reader, select, start)
        if whole:
            if row is None:
                return
            start = _after(row[0])
            yield row[1:]
            continue
        resume = _next_readable(reader, select, start)
        skipped.append((start, None if resume is None else resume - 1))
        start = resume


def _after(rowid: int) -> int | None:
    return rowid + 1 if rowid < HIGHEST_ROWID else None


def _first_row(reader: sqlite3.Connection, select: str, start: int) -> tuple[bool, tuple | None]:
    """(whether it could be read, the first row at or after rowid `start`, None: there is none)."""
    try:
        return True, reader.execute(select + " limit 1", [start]).fetchone()
    except sqlite3.DatabaseError as error:
        if not is_damage(error):
            raise
        return False, None


def _next_readable(reader: sqlite3.Connection, select: str, failed: int) -> int | None:
    """The lowest rowid above `failed` from which a read succeeds again (None: none does): probe forward in
    doubling steps past the damage, then halve back to where it ends."""

    def readable(rowid: int) -> bool:
        return _first_row(reader, select, rowid)[0]

    step = 1
    while not readable(failed + step):
        step *= 2
        if failed + step > HIGHEST_ROWID:
            return None
    bad, good = failed + step // 2 if step > 1 else failed, failed + step
    while good - bad > 1:
        middle = (bad + good) // 2
        bad, good = (bad, middle) if readable(middle) else (middle, good)
    return good


def _row_count(reader: sqlite3.Connection, table: str) -> int | None:
    """How many rows the damaged table had, if anything can still count them: an index often survives the
    loss of a table page (and the table a damaged index)."""
    for sql in (f"select count(*) from {_quote(table)}", f"select count(*) from {_quote(table)} not indexed"):
        try:
            return int(reader.execute(sql).fetchone()[0])
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
    return None


def _drop_orphans(writer: sqlite3.Connection, results: dict[str, TableRecovery]) -> None:
    """Delete the rows whose parent row was lost (the new database must pass its foreign-key check)."""
    dropped: dict[tuple[str, str], int] = {}
    with writer:
        for table, rowid, parent, _ in writer.execute("pragma foreign_key_check").fetchall():
            writer.execute(f"delete from {_quote(table)} where rowid = ?", [rowid])
            dropped[table, parent] = dropped.get((table, parent), 0) + 1
    for (table, parent), count in dropped.items():
        result = results[table]
        result.recovered -= count
        if result.lost is not None:
            result.lost += count
        result.notes.append(f"{count} dropped: {'they refer' if count > 1 else 'it refers'} to lost rows of {parent}")
