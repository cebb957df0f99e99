"""The terminal app, driven headless with Textual's pilot against a real agent: the real
encoder, real SQLite in the test's OWNREC_HOME, and a small catalog built here."""

from __future__ import annotations

import pytest
from textual.widgets import Input, OptionList, SelectionList, Static

from agent.core.api import Agent, FeedbackError
from agent.tui.app import OwnrecApp
from agent.tui.screens import DetailsScreen, FeedScreen, OnboardingScreen, SearchScreen, StartScreen
from agent.tui.screenshot import save_screenshot, settle
from helpers import catalog

SIZE = (120, 40)
pytestmark = pytest.mark.anyio


@pytest.fixture
def agent(encoder) -> Agent:
    agent = Agent.open(encoder=encoder)
    agent.store.upsert_items(catalog())
    agent.ensure_embeddings()
    yield agent
    agent.close()


@pytest.fixture
def onboarded(agent) -> Agent:
    agent.store.set_state("onboarded", True)
    return agent


def kinds(agent: Agent, kind: str) -> list[int]:
    return [e.item_id for e in agent.store.interactions() if e.kind == kind]


def refs(screen: FeedScreen) -> list[str]:
    return [rec.item.ref for rec in screen.table.recommendations]


def status(screen) -> str:
    return str(screen.query_one("#status", Static).content)


