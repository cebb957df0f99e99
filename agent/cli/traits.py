"""Your traits: what ownrec believes about your personality and taste, and the edits that change it.

`ownrec traits validate` (the lab's check of the traits themselves) lives in agent.cli.lab; the root adds it to
this group."""

from __future__ import annotations

from datetime import datetime

import click

from agent.cli.common import TEXT, SectionedGroup, emit_json, fail_cleanly, open_agent


@click.group(cls=SectionedGroup, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of {id, name, value, confidence, pinned, hidden, ...}.")
@click.pass_context
@fail_cleanly
def traits(ctx: click.Context, as_json: bool) -> None:
    """What ownrec believes about your personality and taste, and how to change it.

    \b
    Each trait is an axis between two poles (e.g. lighthearted 0 ... dark 1). Its value is
    read from your model, with a confidence that grows with consistent feedback.
    Edits are real: they move your model, change the next ranking, and can be undone.
      ownrec traits                 the list (hidden traits show no numbers)
      ownrec traits set dark 0.3    make the feed lighter
      ownrec traits pin dark        training may no longer move it
      ownrec traits hide niche      not used for ranking, not shown, not exported
      ownrec traits undo            take back the last edit
    Add your own traits to traits.toml in your data folder (same shape as the built-in ones).
    """
    if ctx.invoked_subcommand is not None:
        return
    agent = open_agent()
    for problem in agent.traits.problems:
        click.echo(f"skipped {problem}", err=True)
    readings = agent.traits.readings()
    if as_json:
        emit_json([r.as_dict() for r in readings])
        return
    for r in readings:
        if r.hidden:
            click.echo(f"{r.name:<18} (hidden)   `ownrec traits show {r.id}` to use and show it again")
            continue
        bar = "█" * round(r.value * 20) + "·" * (20 - round(r.value * 20))
        marks = " ".join(m for m, on in (("pinned", r.pinned), ("edited", r.edited)) if on)
        click.echo(f"{r.name:<18} {r.low[:18]:>18} {bar} {r.high[:18]:<18} {r.value:.2f}  "
                   f"confidence {r.confidence:.2f}  {marks}".rstrip())


@traits.command("set")
@click.argument("name", type=TEXT)
@click.argument("value", type=float)
@fail_cleanly
def traits_set(name: str, value: float) -> None:
    """Set trait NAME to VALUE (0 to 1); your model moves so it reads that value."""
    edit = open_agent().traits.set(name, value)
    click.echo(f"{edit.trait_id}: {edit.describe()}")


def _trait_edit(action: str, help_text: str) -> click.Command:
    @traits.command(action, help=help_text)
    @click.argument("name", type=TEXT)
    @fail_cleanly
    def command(name: str) -> None:
        edit = getattr(open_agent().traits, action)(name)
        click.echo(f"{edit.trait_id}: {edit.describe()}")

    return command


for _action, _help in [
    ("pin", "Pin trait NAME: training may no longer move it."),
    ("unpin", "Let training move trait NAME again."),
    ("hide", "Hide trait NAME: removed from ranking, from every display and from exports."),
    ("show", "Show and use a hidden trait NAME again."),
    ("reset", "Take back your own settings of NAME: it reads what your feedback infers."),
    ("forget", "Reset NAME, remove what feedback taught about it, and drop its evidence and history."),
]:
    _trait_edit(_action, _help)


@traits.command("undo")
@fail_cleanly
def traits_undo() -> None:
    """Undo the last trait edit."""
    edit = open_agent().traits.undo()
    click.echo("nothing to undo" if edit is None else f"undid {edit.trait_id}: {edit.describe().replace(' (undone)', '')}")


@traits.command("history")
@click.argument("name", required=False, type=TEXT)
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def traits_history(name: str | None, as_json: bool) -> None:
    """The local log of trait edits, newest first (never exported for hidden traits)."""
    edits = open_agent().traits.history(name)
    if as_json:
        emit_json([{"id": e.id, "at": e.at, "trait": e.trait_id, "action": e.action, "undone": e.undone,
                    "description": e.describe()} for e in edits])
        return
    if not edits:
        click.echo("no trait edits yet")
    for edit in edits:
        when = datetime.fromtimestamp(edit.at).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{when}  {edit.trait_id:<18} {edit.describe()}")


@traits.command("portrait")
@fail_cleanly
def traits_portrait() -> None:
    """A few sentences about your taste, written by the local LLM from your trait values
    (never the other way round: nothing it writes changes a value)."""
    portrait = open_agent().write_portrait()
    if not portrait.text:
        click.echo("not enough clear traits yet for a portrait: rate a few more items")
        return
    click.echo(portrait.text)
    click.echo(f"(from: {'; '.join(portrait.facts)})", err=True)
