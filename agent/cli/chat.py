"""Ask and chats: requests in your own words, answered from your own ranking by the local LLM, and the
conversations they make (kept on this machine)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

import click

from agent.cli.common import TEXT, SectionedGroup, emit_json, fail_cleanly, open_agent
from agent.core.api import ChatError, LLMUnavailable


def _llm_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """LLMUnavailable and chat errors as one clear line (ranking works without the LLM)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LLMUnavailable as error:
            raise click.ClickException(f"{error}\n(`ownrec recommend --query TEXT` works without it)") from None
        except ChatError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def _item_lines(items: list[dict[str, Any]]) -> list[str]:
    lines = []
    for rank, item in enumerate(items, 1):
        year = f" ({item['year']})" if item.get("year") else ""
        lines.append(f"{rank:>3}. [{item['id']}] {item['title']}{year}  {item['score']:+.2f}  {item['reason']}")
    return lines


@click.command()
@click.argument("text", nargs=-1, required=True, type=TEXT)
@click.option("--chat", "conversation", type=int, metavar="ID", help="Continue conversation ID (`ownrec chats list`).")
@click.option("--top", "-n", type=click.IntRange(1, 20), help="How many items to show (default: llm.shortlist).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: {conversation_id, reply, items: [{id, title, score, reason, ...}], ...}.")
@fail_cleanly
@_llm_errors
def ask(text: tuple[str, ...], conversation: int | None, top: int | None, as_json: bool) -> None:
    """Ask for something in your own words; the answer comes from your own ranking.

    \b
    Examples:
      ownrec ask something funny from the 80s
      ownrec ask "a slow, thoughtful science fiction film" --json
      ownrec ask --chat 3 "something older"

    The items come from your personal ranker, filtered by what the request asks for (genres,
    years). A small language model (SmolLM2-135M-Instruct by default; `ownrec config set
    llm.model PATH` for another GGUF) writes the reply, which is shown sentence by sentence as
    each sentence is checked: a sentence naming a title that is not on the list, or claiming
    what your catalog, your ratings or your traits contradict, is held back. "why X?" and
    "what do you know about me?" are answered from your own data, without the model.
    Conversations stay on this machine: `ownrec chats`.
    """
    reply = open_agent().stream(" ".join(text), conversation_id=conversation, size=top)
    try:
        if as_json:
            for _ in reply:
                pass
        else:
            for chunk in reply:
                click.echo(chunk, nl=False)
    finally:
        reply.close()  # ctrl+c: the request and the reply shown so far stay stored, marked interrupted
    if as_json:
        assert reply.answer is not None
        emit_json(reply.answer.as_dict())
        return
    answer = reply.answer
    assert answer is not None
    click.echo()
    if answer.filters:
        relaxed = f" (relaxed: {', '.join(answer.relaxed)}, too few matched)" if answer.relaxed else ""
        click.echo(f"\nfiltered for {answer.filters.describe()}{relaxed}")
    click.echo("")
    for line in _item_lines(answer.items_json()):
        click.echo(line)
    if answer.held_back:
        click.echo(f"\n({answer.held_back})", err=True)
    click.echo(f"\nconversation {answer.conversation_id}: continue with `ownrec ask --chat {answer.conversation_id} ...`",
               err=True)


@click.group(cls=SectionedGroup)
def chats() -> None:
    """Your conversations with `ownrec ask`, kept on this machine."""


@chats.command("list")
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def chats_list(as_json: bool) -> None:
    """Every conversation, most recent first."""
    found = open_agent().conversations()
    if as_json:
        emit_json([c.as_dict(with_messages=False) for c in found])
        return
    if not found:
        click.echo("no conversations yet: `ownrec ask ...` starts one")
    for c in found:
        when = datetime.fromtimestamp(c.updated).strftime("%Y-%m-%d %H:%M")
        mark = "  (interrupted)" if c.interrupted else ""
        click.echo(f"{c.id:>4}  {when}  {c.message_count:>3} messages  {c.title}{mark}")


@chats.command("show")
@click.argument("conversation", type=int, metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def chats_show(conversation: int, as_json: bool) -> None:
    """The messages of conversation ID, with the items shown beside each reply."""
    found = open_agent().conversation(conversation)
    if as_json:
        emit_json(found.as_dict())
        return
    click.echo(f"conversation {found.id}: {found.title}")
    for message in found.messages:
        when = datetime.fromtimestamp(message.created).strftime("%Y-%m-%d %H:%M")
        text = message.text
        if message.state == "interrupted":
            text = f"{text}\n(interrupted: the reply stopped here)" if text else "(interrupted before any reply)"
        elif message.state == "streaming":
            text = f"{text}\n(unfinished: the reply is still being written)" if text else "(the reply is being written)"
        click.echo(f"\n[{when}] {'you' if message.role == 'user' else 'ownrec'}: {text}")
        for line in _item_lines(message.items):
            click.echo(line)


@chats.command("delete")
@click.argument("conversation", type=int, metavar="ID", required=False)
@click.option("--all", "everything", is_flag=True, help="Delete every conversation.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --all).")
@fail_cleanly
def chats_delete(conversation: int | None, everything: bool, yes: bool) -> None:
    """Delete conversation ID, or all of them with --all."""
    if everything == (conversation is not None):
        raise click.UsageError("give either a conversation ID or --all")
    agent = open_agent()
    if everything:
        if not yes:
            click.confirm("Delete every conversation?", abort=True)
        click.echo(f"deleted {agent.delete_conversations()} conversations")
    else:
        agent.delete_conversation(conversation)
        click.echo(f"deleted conversation {conversation}")