async def test_like_removes_the_row_and_reranks(onboarded):
    app = OwnrecApp(onboarded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        feed = app.screen
        assert isinstance(feed, FeedScreen)
        before = refs(feed)
        first = feed.table.recommendations[0].item
        await pilot.press("l")
        await settle(pilot)
        assert kinds(onboarded, "like") == [first.id]
        after = refs(feed)
        assert first.ref not in after
        assert after != [ref for ref in before if ref != first.ref]  # re-ranked, not just shortened
        assert feed.table.cursor_row == 0
        assert f"liked {first.title} ({first.year}) · model updated in" in status(feed)
        assert "1 rated" in status(feed)


async def test_undo_takes_the_last_rating_back(onboarded):
    app = OwnrecApp(onboarded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        feed = app.screen
        before = refs(feed)
        first = feed.table.recommendations[0].item
        await pilot.press("l")
        await settle(pilot)
        assert first.ref not in refs(feed)
        await pilot.press("u")
        await settle(pilot)
        assert kinds(onboarded, "like") == []
        assert refs(feed) == before  # the feed is back where it was: the adapter before the like
        assert status(feed).startswith(f"took back: liked {first.title} ({first.year})")
        assert "0 rated" in status(feed)
        await pilot.press("u")  # nothing left to take back on this screen
        await settle(pilot)
        assert refs(feed) == before


async def test_home_and_end_go_to_the_first_and_last_item(onboarded):
    app = OwnrecApp(onboarded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        feed = app.screen
        await pilot.press("end")
        assert feed.table.cursor_row == len(feed.table.recommendations) - 1 > 0
        await pilot.press("home")
        assert feed.table.cursor_row == 0


async def test_question_mark_lists_every_key_of_the_screen(onboarded):
    from agent.tui.screens.help import HelpScreen

    app = OwnrecApp(onboarded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        feed = app.screen
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        listed = dict((what, key) for key, what in app.screen.keys)
        for what, key in {"Like": "l", "Dislike": "d", "Skip": "s", "Undo": "u", "Search": "/", "Traits": "t",
                          "Chat": "c", "Model": "m", "Privacy": "p", "Quit": "q / ^q", "Help": "?"}.items():
            assert listed.get(what) == key, (what, listed)
        assert {"Details", "First item", "Last item", "Cursor down"} <= set(listed), listed
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is feed


async def test_dislike_and_skip_keep_the_cursor_index(onboarded):
    app = OwnrecApp(onboarded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        feed = app.screen
        await pilot.press("down", "down")
        disliked = feed.table.current.item
        await pilot.press("d")
        await settle(pilot)
        assert feed.table.cursor_row == 2
        skipped = feed.table.current.item
        await pilot.press("s")
        await settle(pilot)
        assert kinds(onboarded, "dislike") == [disliked.id]
        assert kinds(onboarded, "skip") == [skipped.id]
        assert {disliked.ref, skipped.ref}.isdisjoint(refs(feed))
        assert feed.table.cursor_row == 2
        assert status(feed).startswith(f"skipped {skipped.title}") and "2 rated" in status(feed)


async def test_details_record_open_and_take_feedback(onboarded):
    app = OwnrecApp(onboarded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        feed = app.screen
        item = feed.table.current.item
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailsScreen) and app.screen.item == item
        assert kinds(onboarded, "open") == [item.id]
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is feed and item.ref in refs(feed)  # opening is not rating

        await pilot.press("enter", "l")
        await settle(pilot)
        assert app.screen is feed
        assert kinds(onboarded, "like") == [item.id] and item.ref not in refs(feed)


async def test_search_finds_the_item_and_opens_it(onboarded):
    app = OwnrecApp(onboarded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        feed = app.screen
        await pilot.press("slash")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"crimson ledger")
        await pilot.pause(0.4)  # the search is debounced
        await settle(pilot)
        search = app.screen
        assert search.results[0].title == "Crimson Ledger"
        assert search.query_one(OptionList).option_count == len(search.results)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailsScreen) and app.screen.item.title == "Crimson Ledger"
        await pilot.press("d")  # rated from search: back to the feed, which records it
        await settle(pilot)
        assert app.screen is feed
        assert kinds(onboarded, "dislike") == [search.results[0].id]
        assert status(feed).startswith("disliked Crimson Ledger")


async def test_search_escape_returns_to_the_feed(onboarded):
    app = OwnrecApp(onboarded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        feed = app.screen
        await pilot.press("slash", *"saffron", "escape")
        await settle(pilot)
        assert app.screen is feed


async def test_onboarding_picks_favourites_and_a_description(agent):
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OnboardingScreen)
        choices = screen.query_one(SelectionList)
        assert choices.option_count == 24
        await pilot.press("space", "down", "space")
        picked = list(choices.selected)
        assert len(picked) == 2
        # A ticked row carries a glyph, not only a colour; an unticked one does not.
        prompts = [str(choices.get_option_at_index(i).prompt) for i in range(3)]
        assert prompts[0].startswith("✓ ") and prompts[1].startswith("✓ ") and not prompts[2].startswith("✓")
        await pilot.press("m")  # more choices, the list keeps what was ticked
        await settle(pilot)
        assert choices.option_count == 48 and sorted(choices.selected) == sorted(picked)
        await pilot.press("slash", *"saffron", "enter")  # a search puts what it finds first
        await settle(pilot)
        first = choices.get_option_at_index(0).value
        assert "saffron" in agent.store.resolve_item(first).title.lower() and choices.has_focus
        assert sorted(choices.selected) == sorted(picked)
        screen.query_one("#taste", Input).focus()
        await pilot.press(*"space adventures", "escape")  # leaves the text field, does not skip
        assert app.screen is screen and choices.has_focus
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, FeedScreen)
        assert agent.store.get_state("onboarded") is True
        assert agent.store.get_state("taste_description") == "space adventures"
        assert sorted(kinds(agent, "like")) == sorted(agent.store.resolve_item(ref).id for ref in picked)
        assert not set(picked) & set(refs(app.screen))


async def test_onboarding_can_be_skipped(agent):
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FeedScreen) and not agent.needs_onboarding()
        assert len(app.screen.table.recommendations) == 20


async def test_onboarding_imports_the_demo_catalog(prepared_models_dir):
    # The one test that uses the MovieLens import: an empty catalog offers it on first run.
    app = OwnrecApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OnboardingScreen) and screen.catalog_empty
        assert screen.query_one("#import").display
        await pilot.press("i")
        await settle(pilot, rounds=1000)
        assert app.agent.store.item_count() == 1682
        assert screen.query_one(SelectionList).option_count == 24
        assert not screen.query_one("#import").display
    app.agent.close()


async def test_missing_encoder_is_shown_not_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("OWNREC_MODELS", str(tmp_path / "no-models"))
    app = OwnrecApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, StartScreen)
        assert "ownrec models prepare" in str(app.screen.query_one("#message", Static).content)
        assert app.is_running
    app.agent is None or app.agent.close()


