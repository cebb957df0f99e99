"""Conversations stored as they stream (agent.core.llm.chat's ReplyStream, agent.core.store.conversations):
the request when the iteration starts, each released piece as it is released, "interrupted" when a
reply is stopped or abandoned, "complete" with its details when it ends. Real SQLite and the demo
catalog; the real SmolLM2 model loads, but its reply is replaced by a scripted one (`scripted`), so
that what is generated (an invented title among real ones) is known."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
import threading
import time

import sqlite_utils
from click.testing import CliRunner

from agent import cli as cli_module
from agent.cli import cli
from agent.core.llm import LLM, Conversations
from agent.core.llm.model import GenerationStats
from agent.core.store import Store, migrations

REQUEST = "a crime thriller from the 90s"
INVENTED = "The Silent Horizon"


def scripted(monkeypatch, llm: LLM, text: str, pause: float = 0.0) -> None:
    """The model's reply replaced by `text`, a word at a time (`pause` seconds apart)."""

    def stream_chat(messages, **kwargs):
        stats = llm.last_stats = GenerationStats()
        for token in re.findall(r"\S+\s*", text):
            time.sleep(pause)
            stats.completion_tokens += 1
            yield token
        stats.finish_reason = "stop"

    monkeypatch.setattr(llm, "stream_chat", stream_chat)


def script_for(reply) -> str:
    first, second = (r.item.display_title for r in reply.items[:2])
    return f"{first} is a fine pick. You might also enjoy {INVENTED}, a moody thriller. {second} is tense too."


def stored_everything(store: Store) -> str:
    """Every message's text, items and details, as stored."""
    return json.dumps(list(store.db.execute("select text, items, meta from messages").fetchall()))


def test_a_stream_abandoned_after_its_first_piece_keeps_the_request_and_that_piece(demo_agent, llm, monkeypatch):
    reply = demo_agent.stream(REQUEST)
    scripted(monkeypatch, llm, script_for(reply))
    conversations = Conversations(demo_agent.store)
    assert conversations.list() == []  # nothing is stored before the request is sent
    chunks = iter(reply)
    shown = next(chunks)
    assert shown.startswith(reply.items[0].item.display_title) and INVENTED not in shown
    # While it streams, the request and what was shown are already stored: a crash now loses neither.
    conversation_id = reply.conversation_id
    live = conversations.get(conversation_id)
    assert [(m.role, m.text, m.state) for m in live.messages] == [
        ("user", REQUEST, "complete"), ("assistant", shown, "streaming")]
    assert [i["id"] for i in live.messages[1].items] == [r.item.id for r in reply.items]
    del chunks, reply  # abandoned, as a screen left or a program stopped would
    gc.collect()
    stored = conversations.get(conversation_id)
    assert [(m.role, m.text, m.state) for m in stored.messages] == [
        ("user", REQUEST, "complete"), ("assistant", shown, "interrupted")]
    assert stored.interrupted and [c.state for c in conversations.list()] == ["interrupted"]
    assert INVENTED not in stored_everything(demo_agent.store)


def test_a_reply_left_streaming_by_a_process_that_is_gone_reads_as_interrupted(demo_agent, llm, monkeypatch):
    reply = demo_agent.stream(REQUEST)
    scripted(monkeypatch, llm, script_for(reply))
    chunks = iter(reply)
    next(chunks)
    assert Conversations(demo_agent.store).get(reply.conversation_id).state == "streaming"  # this process writes it
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    with demo_agent.store.transaction():  # as a crashed writer would have left it
        demo_agent.store.db.execute("update messages set meta = json_set(meta, '$.writer', ?) where id = ?",
                                    [gone, reply.message_id])
    conversations = Conversations(demo_agent.store)
    assert conversations.get(reply.conversation_id).messages[-1].state == "interrupted"
    assert [c.state for c in conversations.list()] == ["interrupted"]
    chunks.close()


