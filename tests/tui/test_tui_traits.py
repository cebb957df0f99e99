"""The Traits screen, driven headless with Textual's pilot against a real agent: the real
encoder, real SQLite in the test's OWNREC_HOME, and the small catalog of tests/helpers.py."""

from __future__ import annotations

import pytest
from helpers import catalog, open_from_feed
from textual.widgets import Input, Static

from agent.core.api import Agent, TraitError, TraitReading
from agent.core.config import Config
from agent.core.store import Store
from agent.tui.app import OwnrecApp
from agent.tui.screens import ConfirmScreen, TraitsScreen, TraitValueScreen
from agent.tui.screens.traits import parse_value
from agent.tui.screenshot import settle
from agent.tui.widgets import TraitDetail, TraitRow

SIZE = (120, 40)
SNAPSHOT_SIZE = (100, 30)
pytestmark = pytest.mark.anyio

# Liked in two rounds, each followed by a (seeded) full retraining: every trait has a value,
# evidence and a trend of two points, and nothing depends on the random negatives of feedback.
FIRST_LIKES = ["test:sci-0", "test:sci-3", "test:mys-1"]
LATER_LIKES = ["test:mys-5", "test:wes-2"]
DISLIKES = ["test:rom-0"]



@pytest.fixture
def agent(encoder) -> Agent:
    agent = Agent(Store.open(), Config(), encoder, seed=0)
    agent.store.upsert_items(catalog())
    agent.ensure_embeddings()
    agent.store.set_state("onboarded", True)
    at = 0.0
    for batch in ([(ref, "like") for ref in FIRST_LIKES],
                  [(ref, "like") for ref in LATER_LIKES] + [(ref, "dislike") for ref in DISLIKES]):
        for ref, kind in batch:
            at += 1.0
            agent.store.add_interaction(agent.store.resolve_item(ref).id, kind, at=at)
        agent.retrain()
    yield agent
    agent.close()


def by_id(agent: Agent) -> dict[str, TraitReading]:
    return {r.id: r for r in agent.traits.readings()}


def status(screen) -> str:
    return str(screen.query_one("#status", Static).content)


def row_of(screen: TraitsScreen, trait_id: str) -> TraitRow:
    return next(row for row in screen.query(TraitRow) if row.reading.id == trait_id)


def shown_text(row: TraitRow) -> str:
    """What a row shows in words and numbers (the bars and the sparkline aside)."""
    return " ".join(str(part.content) for part in row.query(Static) if part.display)


def middling(agent: Agent) -> TraitReading:
    """A trait well inside 0..1, so a nudge either way moves it by a full step."""
    return next(r for r in agent.traits.readings() if not r.hidden and 0.15 < r.value < 0.8)


async def open_traits(pilot) -> TraitsScreen:
    return await open_from_feed(pilot, "t", TraitsScreen)


async def select(pilot, screen: TraitsScreen, trait_id: str) -> None:
    index = [r.id for r in screen.trait_list.readings].index(trait_id)
    await pilot.press("home", *["down"] * index)
    await settle(pilot)
    assert screen.current.id == trait_id


async def test_t_opens_every_trait_with_its_reading(agent):
    agent.traits.hide("factual")
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_traits(pilot)
        readings = agent.traits.readings()
        shown = screen.trait_list.readings
        assert {r.id for r in shown} == {r.id for r in readings}
        assert [r.kind for r in shown] == sorted((r.kind for r in readings), key=["personality", "taste"].index)
        for reading in readings:
            row = row_of(screen, reading.id)
            if reading.hidden:
                continue
            assert row.reading.value == pytest.approx(reading.value, abs=1e-6)
            assert row.reading.confidence == pytest.approx(reading.confidence, abs=1e-6)
            text = shown_text(row)
            assert reading.name in text and f"{reading.value:.2f}" in text
            assert f"{reading.confidence:.0%}" in text
        headings = " ".join(str(s.content) for s in screen.query(".trait-heading Static"))
        assert "Personality" in headings and "Taste" in headings
        # the evidence panel follows the cursor
        first = shown[0]
        detail = screen.query_one(TraitDetail)
        assert detail.reading.id == first.id
        assert first.evidence and first.evidence[0].item.display_title in detail.plain
        await pilot.press("down")
        await settle(pilot)
        assert detail.reading.id == shown[1].id
        await pilot.click(row_of(screen, shown[3].id))  # a click selects too
        await settle(pilot)
        assert screen.current.id == shown[3].id and detail.reading.id == shown[3].id


