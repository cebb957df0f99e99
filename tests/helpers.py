"""Small builders shared by tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.core import paths
from agent.core.config import Config
from agent.core.api import Agent
from agent.core.store import Store


def agent_from_template(template: Path, encoder, llm=None) -> Agent:
    """An Agent on a copy of a prepared database, in this test's own OWNREC_HOME (with `llm`, that model
    instead of one loaded from the settings)."""
    shutil.copy(template, paths.database_path())
    return Agent(Store.open(), Config(), encoder, llm=llm)


async def open_from_feed(pilot, key: str, screen_type):
    """Wait for the feed, press `key`, wait, and return the screen it opened (of `screen_type`)."""
    from agent.tui.screens import FeedScreen
    from agent.tui.screenshot import settle

    await settle(pilot)
    assert isinstance(pilot.app.screen, FeedScreen)
    await pilot.press(key)
    await settle(pilot)
    assert isinstance(pilot.app.screen, screen_type)
    return pilot.app.screen


def onboarded_agent(encoder, items) -> Agent:
    """An Agent in this test's OWNREC_HOME with `items` imported and embedded, past onboarding."""
    agent = Agent.open(encoder=encoder)
    agent.store.upsert_items(items)
    agent.ensure_embeddings()
    agent.store.set_state("onboarded", True)
    return agent
