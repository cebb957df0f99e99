"""The Chat screen, driven headless with Textual's pilot against a real agent: the real encoder,
the real SmolLM2 GGUF run by llama-cpp-python (loaded once for the module), real SQLite in the
test's OWNREC_HOME, and the small catalog of tests/helpers.py."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import catalog, onboarded_agent, open_from_feed
from textual.widgets import Input, Static

import agent.core.llm as core_llm
from agent.core.llm import LLM, Conversations, TitleIndex, ground
from agent.core.api import Agent
from agent.tui.app import OwnrecApp
from agent.tui.screens import ChatScreen, FeedScreen
from agent.tui.screens.chat import LOADING
from agent.tui.screenshot import settle

SIZE = (120, 40)
SNAPSHOT_SIZE = (100, 30)
REQUEST = "a mystery with a detective in a foggy town"
pytestmark = pytest.mark.anyio



@pytest.fixture
def agent(encoder) -> Agent:
    agent = onboarded_agent(encoder, catalog())
    yield agent
    agent.close()


@pytest.fixture
def loading() -> threading.Event:
    """Set to let the model's (lazy) loading finish; tests that do not look at it get it set."""
    return threading.Event()


@pytest.fixture
def chatty(agent, llm, loading, monkeypatch) -> Agent:
    """The agent loads its model lazily, as in use, but gets the module's (no reload per test)."""
    def load(config) -> LLM:
        assert loading.wait(30)
        return llm

    monkeypatch.setattr(core_llm, "load_llm", load)
    return agent


@pytest.fixture
def unavailable(agent, tmp_path) -> Agent:
    """An agent whose configured model is a file of junk bytes."""
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all" * 64)
    agent.config.set("llm.model", str(junk))
    return agent


def status(screen) -> str:
    return str(screen.query_one("#status", Static).content)


async def open_chat(pilot) -> ChatScreen:
    return await open_from_feed(pilot, "c", ChatScreen)


async def send(pilot, screen: ChatScreen, text: str) -> None:
    screen.query_one(Input).focus()
    await pilot.press(*text, "enter")


async def test_a_request_shows_the_ranker_items_and_the_streamed_reply(chatty, loading):
    app = OwnrecApp(chatty)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot)
        assert not chatty.llm_loaded
        await send(pilot, screen, REQUEST)
        await pilot.pause()
        assert REQUEST in screen.transcript_text()
        assert status(screen) == LOADING  # the first request loads the model, in a worker
        await pilot.press("tab", "shift+tab", *"next")  # the screen stays usable meanwhile
        assert screen.query_one(Input).value == "next"
        loading.set()
        await settle(pilot)
        screen.query_one(Input).value = ""
        assert screen.reply is not None and len(screen.answers) == 1
        answer = screen.answers[0]
        shown = [rec.item.id for rec in screen.items.recommendations]
        assert shown == [rec.item.id for rec in screen.reply.items] == [rec.item.id for rec in answer.items]
        assert len(shown) == chatty.config.get("llm.shortlist")
        for item_id in shown:
            assert chatty.store.item(item_id).id == item_id
        assert any("Mystery" in rec.item.metadata["genres"] for rec in answer.items)
        stored = Conversations(chatty.store).get(answer.conversation_id).messages
        assert [m.role for m in stored] == ["user", "assistant"] and stored[0].text == REQUEST
        assert stored[-1].text and stored[-1].text in screen.transcript_text()
        assert [i["id"] for i in stored[-1].items] == shown

        # the same conversation continues; ctrl+n starts a new one
        await send(pilot, screen, "something with cowboys instead")
        await settle(pilot)
        assert len(screen.answers) == 2 and screen.conversation_id == answer.conversation_id
        assert len(Conversations(chatty.store).get(answer.conversation_id).messages) == 4
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert screen.conversation_id is None and screen.reply is None and not screen.items.recommendations
        assert REQUEST not in screen.transcript_text()

        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FeedScreen)


