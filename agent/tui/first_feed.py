"""`python -m agent.tui.first_feed`: start the app headless on the data folder in OWNREC_HOME, wait for its
first feed, print the seconds since the interpreter reached this module, and quit. `ownrec bench` runs it
in a fresh process per sample, so the figure includes imports, the database, the encoder and the first slate.
"""

import time

started = time.perf_counter()

import asyncio  # after the clock starts: the imports are part of the launch

from agent.tui.app import OwnrecApp


async def main() -> None:
    app = OwnrecApp()
    async with app.run_test(size=(120, 40)):
        while not app.feed_ready:
            await asyncio.sleep(0.01)
        print(time.perf_counter() - started)


if __name__ == "__main__":
    asyncio.run(main())
