"""Save an SVG of the feed, as the app shows it on the current data directory (for the README)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.pilot import Pilot

from agent.tui.app import OwnrecApp
from agent.tui.screens import FeedScreen, StartScreen


async def settle(pilot: Pilot, rounds: int = 100) -> None:
    """Wait until no worker is running, including workers started by ones that finished."""
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if all(worker.is_finished for worker in pilot.app.workers):
            return


def save_screenshot(path: str | Path, size: tuple[int, int] = (100, 30)) -> Path:
    path = Path(path)

    async def shoot() -> None:
        app = OwnrecApp()
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            if not isinstance(app.screen, (FeedScreen, StartScreen)):  # not onboarded yet: show the feed anyway
                app.show_feed()
                await settle(pilot)
            app.save_screenshot(filename=path.name, path=str(path.parent))
        if app.agent is not None:
            app.agent.close()

    asyncio.run(shoot())
    return path
