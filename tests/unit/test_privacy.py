"""Privacy guarantees of the local product, proved by failing on any network attempt."""

import socket

import pytest

from helpers import agent_from_template


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    for name in ("connect", "connect_ex", "sendto", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_the_whole_local_loop_opens_no_socket(demo_database, encoder, tmp_path, no_network):
    agent = agent_from_template(demo_database, encoder)
    history = tmp_path / "history.csv"
    history.write_text("title,year,feedback\nAlien,1979,like\nBabe,1995,dislike\n")
    agent.import_file(history)
    agent.describe_taste("dark science fiction")
    slate = agent.recommend(10)
    agent.feedback(slate[0].item.id, "like")
    agent.feedback(slate[1].item.id, "rating", 2.0)
    agent.retrain()
    agent.recommend(10, query="space")
    agent.search("alien")
    agent.export()
    assert no_network == []


# -- the app, with federated sync off (the default) and on -------------------------------------------------
# The scheduler ticks in a thread of its own; the guards are process-wide, so they see that thread too.

IDLE_SECONDS = 1  # the scheduler may start a round after one idle second: with sync off it never does


def write_pin(folder, url: str):
    """A pin file like the coordinator writes (a real certificate), for a coordinator at `url`."""
    import json

    from agent.server.app import ensure_tls_certificate

    cert, _ = ensure_tls_certificate(folder, ["127.0.0.1"])
    path = folder / "coordinator-pin.json"
    path.write_text(json.dumps({"url": url, "signing_public_key": "11" * 32, "tls_certificate": cert.read_text()}))
    return path


@pytest.mark.anyio
async def test_the_app_with_sync_off_opens_no_socket(demo_database, encoder, tmp_path, no_network):
    from textual.widgets import Checkbox, Static

    from agent.core.sync import consent
    from agent.tui.app import OwnrecApp
    from agent.tui.screens import FeedScreen, OnboardingScreen
    from agent.tui.screens.privacy import PrivacyScreen
    from agent.tui.screenshot import settle

    agent = agent_from_template(demo_database, encoder)
    agent.config.set("sync.idle_seconds", IDLE_SECONDS)
    # A coordinator is pinned (joined earlier), so only the consent stands between the app and the network.
    agent.join_sync(write_pin(tmp_path, "https://127.0.0.1:9"))
    app = OwnrecApp(agent)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, OnboardingScreen)
        assert screen.query_one("#federation", Checkbox).value is False  # the default answer is no
        await pilot.press("space", "down", "space", "ctrl+s")  # two favourites, federation left unticked
        await settle(pilot)
        assert isinstance(app.screen, FeedScreen)
        assert consent.was_asked(agent.store) and not consent.is_enabled(agent.store)
        await pilot.press("l")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PrivacyScreen)
        assert "Federated sync: OFF" in str(app.screen.query_one("#sync-switch", Static).content)
        await pilot.press("escape")
        await settle(pilot)
        ticks = app.sync_scheduler.ticks
        await pilot.pause(IDLE_SECONDS + 2.5)  # idle: were sync on, a round would start now
        assert app.sync_scheduler.ticks >= ticks + 2
        assert app.sync_scheduler.phase == "sync is off: no connection is opened"
        assert agent.store.db["sync_ledger"].count == 0
    assert app.sync_scheduler.phase == "stopped"
    agent.close()
    assert no_network == []


def record_connections(monkeypatch) -> list:
    """From now on, every socket connect attempt is allowed through and recorded as (host, port)."""
    attempts = []
    connect = socket.socket.connect

    def record(self, address, *args, **kwargs):
        attempts.append(tuple(address[:2]) if isinstance(address, tuple) else address)
        return connect(self, address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", record)
    return attempts


@pytest.mark.anyio
async def test_with_sync_on_the_app_connects_to_the_coordinator_and_off_cancels(demo_database, encoder, tmp_path,
                                                                                 monkeypatch):
    import time
    from urllib.parse import urlparse

    from sync_harness import start_server
    from textual.widgets import Static

    from agent.core.sync import consent
    from agent.core.sync.client import POLL_SECONDS
    from agent.tui.app import OwnrecApp
    from agent.tui.screens.privacy import PrivacyScreen
    from agent.tui.screenshot import settle

    # A cohort of three is needed and only this app checks in: its round waits, in flight, until cancelled.
    server = start_server(tmp_path, min_cohort=3, max_cohort=3, checkin_window=300.0, stage_timeout=300.0)
    try:
        agent = agent_from_template(demo_database, encoder)
        agent.finish_onboarding(description="dark science fiction")
        agent.config.set("sync.idle_seconds", IDLE_SECONDS)
        agent.config.set("sync.min_cohort", 3)  # the coordinator's cohorts are of three
        agent.join_sync(server.state_dir / "coordinator-pin.json", server.token)
        agent.set_sync(True, "cli")
        coordinator = (urlparse(server.pin.url).hostname, urlparse(server.pin.url).port)
        attempts = record_connections(monkeypatch)  # from here: the harness's own start-up probe is not counted
        app = OwnrecApp(agent)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            deadline = time.monotonic() + 60
            while app.sync_scheduler.stage != "checked-in" and time.monotonic() < deadline:
                await pilot.pause(0.2)
            assert app.sync_scheduler.stage == "checked-in", app.sync_scheduler.phase
            assert coordinator in attempts and set(attempts) == {coordinator}  # the pinned coordinator, nothing else

            await pilot.press("p")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, PrivacyScreen)
            assert "Federated sync: ON" in str(screen.query_one("#sync-switch", Static).content)
            assert "round running (checked-in)" in str(screen.query_one("#scheduler", Static).content)
            await pilot.press("o")  # off: no question asked, the round in flight is cancelled
            turned_off = time.monotonic()
            await settle(pilot)
            report = app.sync_scheduler.wait_for_round(POLL_SECONDS + 5)
            assert report.state == "cancelled" and time.monotonic() - turned_off < POLL_SECONDS + 2
            assert not consent.is_enabled(agent.store)
            assert "sync off: the round in flight is cancelled" in [n.message for n in app._notifications]
            attempts.clear()
            await pilot.press("escape")
            await pilot.pause(IDLE_SECONDS + 2.5)  # idle again, sync off: no new connection
            assert attempts == []
        agent.close()
    finally:
        server.stop()
