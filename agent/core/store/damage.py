"""A damaged database file: how it is found (SQLite's quick_check), and the one message that says so.

A disk or a copy can damage a page of the file; SQLite then fails only when a query reaches that page, with
"database disk image is malformed". Checking at open (quick_check reads every page, in milliseconds for a
personal database) turns that into one clear refusal before anything is written, instead of a crash halfway
through a command. `recover.py` saves what is readable into a new file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.core.store.records import StoreError

# SQLite's primary result codes for a damaged file and for a file that is not a database at all.
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26
RECOVER_COMMAND = "ownrec recover"
PROBLEMS_SHOWN = 3


class DatabaseDamaged(StoreError):
    """The database file is damaged: `problems` is what SQLite's check said."""

    def __init__(self, path: Path | None, problems: list[str], *, at_open: bool = True) -> None:
        self.path = path
        self.problems = problems
        shown = "; ".join(problems[:PROBLEMS_SHOWN])
        more = f" (and {len(problems) - PROBLEMS_SHOWN} more)" if len(problems) > PROBLEMS_SHOWN else ""
        said = "SQLite's check says:" if at_open else "SQLite says:"
        # Found at open, before anything was written; found later, only the step that met it is undone.
        changed = "Nothing was changed." if at_open else "The step that met it was not saved."
        super().__init__(
            f"the database {path} is damaged: {said} {shown}{more}. {changed} "
            f"Run `{RECOVER_COMMAND}` to copy everything still readable into a new database (the damaged file is "
            "left as it is); it says how many rows it saved and how to switch to the new database.")


def is_damage(error: BaseException) -> bool:
    """Whether an sqlite3 error means the file is damaged (rather than locked, full or misused)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.DatabaseError) and code is not None and code & 0xFF in (SQLITE_CORRUPT,
                                                                                             SQLITE_NOTADB)


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """What SQLite's quick_check finds wrong with the file: [] when it is whole. A check that cannot even run
    is itself the problem it reports; a file that is no database at all is not damaged, it is refused (the
    sqlite3 error is raised)."""
    try:
        lines = [row[0] for row in conn.execute("pragma quick_check")]
    except sqlite3.DatabaseError as error:
        if not is_damage(error) or error.sqlite_errorcode & 0xFF == SQLITE_NOTADB:
            raise
        return [str(error)]
    return [] if lines == ["ok"] else [line for line in lines if line != "*** in database main ***"]


def damage_of(path: Path) -> list[str]:
    """What SQLite's check says is wrong with the database file at `path` ([]: nothing), read without
    changing it (no migration runs, unlike opening a Store)."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        return quick_check(conn)
    except sqlite3.DatabaseError as error:  # not a database at all
        return [str(error)]
    finally:
        conn.close()
