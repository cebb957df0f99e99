"""The Chat screen, driven headless with Textual's pilot against a real agent: the real encoder,
the real SmolLM2 GGUF run by llama-cpp-python (loaded once for the module), real SQLite in the
test's OWNREC_HOME, and the small catalog of tests/helpers.py."""

from __future__ import annotations

import threading

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



@pytest.fixture(scope="module")
def llm(llm_cache_dir) -> LLM:
    return LLM.load(cache_dir=llm_cache_dir)


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
