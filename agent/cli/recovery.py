"""`ownrec recover`: when the database is damaged, copy everything readable into a new one, and say how to
switch to it. `ownrec export` uses the same reading when the database is damaged (see settings.py)."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import click

from agent.cli.common import fail_cleanly
from agent.core import paths
from agent.core.api.salvage import Recovery, damage_of
from agent.core.api.salvage import recover as recover_database


def table_lines(recovery: Recovery) -> list[str]:
    """One line per table that had rows: recovered and lost."""
    width = max(len(table.table) for table in recovery.tables)
    lines = []
    for table in recovery.tables:
        if table.recovered or table.lost != 0:
            lost = "an unknown number" if table.lost is None else f"{table.lost:,}"
            notes = f" ({'; '.join(table.notes)})" if table.notes else ""
            lines.append(f"  {table.table:<{width}}  {table.recovered:>9,} recovered, {lost} lost{notes}")
    return lines


@click.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the new database (default: ownrec-recovered-DATE.db next to the damaged one).")
@fail_cleanly
def recover(output: Path | None) -> None:
    """Save what is readable of a damaged database into a new one.

    Reads the database table by table and row by row, skips what cannot be read, and writes every
    readable row into a new database; the damaged file is never changed. Prints how many rows of each
    table were recovered and lost, and the commands that switch to the new database.
    """
    database = paths.database_path()
    if not database.exists():
        raise click.ClickException(f"there is no database at {database}: nothing to recover")
    problems = damage_of(database)
    if not problems:
        click.echo(f"{database} passes SQLite's check: it is not damaged, and nothing was written.")
        return
    output = output or database.with_name(f"ownrec-recovered-{time.strftime('%Y%m%d-%H%M%S')}.db")
    recovery = recover_database(database, output)
    click.echo(f"{database} is damaged (SQLite's check says: {'; '.join(problems[:3])}).")
    click.echo(f"Every readable row was copied into {recovery.destination}:")
    for line in table_lines(recovery):
        click.echo(line)
    click.echo(f"\nThe damaged file was not changed. To switch to the recovered database (the damaged one is kept "
               f"as {database.name}.damaged), run:")
    for suffix in ("", "-wal", "-shm"):  # the damaged file's journal must go with it, or SQLite would replay it
        damaged = Path(f"{database}{suffix}")
        if damaged.exists():
            click.echo(f"  mv {shlex.quote(str(damaged))} {shlex.quote(str(damaged) + '.damaged')}")
    click.echo(f"  mv {shlex.quote(str(recovery.destination))} {shlex.quote(str(database))}")
    click.echo("Then check it with `ownrec doctor`.")