def test_a_completed_reply_is_stored_complete_with_its_details_and_nothing_ungrounded(demo_agent, llm, monkeypatch):
    reply = demo_agent.stream(REQUEST)
    scripted(monkeypatch, llm, script_for(reply))
    chunks = list(reply)
    answer = reply.answer
    assert answer is not None and "".join(chunks) == answer.reply and INVENTED not in answer.reply
    assert [r.reason for r in answer.removed] == ["not in the catalog"]
    stored = Conversations(demo_agent.store).get(answer.conversation_id)
    request, message = stored.messages
    assert (request.text, request.state, request.meta["filters"]) == (REQUEST, "complete", reply.filters.as_dict())
    assert (message.id, message.text, message.state) == (answer.message_id, answer.reply, "complete")
    assert message.meta["mentioned"] == answer.mentioned == [r.item.id for r in reply.items[:2]]
    assert message.meta["removed"] == [{"reason": "not in the catalog", "chars": len(answer.removed[0].text)}]
    assert message.meta["stats"] == json.loads(json.dumps(answer.stats)) and "writer" not in message.meta
    assert message.meta["generated_chars"] == len(script_for(reply))  # how much was generated, never what
    assert not stored.interrupted and INVENTED not in stored_everything(demo_agent.store)
    # The next request continues it; the earlier reply is history the model sees.
    follow = demo_agent.stream("older ones", conversation_id=answer.conversation_id)
    assert {"role": "assistant", "content": answer.reply} in follow.messages
    follow.close()
    assert [m.state for m in Conversations(demo_agent.store).get(answer.conversation_id).messages] == [
        "complete", "complete", "complete", "interrupted"]


def test_cancel_from_another_thread_stops_at_once_and_keeps_what_was_released(demo_agent, llm, monkeypatch):
    reply = demo_agent.stream(REQUEST)
    scripted(monkeypatch, llm, script_for(reply) + " It runs on." * 300, pause=0.01)
    released: list[str] = []
    first = threading.Event()

    def read() -> None:
        for chunk in reply:
            released.append(chunk)
            first.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first.wait(30)
    reply.cancel()
    started = time.perf_counter()
    reader.join(10)
    assert not reader.is_alive() and time.perf_counter() - started < 2  # not after 300 more sentences
    assert reply.answer is None
    message = Conversations(demo_agent.store).get(reply.conversation_id).messages[-1]
    assert (message.text, message.state) == ("".join(released), "interrupted") and message.text


def test_a_stream_closed_before_it_started_keeps_the_request(demo_agent):
    reply = demo_agent.stream(REQUEST)
    reply.close()
    stored = Conversations(demo_agent.store).get(reply.conversation_id)
    assert [(m.role, m.text, m.state) for m in stored.messages] == [
        ("user", REQUEST, "complete"), ("assistant", "", "interrupted")]


def test_chats_show_and_list_say_a_reply_was_interrupted(demo_agent, llm, monkeypatch):
    monkeypatch.setattr(cli_module, "_agent", lambda: demo_agent)
    reply = demo_agent.stream(REQUEST)
    scripted(monkeypatch, llm, script_for(reply))
    chunks = iter(reply)
    shown = next(chunks)
    chunks.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["chats", "show", str(reply.conversation_id)])
    assert result.exit_code == 0, result.output
    assert f"you: {REQUEST}" in result.output and "(interrupted: the reply stopped here)" in result.output
    assert f"ownrec: {shown.strip()}" in result.output
    listed = runner.invoke(cli, ["chats", "list"])
    assert listed.output.rstrip().endswith(f"{REQUEST}  (interrupted)")
    data = json.loads(runner.invoke(cli, ["chats", "show", "--json", str(reply.conversation_id)]).output)
    assert [m["state"] for m in data["messages"]] == ["complete", "interrupted"]
    done = demo_agent.ask("a western")  # a complete one is not marked
    listed = runner.invoke(cli, ["chats", "list"])
    line = next(line for line in listed.output.splitlines() if line.lstrip().startswith(str(done.conversation_id)))
    assert "interrupted" not in line


def test_replies_stored_before_streaming_was_stored_read_as_complete(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    with monkeypatch.context() as patched:  # the schema as it was before m006
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:5])
        migrations.apply_migrations(old)
    old["conversations"].insert({"id": 1, "title": "old", "created": 1.0, "updated": 1.0})
    old["messages"].insert({"conversation_id": 1, "role": "assistant", "text": "Fargo.", "items": "[]",
                            "created": 1.0, "meta": "{}"})
    old.close()
    store = Store.open(path)
    assert Conversations(store).get(1).messages[0].state == "complete"
    assert Conversations(store).list()[0].state == "complete"
    store.close()
