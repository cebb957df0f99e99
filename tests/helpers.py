"""Small builders shared by tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from agent.core import paths
from agent.core.config import Config
from agent.core.api import Agent
from agent.core.store import NewItem, Store


ROOT = Path(__file__).resolve().parent.parent


def start_ownrec(*args: str) -> subprocess.Popen:
    """`ownrec ARGS` in a process of its own, on this test's OWNREC_HOME (and OWNREC_MODELS), as a person runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "agent.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=paths.data_dir())


def run_ownrec(*args: str) -> subprocess.CompletedProcess:
    """`ownrec ARGS` run to its end in a process of its own: exit code, standard output and error."""
    process = start_ownrec(*args)
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def agent_from_template(template: Path, encoder, llm=None, seed: int | None = None) -> Agent:
    """An Agent on a copy of a prepared database, in this test's own OWNREC_HOME (with `llm`, that model
    instead of one loaded from the settings; with `seed`, its online updates draw the same negatives each run)."""
    shutil.copy(template, paths.database_path())
    return Agent(Store.open(), Config(), encoder, llm=llm, seed=seed)


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


# Five clear genres, 24 films each: 120 items, enough for the feed to reserve exploration slots.
GENRES = {
    "Science Fiction": (["Nebula", "Orbit", "Quasar", "Starship", "Android", "Galaxy"],
                        ["Protocol", "Horizon", "Drift", "Signal"],
                        "Astronauts on a starship far from Earth face an alien intelligence in deep space."),
    "Cooking": (["Saffron", "Butter", "Sourdough", "Pepper", "Honey", "Olive"],
                ["Kitchen", "Table", "Harvest", "Feast"],
                "A chef cooks family recipes in a small restaurant kitchen: bread, sauces and desserts."),
    "Mystery": (["Midnight", "Silent", "Crimson", "Hollow", "Foggy", "Broken"],
                ["Witness", "Alibi", "Ledger", "Verdict"],
                "A detective investigates a murder in a foggy town where every suspect hides a secret."),
    "Romance": (["Paris", "Summer", "Autumn", "Lakeside", "Sunday", "Moonlit"],
                ["Letters", "Waltz", "Promise", "Kiss"],
                "Two strangers fall in love over one summer, and a wedding tests their promise."),
    "Western": (["Dust", "Iron", "Canyon", "Lone", "Silver", "Rattlesnake"],
                ["Creek", "Saddle", "Frontier", "Gulch"],
                "A lone cowboy rides across the desert frontier to face outlaws in a dusty saloon town."),
}


def catalog() -> list[NewItem]:
    items = []
    for g, (genre, (firsts, seconds, plot)) in enumerate(GENRES.items()):
        for i, (first, second) in enumerate((a, b) for a in firsts for b in seconds):
            title, year = f"{first} {second}", 1960 + (g * 11 + i * 7) % 60
            items.append(NewItem("test", f"{genre[:3].lower()}-{i}", title,
                                 f"{title} ({year}). {genre}. {plot} The {first.lower()} {second.lower()}.",
                                 {"year": year, "genres": [genre]}))
    return items
