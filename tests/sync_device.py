"""One device in a process of its own, for the tests that kill it (tests/unit/test_sync_ledger.py): the product
client (`RoundRunner`) on a ledger in a database file and a device key file, as the app keeps them.

    python tests/sync_device.py PIN STORE KEY SEED TOKEN round [PAUSE_AFTER]
        one round (TOKEN: the enrolment code its first check-in carries); each completed stage is printed ("stage NAME"); after PAUSE_AFTER the process prints
        "paused NAME" and waits to be killed
    python tests/sync_device.py PIN STORE KEY SEED TOKEN settle
        only what the next contact does first: settle the pending uploads from the coordinator's record
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sync_harness import POLICY, make_catalog, make_person  # noqa: E402

from agent.core.store import Store  # noqa: E402
from agent.core.sync.client import (CoordinatorLink, CoordinatorPin, RoundRunner,  # noqa: E402
                                    load_or_create_device_key)


def main(pin_path: str, store_path: str, key_path: str, seed: str, token: str, mode: str,
         pause_after: str = "") -> None:
    store = Store.open(Path(store_path))
    link = CoordinatorLink(CoordinatorPin.from_file(Path(pin_path)), load_or_create_device_key(Path(key_path)))

    def progress(stage: str) -> None:
        print(f"stage {stage}", flush=True)
        if stage == pause_after:
            print(f"paused {stage}", flush=True)
            time.sleep(3600)

    runner = RoundRunner(link, store, POLICY, progress=progress, enrolment_token=token)
    if mode == "settle":
        for round_id, state in runner.settle_pending():
            print(f"settled {round_id} {state}", flush=True)
    else:
        outcome = runner.run(make_person(make_catalog(), int(seed)))
        print(f"outcome {outcome.state}", flush=True)
    link.close()
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