async def test_right_and_left_nudge_the_selected_trait(agent):
    trait = middling(agent)
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_traits(pilot)
        await select(pilot, screen, trait.id)
        await pilot.press("right")
        await settle(pilot)
        raised = by_id(agent)[trait.id].value
        # A nudge asks for 0.05 more and goes up, as far as one edit of 0.05 may move the feed.
        assert trait.value < raised <= trait.value + 0.05 + 1e-3
        edit = agent.traits.history()[0]
        assert (edit.trait_id, edit.action, edit.undone) == (trait.id, "set", False)
        assert edit.detail["asked"] == pytest.approx(trait.value + 0.05, abs=1e-6)
        assert status(screen).startswith(f"{trait.name} set to {raised:.2f} (was {trait.value:.2f})")
        assert f"{raised:.2f}" in shown_text(row_of(screen, trait.id))
        assert "edited" in shown_text(row_of(screen, trait.id))

        await pilot.press("left", "minus")  # two steps down, made one after the other
        await settle(pilot)
        assert by_id(agent)[trait.id].value < raised
        assert [e.action for e in agent.traits.history()] == ["set", "set", "set"]


async def test_typing_a_value_sets_it_and_a_bad_one_changes_nothing(agent):
    trait = middling(agent)
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_traits(pilot)
        await select(pilot, screen, trait.id)
        await pilot.press("enter")
        await settle(pilot)
        modal = app.screen
        assert isinstance(modal, TraitValueScreen)
        assert modal.query_one(Input).value == f"{trait.value:.2f}"
        await pilot.press(*"0.9", "enter")  # the value is selected: typing replaces it
        await settle(pilot)
        assert app.screen is screen
        reached = by_id(agent)[trait.id].value  # as far towards 0.9 as one edit may move the feed, and said so
        assert trait.value < reached <= 0.9 + 1e-3
        assert status(screen).startswith(f"{trait.name} set to {reached:.2f}")
        assert reached > 0.895 or "asked 0.90" in status(screen)

        before, edits = by_id(agent), len(agent.traits.history())
        for bad in ("2", "abc"):
            await pilot.press("equals_sign")
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, TraitValueScreen)
            modal.query_one(Input).value = ""
            await pilot.press(*bad, "enter")
            await settle(pilot)
            assert app.screen is modal  # still open, to try again
            with pytest.raises(TraitError) as refused:
                agent.traits.set(trait.id, 2.0 if bad == "2" else bad)
            assert str(modal.query_one("#value-note", Static).content) == str(refused.value)
            assert status(screen) == str(refused.value)
            await pilot.press("escape")
            await settle(pilot)
            assert app.screen is screen
        assert by_id(agent)[trait.id].value == pytest.approx(before[trait.id].value, abs=1e-6)
        assert len(agent.traits.history()) == edits


def test_typed_values_are_numbers_or_left_for_the_core_to_refuse():
    assert parse_value(" 0.35 ") == 0.35 and parse_value(".5") == 0.5 and parse_value("35%") == 0.35
    assert parse_value("2") == 2.0 and parse_value("abc") == "abc" and parse_value("") == ""


async def test_pin_hide_show_reset_forget_and_undo(agent):
    trait = middling(agent)
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_traits(pilot)
        await select(pilot, screen, trait.id)
        row = row_of(screen, trait.id)

        await pilot.press("p")
        await settle(pilot)
        assert by_id(agent)[trait.id].pinned
        assert "📌" in shown_text(row) and status(screen).startswith(f"{trait.name} pinned at")
        await pilot.press("p")
        await settle(pilot)
        assert not by_id(agent)[trait.id].pinned and "📌" not in shown_text(row)

        await pilot.press("h")
        await settle(pilot)
        assert by_id(agent)[trait.id].hidden
        assert shown_text(row) == f"{trait.name} — hidden (press v to show)"
        assert not any(ch.isdigit() for ch in shown_text(row))
        assert not row.query_one(".value").display and not row.query_one(".bar").display
        await pilot.press("right")  # a hidden trait cannot be nudged
        await settle(pilot)
        assert by_id(agent)[trait.id].hidden and agent.traits.history()[0].action == "hide"
        await pilot.press("v")
        await settle(pilot)
        reading = by_id(agent)[trait.id]
        assert not reading.hidden and reading.value == pytest.approx(trait.value, abs=1e-4)
        assert f"{trait.value:.2f}" in shown_text(row)

        await pilot.press("right", "right")
        await settle(pilot)
        assert by_id(agent)[trait.id].edited
        await pilot.press("r")
        await settle(pilot)
        reading = by_id(agent)[trait.id]
        assert not reading.edited and reading.value == pytest.approx(trait.value, abs=1e-3)
        assert status(screen).startswith(f"{trait.name} reset to inferred")

        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # not confirmed: nothing forgotten
        await settle(pilot)
        assert app.screen is screen and agent.traits.history()[0].action == "reset"
        await pilot.press("f", "y")
        await settle(pilot)
        forgotten = by_id(agent)[trait.id]
        assert agent.traits.history()[0].action == "forget"
        assert forgotten.evidence == [] and forgotten.trend == [] and forgotten.value == pytest.approx(0.5, abs=1e-3)
        assert "no evidence yet" in screen.query_one(TraitDetail).plain

        await pilot.press("u")
        await settle(pilot)
        back = by_id(agent)[trait.id]
        assert back.value == pytest.approx(trait.value, abs=1e-3) and back.evidence and back.trend
        assert agent.traits.history()[0].undone
        assert status(screen) == f"undid {trait.name}: forgotten: reset, neutral, its evidence and history dropped"