async def test_the_reply_names_only_shortlisted_titles(chatty, loading):
    loading.set()
    app = OwnrecApp(chatty)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot)
        await send(pilot, screen, "space adventure with astronauts and aliens")
        await settle(pilot)
        reply = screen.answers[0].reply
        assert reply in screen.transcript_text()
        shortlist = screen.reply.items
        checked = screen.reply.grounder.ground(reply)
        assert checked.removed == [] and checked.safe_text == reply
        plain = ground(reply, shortlist, TitleIndex.from_store(chatty.store))
        assert set(plain.mentioned) <= {rec.item.id for rec in shortlist}

        # leaving in the middle of a reply drops it quietly
        await send(pilot, screen, "and a western")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FeedScreen) and app.is_running
        assert not [n for n in app._notifications if n.severity == "error"]


async def test_like_on_an_item_is_stored_from_chat(unavailable):
    # Feedback needs only the ranker's items: without a model, no time goes into generating.
    chatty = unavailable
    app = OwnrecApp(chatty)
    async with app.run_test(size=SIZE) as pilot:
        feed = await settle(pilot) or app.screen
        screen = await open_chat(pilot)
        await send(pilot, screen, REQUEST)
        await settle(pilot)
        screen.items.focus()
        await pilot.press("down")
        item = screen.items.current.item
        await pilot.press("l")
        await settle(pilot)
        likes = [e for e in chatty.store.interactions() if e.kind == "like"]
        assert [(e.item_id, e.origin) for e in likes] == [(item.id, "chat")]
        assert status(screen).startswith(f"liked {item.title}")
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is feed
        assert item.ref not in [rec.item.ref for rec in feed.table.recommendations]  # re-ranked on return
        assert "re-ranked after your feedback in chat" in status(feed)


async def test_an_unavailable_model_shows_the_fix_and_still_the_items(unavailable):
    agent = unavailable
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot)
        await send(pilot, screen, REQUEST)
        await settle(pilot)
        text = screen.transcript_text()
        assert "language model is unavailable" in text and "ownrec config unset llm.model" in text
        shown = screen.items.recommendations
        assert len(shown) == agent.config.get("llm.shortlist")
        assert all(agent.store.item(rec.item.id).id == rec.item.id for rec in shown)
        assert screen.reply is None and not screen.answers and app.is_running
        assert not Conversations(agent.store).list()


def test_snapshot_chat(agent, snap_compare):
    async def open_screen(pilot):
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        pilot.app.screen.query_one(Input).cursor_blink = False  # a blinking cursor is not reproducible
        await pilot.pause()

    assert snap_compare(OwnrecApp(agent), terminal_size=SNAPSHOT_SIZE, run_before=open_screen)


async def test_the_first_feed_says_it_is_loading_the_model_when_reranking_is_on(chatty, loading):
    chatty.config.set("llm.rerank", "true")
    app = OwnrecApp(chatty)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(200):  # until the worker is waiting for the model
            await pilot.pause(0.02)
            if isinstance(app.screen, FeedScreen) and "loading it first" in status(app.screen):
                break
        feed = app.screen
        assert isinstance(feed, FeedScreen) and status(feed).startswith(
            "ranking… the language model reranks the top of your feed (llm.rerank is on")
        loading.set()
        await settle(pilot)
        assert feed.table.recommendations and "loading it first" not in status(feed)


# -- conversations kept as they stream, reopened ----------------------------------------------------


def scripted(monkeypatch, llm: LLM, first: str, then: str = "", pause: float = 0.0) -> None:
    """The model's reply replaced: `first`, then `then` a word at a time, `pause` seconds apart."""
    from agent.core.llm.model import GenerationStats

    def stream_chat(messages, **kwargs):
        stats = llm.last_stats = GenerationStats()
        yield first
        for token in then.split(" "):
            time.sleep(pause)
            stats.completion_tokens += 1
            yield token + " "
        stats.finish_reason = "stop"

    monkeypatch.setattr(llm, "stream_chat", stream_chat)


