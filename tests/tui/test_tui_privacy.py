"""The Privacy screen, driven headless with Textual's pilot against a real agent (real encoder, real
SQLite): the consent switch, the pinned coordinator, the ledger and the privacy spent. The ledger rows
are written straight to the store, as the client writes them, so the figures are fixed."""

from __future__ import annotations

import json
import time

import pytest
from helpers import catalog, open_from_feed
from textual.widgets import DataTable, Static

from agent.core.config import Config
from agent.core.api import Agent
from agent.core.store import Store
from agent.core.sync import consent
from agent.federation.accounting import privacy_spent
from agent.server.app import ensure_tls_certificate
from agent.tui.app import OwnrecApp
from agent.tui.screens import ConfirmScreen, FeedScreen
from agent.tui.screens.privacy import PrivacyScreen
from agent.tui.screenshot import settle

SIZE = (120, 40)
SNAPSHOT_SIZE = (100, 30)
pytestmark = pytest.mark.anyio

SIGNING_KEY = bytes(range(32))  # a fixed "coordinator key": the pin is only read here, never used
AT = 1_767_225_600.0  # 2026-01-01 00:00 UTC
LEDGER = [  # (minutes after AT, round_id, state, bytes, pre-clip norm, noise multiplier, eps server, eps client, version)
    (0, "a1b2c3d4" + "0" * 24, "released", 41_873, 0.8123, 1.0, 4.91, 4.91, 2),
    (70, "e5f60718" + "0" * 24, "aborted", 40_512, 1.7342, 1.0, 6.96, 6.96, None),
    (140, "9abcdef0" + "0" * 24, "released", 41_901, 0.5566, 1.2, 6.10, 6.27, 3),
]


@pytest.fixture
def agent(encoder, tmp_path, monkeypatch) -> Agent:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    agent = Agent(Store.open(), Config(), encoder, seed=0)
    agent.store.upsert_items(catalog())
    agent.ensure_embeddings()
    agent.store.set_state("onboarded", True)
    agent.store.add_interaction(agent.store.resolve_item("test:sci-0").id, "like", at=1.0)
    yield agent
    agent.close()
    monkeypatch.delenv("TZ")
    time.tzset()


def pin(agent, tmp_path) -> None:
    cert, _ = ensure_tls_certificate(tmp_path / "coordinator", ["coordinator.example"])
    path = tmp_path / "coordinator-pin.json"
    path.write_text(json.dumps({"url": "https://coordinator.example:8443", "signing_public_key": SIGNING_KEY.hex(),
                                "tls_certificate": cert.read_text()}))
    agent.join_sync(path)


@pytest.fixture
def took_part(agent, tmp_path) -> Agent:
    """Sync was on for three rounds (two released), then turned off."""
    pin(agent, tmp_path)
    agent.set_sync(True, "tui")
    for minutes, round_id, state, sent, norm, z, eps_server, eps_client, version in LEDGER:
        agent.store.db["sync_ledger"].insert({
            "at": AT + 60 * minutes, "coordinator_key": SIGNING_KEY.hex(), "round_id": round_id, "state": state,
            "bytes_sent": sent, "parameters": 7826, "pre_clip_norm": norm, "clip_norm": 1.0, "noise_multiplier": z,
            "noise_std": z / 14 ** 0.5, "cohort_size": 20, "target_delta": 1e-5, "epsilon_server": eps_server,
            "delta_server": 1e-5, "epsilon_client": eps_client, "release_version": version})
    # The newest upload has this round's own figures (older rows predate them): with an honest cohort, and
    # at worst (this device's noise alone).
    agent.store.db["sync_ledger"].update(agent.store.db.execute(
        "select id from sync_ledger where round_id like '9abcdef0%'").fetchone()[0],
        {"epsilon_round_honest": 3.49, "epsilon_round_worst": 9.95})
    agent.set_sync(False, "tui")
    return agent


def text(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).content)


async def open_privacy(pilot) -> PrivacyScreen:
    screen = await open_from_feed(pilot, "p", PrivacyScreen)
    await settle(pilot)
    return screen


