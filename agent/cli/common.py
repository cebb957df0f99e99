"""What every command module of the CLI shares: the help layout, clean failures, the agent, progress and JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from agent.core.api import Agent, FeedbackError, LLMUnavailable, StoreError, TraitError
from agent.core.config import ConfigError
from agent.core.encoder import EncoderUnavailable
from agent.core.importers import ImportFailed
from agent.core.ranker import AdapterError

COMMANDS = "Commands"

# Errors a person can act on: shown as one clear line, without a traceback.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    EncoderUnavailable, StoreError, ConfigError, AdapterError, FeedbackError, ImportFailed, TraitError, OSError,
    LLMUnavailable,
)


class SectionedGroup(click.Group):
    """A group whose --help lists its commands in the order they were added, under section headings, each with
    its whole summary: click would cut a summary to one line with "...", these wrap instead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sections: dict[str, list[str]] = {}
        super().__init__(*args, **kwargs)

    def add_command(self, cmd: click.Command, name: str | None = None, section: str = COMMANDS) -> None:
        super().add_command(cmd, name)
        name = name or cmd.name
        for names in self.sections.values():
            if name in names:
                names.remove(name)
        self.sections.setdefault(section, []).append(name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for names in self.sections.values() for name in names]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        shown = {section: [(name, self.commands[name]) for name in names if not self.commands[name].hidden]
                 for section, names in self.sections.items()}
        # One width for the names of every section, so the descriptions line up from section to section.
        width = max((len(name) for commands in shown.values() for name, _ in commands), default=0)
        for section, commands in shown.items():
            if commands:
                with formatter.section(section):
                    formatter.write_dl([(name.ljust(width), command.get_short_help_str(limit=sys.maxsize))
                                        for name, command in commands])


class Text(click.ParamType):
    """Free text from the command line: refused, with what to do, when it holds a lone surrogate (bytes that
    are not UTF-8, which Python keeps as such), since nothing downstream (SQLite, the encoder, the terminal)
    can take one."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        bad = next((at for at, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF), None)
        if bad is not None:
            self.fail(f"{text!r} is not valid text: character {bad + 1} is a byte that is not UTF-8. Type it "
                      "again, and check that the terminal uses UTF-8 (`locale` shows LANG and LC_ALL)", param, ctx)
        return text


TEXT = Text()


def fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The errors a person can act on (EXPECTED_ERRORS) end the command with one line and exit code 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except EXPECTED_ERRORS as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def open_agent() -> Agent:
    """The person's agent, opened by the root command's opener (its ctx.obj: agent.cli._agent, which a test
    may replace), or straight from the data folder when a command runs without the root."""
    context = click.get_current_context(silent=True)
    opener = context.find_root().obj if context is not None else None
    return (opener or Agent.open)()


def open_agent_finishing_imports() -> Agent:
    """`open_agent()`, with an import that was interrupted after writing its rows finished first (its items
    encoded, the model retrained), saying so on standard error: for the commands that rank or learn."""
    agent = open_agent()
    agent.finish_interrupted_imports(progress=report_progress("encoding"), say=echo_err)
    return agent


def report_progress(label: str) -> Callable[[int, int], None]:
    """A progress callback that counts on one line of standard error (only the last count when not a terminal)."""

    def report(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            click.echo(f"\r{label}: {done}/{total}", nl=done == total, err=True)

    return report


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def echo_err(message: str) -> None:
    """A log line for long runs, on standard error so that standard output stays the result."""
    click.echo(message, err=True)
