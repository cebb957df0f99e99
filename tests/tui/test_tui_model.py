"""The Model screen (m from the feed): the personal LoRA trained, cancelled, switched and reset
from the TUI, and reranking switched, driven headless with Textual's pilot against a real agent
(the real encoder, real SQLite, the real SmolLM2 loaded dequantized into torch for training)."""

from __future__ import annotations

import asyncio

import pytest
from helpers import agent_from_template, open_from_feed
from textual.widgets import DataTable, Static

from agent.core.api import LoraTrainingSettings
from agent.core.lora.base import load_base
from agent.tui.app import OwnrecApp
from agent.tui.screens import ConfirmScreen, FeedScreen, ModelScreen
from agent.tui.screenshot import settle

SIZE = (110, 34)
pytestmark = pytest.mark.anyio


@pytest.fixture
def agent(demo_database, encoder, ownrec_home):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    agent = agent_from_template(demo_database, encoder)
    agent.store.set_state("onboarded", True)
    for item_id, kind in [(50, "like"), (181, "like"), (172, "like"), (98, "dislike"), (1, "dislike")]:
        agent.store.add_interaction(item_id, kind)
    yield agent
    agent.close()


@pytest.fixture(scope="module")
def torch_base():
    return load_base(threads=1)  # kept in-process by load_base, so training below does not reload it


def _text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


async def _until(pilot, condition, seconds: float = 300) -> None:
    for _ in range(int(seconds / 0.1)):
        if condition():
            await settle(pilot)
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def _model_screen(pilot, training: LoraTrainingSettings | None = None) -> ModelScreen:
    await settle(pilot)
    assert isinstance(pilot.app.screen, FeedScreen)
    if training is None:
        screen = await open_from_feed(pilot, "m", ModelScreen)
    else:
        screen = ModelScreen(training)
        pilot.app.push_screen(screen)
    await _until(pilot, lambda: screen.state is not None, 30)
    return screen


async def test_the_model_screen_says_what_is_there_and_switches_reranking(agent):
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _model_screen(pilot)
        summary = _text(screen, "#model-summary")
        assert "SmolLM2-135M-Instruct" in summary and "not trained yet" in summary
        assert "LLM reranks the feed  off" in summary
        assert "t trains on your feedback" in _text(screen, "#training-note")
        await pilot.press("o")  # nothing to switch on: said, nothing changed
        await settle(pilot)
        assert not agent.lora_status()["enabled"]
        await pilot.press("k")
        await _until(pilot, lambda: screen.state["rerank"], 30)
        assert agent.config.get("llm.rerank") is True
        assert "LLM reranks the feed  on" in _text(screen, "#model-summary")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FeedScreen)
        assert "language model's setting changed" in str(app.screen.query_one("#status", Static).render())


async def test_train_switch_and_reset_the_personal_lora_from_the_screen(agent, torch_base):
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _model_screen(pilot, LoraTrainingSettings(steps=2, batch=2, threads=1))
        await pilot.press("t")
        assert app.lora_job is not None
        await _until(pilot, lambda: app.lora_job is None and screen.state and screen.state["versions"])
        table = screen.query_one("#lora-versions", DataTable)
        assert table.row_count == 1 and table.get_row_at(0)[0] == "1" and table.get_row_at(0)[-1] == "ok"
        assert "on, version 1" in _text(screen, "#model-summary")
        assert agent.lora_status()["enabled"]

        await pilot.press("o")
        await _until(pilot, lambda: "personal LoRA  off" in _text(screen, "#model-summary"), 30)
        assert not agent.lora_status()["enabled"]

        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await _until(pilot, lambda: not screen.state["versions"], 30)
        assert agent.lora_status()["versions"] == [] and "not trained yet" in _text(screen, "#model-summary")


async def test_cancelled_training_keeps_its_place_and_says_how_to_resume(agent, torch_base):
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _model_screen(pilot, LoraTrainingSettings(steps=400, batch=2, threads=1, checkpoint_every=1))
        await pilot.press("t")
        await _until(pilot, lambda: app.lora_job is not None and app.lora_job.status()["step"] >= 1)
        await pilot.press("x")
        await _until(pilot, lambda: app.lora_job is None and screen.state and screen.state["checkpoint"])
        step = screen.state["checkpoint"]["step"]
        assert 1 <= step < 400 and agent.lora_status()["versions"] == []
        note = _text(screen, "#training-note")
        assert f"stopped at step {step} of 400" in note and "t resumes" in note


def test_snapshot_model_screen(agent, snap_compare):
    async def open_model(pilot):
        screen = await _model_screen(pilot)
        await pilot.press("k")
        await _until(pilot, lambda: screen.state["rerank"], 30)

    assert snap_compare(OwnrecApp(agent), terminal_size=SIZE, run_before=open_model)