async def test_p_shows_the_coordinator_the_ledger_and_the_privacy_spent(took_part):
    app = OwnrecApp(took_part)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_privacy(pilot)
        assert "Federated sync: OFF" in text(screen, "#sync-switch")
        assert "docs/threat-model.md" in text(screen, "#what-leaves")
        assert "never your ratings, items, traits or personal adapter" in text(screen, "#what-leaves")
        assert text(screen, "#coordinator") == (
            f"Coordinator: coordinator.example:8443 · release-signing key {consent.fingerprint(SIGNING_KEY)}")
        assert text(screen, "#scheduler") == "Sync is off: ownrec opens no network connection."
        table = screen.query_one("#ledger", DataTable)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
        assert rows == [  # newest first
            ["2026-01-01 02:20", "9abcdef0", "released", "41,901", "0.557", "1", "0.3207 (1.2)", "6.10", "6.27"],
            ["2026-01-01 01:10", "e5f60718", "aborted", "40,512", "1.734", "1", "0.2673 (1)", "6.96", "6.96"],
            ["2026-01-01 00:00", "a1b2c3d4", "released", "41,873", "0.812", "1", "0.2673 (1)", "4.91", "4.91"],
        ]
        spent = privacy_spent([1.0, 1.2], 1e-5).epsilon  # the released rounds only
        assert text(screen, "#total") == (f"Privacy spent with this coordinator: ε = {spent:.2f} at δ = 1e-05 over 2 "
                                          "released rounds (computed here; the coordinator reports ε = 6.10). The "
                                          "newest upload's round alone: ε = 3.49 with an honest cohort, at most 9.95 "
                                          "even if every other member were fake.")
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, FeedScreen)


async def test_turning_sync_on_asks_first_and_off_does_not(took_part):
    app = OwnrecApp(took_part)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_privacy(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "never your ratings" in str(app.screen.query_one("#question", Static).content)
        await pilot.press("n")  # changed their mind: nothing changes
        await settle(pilot)
        assert app.screen is screen and not consent.is_enabled(took_part.store)
        assert "OFF" in text(screen, "#sync-switch")

        await pilot.press("o", "y")
        await settle(pilot)
        assert app.screen is screen and consent.is_enabled(took_part.store)
        assert "Federated sync: ON" in text(screen, "#sync-switch")
        assert text(screen, "#scheduler").startswith("Rounds: ")

        await pilot.press("o")  # off at once, no question
        await settle(pilot)
        assert app.screen is screen and not consent.is_enabled(took_part.store)
        assert "OFF" in text(screen, "#sync-switch")
        origins = [json.loads(e["payload"]) for e in reversed(took_part.store.events()) if e["kind"] == "sync_consent"]
        assert origins[-2:] == [{"on": True, "origin": "tui"}, {"on": False, "origin": "tui"}]
        assert [n.message for n in app._notifications][-2:] == ["sync on", "sync off: no connection is opened"]


async def test_without_a_coordinator_the_screen_says_how_to_join(agent):
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_privacy(pilot)
        assert "none pinned" in text(screen, "#coordinator") and "ownrec sync join PATH" in text(screen, "#coordinator")
        assert screen.query_one("#ledger", DataTable).row_count == 0
        assert text(screen, "#total") == "No uploads yet: nothing derived from your data has left this device."
        await pilot.press("o", "y")
        await settle(pilot)
        assert consent.is_enabled(agent.store)
        assert "no coordinator is pinned" in [n.message for n in app._notifications][-1]


async def test_the_screen_says_why_no_round_can_form(agent, tmp_path):
    from agent.core.sync.client import BLOCKED_STATE

    pin(agent, tmp_path)
    agent.set_sync(True, "tui")
    # As the client records it when the coordinator announces its budget is spent: asking again cannot help,
    # so the scheduler starts nothing (and opens no connection) until the person joins again.
    message = "the coordinator's privacy budget is spent (epsilon 9.97 of 10): it starts no more rounds"
    agent.store.set_state(BLOCKED_STATE, {"coordinator_key": SIGNING_KEY.hex(), "code": "budget_exhausted",
                                          "message": message, "retry": False, "at": AT})
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_privacy(pilot)
        assert text(screen, "#scheduler").endswith(f"\nNo rounds until you join again: {message}")
        assert app.sync_scheduler.tick() == f"no rounds: {message}" and not app.sync_scheduler.round_running


async def test_onboarding_can_join_the_federation(encoder):
    from textual.widgets import Checkbox

    from agent.tui.screens import OnboardingScreen

    agent = Agent(Store.open(), Config(), encoder, seed=0)
    agent.store.upsert_items(catalog())
    agent.ensure_embeddings()
    app = OwnrecApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OnboardingScreen)
        box = screen.query_one("#federation", Checkbox)
        assert box.value is False
        box.focus()
        await pilot.press("space", "ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, FeedScreen)
        assert consent.is_enabled(agent.store) and consent.was_ever_enabled(agent.store)
        events = [json.loads(e["payload"]) for e in agent.store.events() if e["kind"] == "sync_consent"]
        assert events == [{"on": True, "origin": "onboarding"}]
        assert "nothing is sent until a coordinator is pinned" in [n.message for n in app._notifications][-1]
    agent.close()


def test_snapshot_privacy(took_part, snap_compare):
    async def open_it(pilot):
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)

    assert snap_compare(OwnrecApp(took_part), terminal_size=SNAPSHOT_SIZE, run_before=open_it)