async def test_core_errors_become_notifications(onboarded, monkeypatch):
    def refuse(*args, **kwargs):
        raise FeedbackError("the store is read-only")

    app = OwnrecApp(onboarded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = refs(app.screen)
        monkeypatch.setattr(onboarded, "feedback", refuse)
        await pilot.press("l")
        await settle(pilot)
        assert app.is_running and refs(app.screen) == before
        assert [n.message for n in app._notifications if n.severity == "error"] == ["the store is read-only"]


def test_save_screenshot_writes_the_feed(onboarded, tmp_path):
    onboarded.close()  # save_screenshot opens the data directory itself
    path = save_screenshot(tmp_path / "feed.svg")
    svg = path.read_text()
    assert svg.startswith("<svg") and "in&#160;the&#160;feed" in svg


# -- snapshots ---------------------------------------------------------------------------------

SNAPSHOT_SIZE = (100, 30)


@pytest.fixture
def taste(onboarded) -> Agent:
    """A fixed starting point without randomness: a taste sentence and one stored like (added
    straight to the store, since the online update after feedback draws random negatives)."""
    onboarded.describe_taste("science fiction in deep space")
    onboarded.store.add_interaction(onboarded.store.resolve_item("test:sci-0").id, "like", at=1.0)
    return onboarded


def test_snapshot_feed(taste, snap_compare):
    assert snap_compare(OwnrecApp(taste), terminal_size=SNAPSHOT_SIZE, run_before=settle)


def test_snapshot_details(taste, snap_compare):
    async def open_details(pilot):
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)

    assert snap_compare(OwnrecApp(taste), terminal_size=SNAPSHOT_SIZE, run_before=open_details)


def test_snapshot_search(taste, snap_compare):
    async def search(pilot):
        await settle(pilot)
        await pilot.press("slash", *"kitchen")
        pilot.app.screen.query_one(Input).cursor_blink = False  # a blinking cursor is not reproducible
        await pilot.pause(0.4)
        await settle(pilot)

    assert snap_compare(OwnrecApp(taste), terminal_size=SNAPSHOT_SIZE, run_before=search)


def test_snapshot_onboarding(agent, snap_compare):
    async def pick(pilot):
        await settle(pilot)
        await pilot.press("space", "down", "down", "space")

    assert snap_compare(OwnrecApp(agent), terminal_size=SNAPSHOT_SIZE, run_before=pick)


async def test_the_app_finishes_an_import_stopped_after_its_rows(onboarded, tmp_path):
    from agent.core.importers import import_file
    from agent.core.store import UnfinishedImports

    path = tmp_path / "history.csv"
    path.write_text("id,title,description,rating\n" + "".join(
        f"h{i},Harbor Tale {i},Boats and a lighthouse in chapter {i}.,{4 if i % 2 else ''}\n" for i in range(30)))
    import_file(onboarded.store, path)  # what a kill after the rows' commit leaves: nothing encoded, no retrain
    shown = []
    app = OwnrecApp(onboarded)
    app._starting = shown.append
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, rounds=500)
        assert isinstance(app.screen, FeedScreen)
    assert any(text.startswith("finishing the import of history.csv") and "encoding 30 items, retraining" in text
               for text in shown), shown
    assert UnfinishedImports(onboarded.store).entries() == []
    assert len(onboarded.catalog()) == len(catalog()) + 30