async def test_leaving_after_an_edit_reranks_the_feed(agent, monkeypatch):
    ranked = []
    recommend = agent.recommend
    monkeypatch.setattr(agent, "recommend", lambda *a, **k: ranked.append(1) or recommend(*a, **k))
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_traits(pilot)
        feed = app.screen_stack[-2]
        before = [rec.item.ref for rec in feed.table.recommendations]
        await pilot.press("escape")  # nothing edited: no re-ranking
        await settle(pilot)
        assert app.screen is feed and len(ranked) == 1

        await pilot.press("t")
        await settle(pilot)
        screen = app.screen
        trait = next(r for r in screen.trait_list.readings if r.id == "dark")
        await select(pilot, screen, trait.id)
        await pilot.press("enter", *("0.02" if trait.value > 0.5 else "0.98"), "enter")
        await settle(pilot)
        await pilot.press("t")  # t goes back too
        await settle(pilot)
        assert app.screen is feed and len(ranked) == 2
        after = [rec.item.ref for rec in feed.table.recommendations]
        assert after != before
        assert after == [rec.item.ref for rec in recommend()]
        assert str(feed.query_one("#status", Static).content).startswith("re-ranked after your trait edits")


async def test_leaving_during_an_edit_waits_for_it(agent):
    trait = middling(agent)
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_traits(pilot)
        feed = app.screen_stack[-2]
        await select(pilot, screen, trait.id)
        await pilot.press("right", "escape")  # escape while the nudge may still be running
        await settle(pilot)
        assert app.screen is feed
        assert by_id(agent)[trait.id].value == pytest.approx(agent.traits.history()[0].detail["to"], abs=1e-4)
        assert by_id(agent)[trait.id].value > trait.value
        assert [rec.item.ref for rec in feed.table.recommendations] == [rec.item.ref for rec in agent.recommend()]


async def test_an_unexpected_core_error_is_a_notification(agent, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the store is read-only")

    trait = middling(agent)
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_traits(pilot)
        monkeypatch.setattr(agent.traits, "nudge", broken)
        await select(pilot, screen, trait.id)
        await pilot.press("right")
        await settle(pilot)
        assert app.is_running and app.screen is screen
        assert [n.message for n in app._notifications if n.severity == "error"] == ["the store is read-only"]
        assert by_id(agent)[trait.id].value == pytest.approx(trait.value, abs=1e-6)
        await pilot.press("p")  # the next edit still runs
        await settle(pilot)
        assert by_id(agent)[trait.id].pinned


# -- snapshots ---------------------------------------------------------------------------------


@pytest.fixture
def edited(agent) -> Agent:
    """Every kind of row: edited, pinned, hidden, and plain."""
    agent.traits.set("dark", 0.35)
    agent.traits.pin("niche")
    agent.traits.hide("factual")
    return agent


async def _open(pilot) -> None:
    await settle(pilot)
    await pilot.press("t")
    await settle(pilot)


def test_snapshot_traits(edited, snap_compare):
    assert snap_compare(OwnrecApp(edited), terminal_size=SNAPSHOT_SIZE, run_before=_open)


def test_snapshot_traits_large(edited, snap_compare):
    async def select_dark(pilot):
        await _open(pilot)
        await pilot.press(*["down"] * 5)
        await settle(pilot)

    assert snap_compare(OwnrecApp(edited), terminal_size=(120, 40), run_before=select_dark)


def test_snapshot_value_input(edited, snap_compare):
    async def type_value(pilot):
        await _open(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        pilot.app.screen.query_one(Input).cursor_blink = False  # a blinking cursor is not reproducible
        await pilot.press(*"0.7")
        await settle(pilot)

    assert snap_compare(OwnrecApp(edited), terminal_size=SNAPSHOT_SIZE, run_before=type_value)


def test_snapshot_value_refused(edited, snap_compare):
    async def type_bad_value(pilot):
        await _open(pilot)
        await pilot.press("down", "equals_sign")
        await settle(pilot)
        pilot.app.screen.query_one(Input).cursor_blink = False
        await pilot.press("2", "enter")
        await settle(pilot)

    assert snap_compare(OwnrecApp(edited), terminal_size=SNAPSHOT_SIZE, run_before=type_bad_value)
