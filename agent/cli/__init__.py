"""The `ownrec` command line. Every command works on the local data directory only.

Run `ownrec --help`, or `ownrec COMMAND --help`, for the documentation of each command. One module per area
(feed, traits, chat, lora, sync, settings; lab and coordinator for developers and operators), each defining its
commands; this module is the root group that gathers them, the person's first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from agent import __version__
from agent.cli import chat, coordinator, feed, lab, lora, prior, recovery, settings, sync, traits
from agent.cli.common import SectionedGroup
from agent.core.api import Agent

# How every command opens the person's agent: the root hands it down in ctx.obj (common.open_agent), read
# when a command runs, so a test may put its own agent here.
_agent: Callable[[], Agent] = Agent.open

LAB = "Lab (measuring ownrec; for developers)"
OPERATORS = "Operators (hosting a sync federation)"


# Help as wide as the terminal up to 100 columns (click's default stops at 80), so that on most terminals each
# command's description fits on its line.
@click.group(cls=SectionedGroup, invoke_without_command=True, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="ownrec")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """ownrec: a recommender that lives on your machine and learns only from you.

    Run without a command to open the terminal app. Your data stays in one local folder
    (see `ownrec doctor`); nothing is sent anywhere.
    """
    ctx.obj = _agent
    if ctx.invoked_subcommand is None:
        from agent.tui.app import run

        run()


# --help lists the sections in this order and each section's commands in the order given.
SECTIONS: list[tuple[str, list[click.Command]]] = [
    ("Your feed", [feed.import_, feed.recommend, feed.feedback, feed.undo, feed.taste, traits.traits, feed.retrain,
                   feed.items]),
    ("Chat", [chat.ask, chat.chats, lora.lora]),
    ("Your data and settings", [sync.sync, prior.prior, settings.export, settings.forget, settings.config, settings.models,
                                settings.doctor, recovery.recover]),
    (LAB, [lab.bench, lab.eval_group, lab.audit]),
    (OPERATORS, [coordinator.coordinator]),
]
for _section, _commands in SECTIONS:
    for _command in _commands:
        cli.add_command(_command, section=_section)
traits.traits.add_command(lab.traits_validate, section=LAB)


EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C


def main() -> None:
    """`ownrec`: the root group, with a last net under it. The errors a person can act on have their own
    messages (`common.fail_cleanly`); anything else ends in one paragraph naming the command and the log file
    that holds the traceback (`crash.py`), never a traceback on the terminal."""
    from agent.cli.crash import report_unexpected, tolerant_output

    tolerant_output()
    try:
        code = cli.main(prog_name="ownrec", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort as error:
        if isinstance(error.__context__, KeyboardInterrupt):
            sys.exit(EXIT_INTERRUPTED)
        click.echo("Aborted!", err=True)  # end of input at a question
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # the net: reported, logged, exit 1
        sys.exit(report_unexpected(error, sys.argv[1:], cli))
    sys.exit(code if isinstance(code, int) else 0)