async def wait_for(pilot, condition, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("waited in vain")


FIRST = "These fit a foggy night well. "
ON_AND_ON = "And " + " ".join(["it goes on"] * 400)  # one sentence that never ends: nothing more is released


async def test_esc_while_the_reply_streams_keeps_it_and_chat_reopens_on_it(chatty, llm, loading, monkeypatch):
    loading.set()
    scripted(monkeypatch, llm, FIRST, ON_AND_ON, pause=0.02)
    app = OwnrecApp(chatty)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot)
        await send(pilot, screen, REQUEST)
        await wait_for(pilot, lambda: FIRST.strip() in screen.transcript_text())
        shortlist = [rec.item.id for rec in screen.items.recommendations]
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FeedScreen) and app.chat_conversation is not None
        conversations = Conversations(chatty.store)
        await wait_for(pilot, lambda: conversations.get(app.chat_conversation).interrupted)
        stored = conversations.get(app.chat_conversation)
        assert [(m.role, m.text, m.state) for m in stored.messages] == [
            ("user", REQUEST, "complete"), ("assistant", FIRST, "interrupted")]  # never the unfinished sentence

        screen = await open_chat(pilot)  # Chat opens again on the same conversation
        text = screen.transcript_text()
        assert REQUEST in text and FIRST.strip() in text and "(interrupted: the reply stopped here)" in text
        assert text.index(REQUEST) < text.index(FIRST.strip()) and "it goes on" not in text
        assert status(screen).startswith(f"conversation {stored.id} · 2 messages · the last reply was interrupted")
        assert [rec.item.id for rec in screen.items.recommendations] == shortlist

        scripted(monkeypatch, llm, "Try the first one. ")
        await send(pilot, screen, "something with cowboys instead")
        await settle(pilot)
        assert screen.answers and screen.answers[0].conversation_id == stored.id
        assert [m.state for m in conversations.get(stored.id).messages] == ["complete", "interrupted", "complete",
                                                                            "complete"]
        assert not [n for n in app._notifications if n.severity == "error"]


async def test_the_chats_list_reopens_a_past_conversation_and_deletes_one(chatty, llm, loading, monkeypatch):
    from agent.tui.screens.chats import ChatsScreen
    from agent.tui.screens.confirm import ConfirmScreen
    from agent.tui.screens.help import HelpScreen, keys_of

    loading.set()
    scripted(monkeypatch, llm, "A fine pick for tonight. ")
    older = chatty.ask("a western with a lone rider")
    cut = chatty.stream(REQUEST)
    cut.close()  # stopped before any reply
    app = OwnrecApp(chatty)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_chat(pilot)
        assert ("^o", "Chats") in keys_of(screen)  # in the footer and on the help screen
        screen.items.focus()  # in the input, ? is typed
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen) and ("^o", "Chats") in app.screen.keys
        await pilot.press("escape", "ctrl+o")
        await settle(pilot)
        chats = app.screen
        assert isinstance(chats, ChatsScreen)
        assert [c.id for c in chats.conversations] == [cut.conversation_id, older.conversation_id]  # most recent first
        rows = [[str(cell) for cell in chats.table.get_row_at(row)] for row in range(2)]
        assert rows[0][1:] == ["2", "interrupted", REQUEST] and rows[1][1:] == ["2", "", "a western with a lone rider"]

        await pilot.press("down", "enter")
        await settle(pilot)
        assert app.screen is screen and screen.conversation_id == older.conversation_id
        text = screen.transcript_text()
        assert "a western with a lone rider" in text and older.reply in text
        assert "from your ranker: " + ", ".join(f"{r.item.display_title} ({r.item.year})" for r in older.items) in text
        await send(pilot, screen, "an older one")
        await settle(pilot)
        assert screen.answers[0].conversation_id == older.conversation_id
        assert Conversations(chatty.store).get(older.conversation_id).message_count == 4

        await pilot.press("ctrl+o")
        await settle(pilot)
        chats = app.screen
        assert chats.conversations[0].id == older.conversation_id  # now the latest; the cursor is on it
        chats.table.focus()
        await pilot.press("delete")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert [c.id for c in chats.conversations] == [cut.conversation_id]
        assert status(chats).startswith(f"deleted conversation {older.conversation_id}")
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen and screen.conversation_id is None and app.chat_conversation is None
        assert status(screen) == f"conversation {older.conversation_id} was deleted: the next request starts a new one"
        assert "a western with a lone rider" not in screen.transcript_text()
