"""The portrait on the Traits screen: written by the local LLM from the numbers, never the reverse."""

import numpy as np
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.core.llm.grounding import ground
from agent.core.llm.portrait import FACTS_SHOWN, MIN_LEAN, portrait_facts
from agent.core.traits import clearest
from agent.tui.app import OwnrecApp
from agent.tui.screens.traits import Portrait, TraitsScreen
from agent.tui.screenshot import settle
from helpers import agent_from_template


def facts_of(agent) -> list[str]:
    """The facts the facade gives the portrait: the clearest readings, in words."""
    return portrait_facts(clearest(agent.traits.readings(), FACTS_SHOWN, MIN_LEAN))


@pytest.fixture
def dark_fan(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    items = agent.store.items()
    dark = [i.id for i in items if {"Horror", "Thriller"} & set(i.metadata["genres"])]
    likes = np.random.default_rng(3).choice(dark, 25, replace=False)
    agent.store.add_interactions([(int(i), "like", None, float(n), "test") for n, i in enumerate(likes)])
    agent.retrain()
    agent.store.set_state("onboarded", True)
    return agent


def test_facts_come_from_the_readings_and_skip_hidden_traits(dark_fan):
    facts = facts_of(dark_fan)
    assert facts and any("dark, grim and bleak" in fact for fact in facts)
    dark_fan.traits.hide("dark")
    assert not any("dark, grim and bleak" in fact for fact in facts_of(dark_fan))


def test_a_fresh_person_gets_no_portrait(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    assert facts_of(agent) == [] and agent.write_portrait().text == ""


def test_the_portrait_names_no_titles_is_cached_and_changes_no_number(dark_fan):
    values = {r.id: r.value for r in dark_fan.traits.readings()}
    portrait = dark_fan.write_portrait()
    assert portrait.text and not portrait.cached and portrait.facts == facts_of(dark_fan)
    assert ground(portrait.text, [], dark_fan.store.items()).removed == []
    assert {r.id: r.value for r in dark_fan.traits.readings()} == values
    again = dark_fan.cached_portrait()
    assert again is not None and again.text == portrait.text and again.cached
    # Other facts (a trait it states is hidden now): it must be written again. (An edit need not change the facts:
    # a bounded edit may move a strong reading too little to change how it is said.)
    stated = next(r for r in dark_fan.traits.readings() if any(r.leaning_pole in fact for fact in portrait.facts))
    dark_fan.traits.hide(stated.id)
    assert facts_of(dark_fan) != portrait.facts and dark_fan.cached_portrait() is None


def test_cli_portrait(dark_fan):
    dark_fan.close()
    result = CliRunner().invoke(cli, ["traits", "portrait"], catch_exceptions=False)
    assert result.exit_code == 0 and result.stdout.strip()


@pytest.mark.anyio
async def test_w_writes_the_portrait_on_the_traits_screen(dark_fan):
    app = OwnrecApp(dark_fan)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, TraitsScreen)
        portrait = app.screen.query_one(Portrait)
        assert not portrait.display
        await pilot.press("w")
        await settle(pilot)
        assert portrait.display and str(portrait.content) == dark_fan.cached_portrait().text

