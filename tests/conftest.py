"""Shared fixtures. Every test gets its own empty data directory (OWNREC_HOME); the prepared
encoder is shared by the whole session, built once into a temp dir if the machine has none.

Tests live in folders that match the code: unit/ (the runtime core, the federation protocol, the server
and the CLI), tui/ (the Textual app, driven headless) and lab/ (evaluations, validations, benchmarks).
Everything under lab/ carries the `lab` marker, so `pytest -m "not lab"` is the fast loop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.core import model_prep, paths
from agent.core.encoder import Encoder


LAB = Path(__file__).resolve().parent / "lab"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LAB in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def prepared_models_dir(tmp_path_factory) -> Path:
    for candidate in (os.environ.get("OWNREC_MODELS"), str(paths.models_dir())):
        if candidate:
            if model_prep.is_current(Path(candidate) / "encoder"):
                return Path(candidate)  # else built below: tests never write into a user's models directory
    models_dir = tmp_path_factory.mktemp("models")
    model_prep.prepare_encoder(models_dir, log=lambda msg: None)
    return models_dir


@pytest.fixture(scope="session")
def encoder(prepared_models_dir) -> Encoder:
    return Encoder.load(prepared_models_dir)


@pytest.fixture(scope="session")
def llm_cache_dir(tmp_path_factory) -> Path:
    """Where tests' LLMs keep the default model's Q8_0 runtime copy and verification cache: the
    machine's models cache if `ownrec models prepare` made that copy there, else a temp dir (built
    once per session)."""
    from agent.core.llm import manifest
    from agent.core.llm.model import LLMUnavailable, default_model_path
    from agent.core.llm.requantize import find_prepared

    prepared = paths.models_dir() / "llm"
    try:
        _, problem = find_prepared(default_model_path().name, manifest.SHA256, prepared)
    except (LLMUnavailable, OSError):
        problem = "unknown"
    return prepared if problem is None else tmp_path_factory.mktemp("llm-cache")


@pytest.fixture(autouse=True)
def ownrec_home(tmp_path, monkeypatch, request) -> Path:
    """Point the user data directory at a fresh temp dir for every test."""
    home = tmp_path / "ownrec-home"
    monkeypatch.setenv("OWNREC_HOME", str(home))
    if "prepared_models_dir" in request.fixturenames or "encoder" in request.fixturenames:
        monkeypatch.setenv("OWNREC_MODELS", str(request.getfixturevalue("prepared_models_dir")))
    return home


@pytest.fixture(scope="session")
def demo_database(tmp_path_factory, encoder) -> Path:
    """The lab's demo template (`agent.lab.people.demo_template`), built once; tests copy it (see
    `helpers.agent_from_template`) instead of re-encoding 1,682 items each."""
    from agent.lab.people import demo_template

    return demo_template(tmp_path_factory.mktemp("demo-db"), encoder)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (Textual's Pilot) run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="module")
def llm(llm_cache_dir):
    """The default chat model, loaded once per test module (a module may override it, e.g. with one thread)."""
    from agent.core.llm import LLM

    return LLM.load(cache_dir=llm_cache_dir)


@pytest.fixture
def demo_agent(demo_database, encoder, llm, ownrec_home):
    """A copy of the demo template with the module's model, shared."""
    from helpers import agent_from_template

    ownrec_home.mkdir(parents=True, exist_ok=True)
    agent = agent_from_template(demo_database, encoder, llm)
    yield agent
    agent.close()
