"""The CLI's last net (`agent.cli.main`): an error no command expected becomes one paragraph on the terminal,
naming the command and the log file in the data folder that holds the traceback.

Damage to the database that only a query meets (SQLite's check at open passed) is not a bug: it gets the
damaged-database message instead, with what to do.
"""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
from pathlib import Path

import click

from agent.core import paths
from agent.core.api.salvage import DatabaseDamaged, is_damage

EXIT_FAILED = 1


def tolerant_output() -> None:
    """Characters the terminal cannot show are written as escapes (\\udc80) rather than ending the command
    with an encoding error halfway through its output."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def command_name(args: list[str], root: click.Group) -> str:
    """`ownrec items search` from the arguments: the names of the groups and command they reach."""
    names, command = ["ownrec"], root
    for arg in args:
        if arg.startswith("-"):
            continue
        if not isinstance(command, click.Group) or arg not in command.commands:
            break
        names.append(arg)
        command = command.commands[arg]
    return " ".join(names)


def _write_log(error: BaseException, command: str, args: list[str]) -> Path:
    """The traceback in the data folder's logs/ (a temporary folder when that cannot be written)."""
    text = (f"ownrec crash report, {time.strftime('%Y-%m-%d %H:%M:%S %z')}\ncommand: {command}\n"
            f"arguments: {args!r}\n\n" + "".join(traceback.format_exception(error)))
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 1_000_000:06d}.log"
    for folder in (lambda: paths.Home.default().folder("logs"), lambda: Path(tempfile.gettempdir())):
        try:
            path = folder() / name
            path.write_text(text, encoding="utf-8", errors="backslashreplace")
            return path
        except OSError:
            continue
    raise error


def report_unexpected(error: Exception, args: list[str], root: click.Group) -> int:
    """Say what went wrong in one paragraph, log the details, and give the exit code."""
    damage = next((e for e in _chain(error) if is_damage(e)), None)
    if damage is not None:
        click.echo(f"Error: {DatabaseDamaged(paths.database_path(), [str(damage)], at_open=False)}", err=True)
        return EXIT_FAILED
    command = command_name(args, root)
    log = _write_log(error, command, args)
    summary = str(error).splitlines()[0][:300] if str(error) else ""
    click.echo(f"Error: `{command}` stopped on an error it has no message for ({type(error).__name__}"
               f"{': ' + summary if summary else ''}). The details are in {log}; please include that file if you "
               "report it.", err=True)
    return EXIT_FAILED


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen
