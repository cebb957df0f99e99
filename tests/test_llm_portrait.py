"""The portrait on the Traits screen: written by the local LLM from the numbers, never the reverse."""

import numpy as np
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.core.llm.grounding import ground
from agent.core.llm.portrait import cached_portrait, portrait_facts, write_portrait
from agent.tui.app import OwnrecApp
from agent.tui.screens.traits import Portrait, TraitsScreen
from agent.tui.screenshot import settle
from helpers import agent_from_template


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
    facts = portrait_facts(dark_fan)
    assert facts and any("dark, grim and bleak" in fact for fact in facts)
    dark_fan.traits.hide("dark")
    assert not any("dark, grim and bleak" in fact for fact in portrait_facts(dark_fan))


def test_a_fresh_person_gets_no_portrait(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    assert portrait_facts(agent) == [] and write_portrait(agent).text == ""


def test_the_portrait_names_no_titles_is_cached_and_changes_no_number(dark_fan):
    values = {r.id: r.value for r in dark_fan.traits.readings()}
    portrait = write_portrait(dark_fan)
    assert portrait.text and not portrait.cached
    assert ground(portrait.text, [], dark_fan.store.items()).removed == []
    assert {r.id: r.value for r in dark_fan.traits.readings()} == values
    again = cached_portrait(dark_fan)
    assert again is not None and again.text == portrait.text and again.cached
    dark_fan.traits.set("fast_paced", 0.1)
    assert cached_portrait(dark_fan) is None  # other facts: it must be written again


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
        assert portrait.display and str(portrait.content) == cached_portrait(dark_fan).text

