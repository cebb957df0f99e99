"""An honest ledger: a device killed (SIGKILL) at any stage of a round never shows less privacy spent than the
coordinator aggregated from it, and the next contact settles its entry to the coordinator's signed record.

The device runs the product client in a process of its own (tests/sync_device.py) on a ledger in a file, against
`ownrec coordinator serve` over HTTPS on loopback; three more clients make a cohort of four (which survives one
dropout). What the coordinator aggregated is read from its own database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sync_harness import POLICY, make_catalog, make_clients, run_clients, start_server

from agent.core.store import Store
from agent.core.sync.client import CoordinatorLink, CoordinatorRefused, load_or_create_device_key
from agent.core.sync.consent import privacy_total
from agent.federation.accounting import privacy_spent
from agent.federation.errors import SyncError
from agent.federation.signing import device_id_of, public_bytes, verify_round_outcome

TESTS = Path(__file__).parent.parent
DEVICE = TESTS / "sync_device.py"


class Device:
    """The killable device: its database file and key file survive its processes."""

    def __init__(self, folder: Path, pin_path: Path, token: str) -> None:
        self.store_path, self.key_path, self.pin_path = folder / "ownrec.sqlite3", folder / "device.key", pin_path
        self.token = token  # the enrolment code its first check-in carries
        self.key = load_or_create_device_key(self.key_path)
        self.device_id = device_id_of(public_bytes(self.key))

    def start(self, mode: str, pause_after: str = "") -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
        return subprocess.Popen([sys.executable, str(DEVICE), str(self.pin_path), str(self.store_path),
                                 str(self.key_path), "99", self.token, mode, pause_after], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)

    def ledger(self, key: str) -> tuple[list[dict], object]:
        store = Store.open(self.store_path)
        try:
            return [dict(row) for row in store.db["sync_ledger"].rows], privacy_total(store, key)
        finally:
            store.close()


def aggregated(server, device_id: str) -> dict[str, int | None]:
    """The rounds whose computed sum holds this device's masked input, by the coordinator's own tables: the
    participants `_finish` summed (stage >= 3) of rounds released or withheld after summing."""
    with sqlite3.connect(server.db_url[len("sqlite:///"):]) as db:
        return {round_id: version for round_id, version in db.execute(
            "select r.round_id, r.released_version from rounds r join participants p on p.round_id = r.round_id "
            "where p.device_id = ? and p.stage >= 3 and (r.state = 'done' or (r.state = 'withheld' and "
            "r.summands is not null))", [device_id])}


def round_states(server) -> list[str]:
    with sqlite3.connect(server.db_url[len("sqlite:///"):]) as db:
        return [state for (state,) in db.execute("select state from rounds")]


# (the stage after which the device is killed, whether another client leaves after its masked input: with
# two gone before unmasking, too few answer it and the round aborts, its inputs deleted unsummed)
CASES = [("checked-in", False), ("advertise-keys", False), ("share-keys", False), ("masked-input", False),
         ("unmasking", False), ("masked-input", True)]


@pytest.mark.parametrize("stage, others_drop", CASES, ids=[f"{s}{'-aborts' if d else ''}" for s, d in CASES])
def test_a_device_killed_at_any_stage_never_undercounts_and_settles_to_the_truth(tmp_path, stage, others_drop):
    server = start_server(tmp_path, min_cohort=4, max_cohort=4, checkin_window=120.0, stage_timeout=4.0)
    try:
        key = server.pin.signing_public_key.hex()
        device = Device(tmp_path, server.state_dir / "coordinator-pin.json", server.token)
        process = device.start("round", stage)
        others = make_clients(3, make_catalog(), {0: "masked-input"} if others_drop else None)
        cohort = threading.Thread(target=run_clients, args=(server, others))
        cohort.start()
        lines = []
        for line in process.stdout:  # the device pauses right after the stage, and is killed there
            lines.append(line.strip())
            if line.startswith("paused"):
                break
        assert lines[-1] == f"paused {stage}", lines
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        cohort.join(120)
        assert not cohort.is_alive()

        summed = aggregated(server, device.device_id)
        rows, total = device.ledger(key)
        # Killed: the ledger never shows less spent than the coordinator aggregated from this device.
        counted = {row["round_id"] for row in rows if row["state"] not in ("aborted", "dropped")}
        assert set(summed) <= counted
        assert total.epsilon_client >= privacy_spent([1.0] * len(summed), 1e-5).epsilon - 1e-9
        uploaded = stage in ("masked-input", "unmasking")
        assert [row["state"] for row in rows] == (["pending"] if uploaded else [])
        if others_drop:
            assert round_states(server) == ["aborted"] and summed == {}
        else:
            assert round_states(server) == ["done"] and len(summed) == int(uploaded)

        # Restarted, its next contact settles the entry from the coordinator's signed record.
        settle = device.start("settle")
        output, _ = settle.communicate(timeout=60)
        assert settle.returncode == 0, output
        rows, total = device.ledger(key)
        if not uploaded:
            assert rows == [] and total.counted_rounds == 0
        else:
            (row,) = rows
            assert row["settled_at"] is not None
            if others_drop:
                assert row["state"] == "aborted" and total.counted_rounds == 0
                assert row["outcome"].startswith("never summed: the round was aborted (only 2 of 4 clients")
            else:
                (version,) = summed.values()
                assert (row["state"], row["release_version"]) == ("released", version) == ("released", 2)
                assert row["outcome"] == "summed into release 2"
                assert (total.counted_rounds, total.released_rounds) == (1, 1)
                assert total.epsilon_client == pytest.approx(privacy_spent([1.0], 1e-5).epsilon)
            assert f"settled {row['round_id']} {row['state']}" in output

        if stage == "share-keys":  # the round went on without it: the signed record says it was never summed
            (round_id,) = [r for (r,) in sqlite3.connect(server.db_url[len("sqlite:///"):]).execute(
                "select round_id from rounds")]
            link = CoordinatorLink(server.pin, device.key)
            try:
                record = verify_round_outcome(link.request("GET", f"/v1/rounds/{round_id}/outcome").json(),
                                              server.pin.signing_public_key, round_id, device.device_id)
            finally:
                link.close()
            assert (record["state"], record["summed"], record["completed_stages"]) == ("done", False, 2)
    finally:
        server.stop()


def test_the_outcome_is_signed_by_the_pinned_key_and_only_for_a_member(tmp_path):
    server = start_server(tmp_path, min_cohort=3, max_cohort=3, checkin_window=120.0, stage_timeout=10.0)
    try:
        clients = make_clients(3, make_catalog())
        run_clients(server, clients, POLICY)
        assert [c.error for c in clients] == [None] * 3
        round_id = clients[0].outcome.round_id
        member, stranger = CoordinatorLink(server.pin, clients[0].key), CoordinatorLink(server.pin, make_clients(
            1, make_catalog())[0].key)
        try:
            signed = member.request("GET", f"/v1/rounds/{round_id}/outcome").json()
            device_id = device_id_of(public_bytes(clients[0].key))
            record = verify_round_outcome(signed, server.pin.signing_public_key, round_id, device_id)
            assert (record["state"], record["summed"], record["released_version"]) == ("done", True, 2)
            # Another device's record, or one edited on the way, does not verify.
            with pytest.raises(SyncError, match="not about round"):
                verify_round_outcome(signed, server.pin.signing_public_key, round_id, "0" * 32)
            edited = {**signed, "record": signed["record"].replace('"summed":true', '"summed":false')}
            with pytest.raises(SyncError, match="not signed by the pinned"):
                verify_round_outcome(edited, server.pin.signing_public_key, round_id, device_id)
            # A device that was not in the round learns nothing of it (it must check in once to be known).
            with pytest.raises(CoordinatorRefused) as refused:
                stranger.request("GET", f"/v1/rounds/{round_id}/outcome")
            assert refused.value.code in ("unknown_device", "not_in_cohort")
        finally:
            member.close()
            stranger.close()
    finally:
        server.stop()


def test_the_pending_row_states_the_bytes_of_the_masked_input_it_precedes(tmp_path):
    """Written before the masked input is sent, the row already counts the bytes that sending puts on the wire."""
    server = start_server(tmp_path, min_cohort=4, max_cohort=4, checkin_window=120.0, stage_timeout=4.0)
    try:
        device = Device(tmp_path, server.state_dir / "coordinator-pin.json", server.token)
        process = device.start("round", "masked-input")
        cohort = threading.Thread(target=run_clients, args=(server, make_clients(3, make_catalog())))
        cohort.start()
        for line in process.stdout:
            if line.startswith("paused"):
                break
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        cohort.join(120)
        (row,) = device.ledger(server.pin.signing_public_key.hex())[0]
        parameters = row["parameters"]
        assert row["state"] == "pending" and row["bytes_sent"] > 4 * parameters  # the masked vector is in it
    finally:
        server.stop()


def test_migration_m008_makes_every_upload_whose_end_was_not_seen_pending(tmp_path, monkeypatch):
    import sqlite_utils

    from agent.core.store import migrations

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    with monkeypatch.context() as patched:  # the schema as it was before m008 (m007 included)
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:7])
        migrations.apply_migrations(old)
    states = ["released", "uploaded", "cancelled", "unknown", "aborted", "withheld"]
    for at, state in enumerate(states):
        old["sync_ledger"].insert({"at": float(at), "coordinator_key": "k", "round_id": f"{at:032x}", "state": state,
                                   "noise_multiplier": 1.0, "target_delta": 1e-5, "epsilon_round_honest": 0.5,
                                   "epsilon_round_worst": 9.5})
    old.close()
    store = Store.open(path)
    rows = list(store.db.query("select state, settled_at, epsilon_round_honest, epsilon_round_worst from sync_ledger "
                               "order by at"))
    store.close()
    # m007's figures (each upload's epsilon for its round alone) stay as they were.
    assert {(row["epsilon_round_honest"], row["epsilon_round_worst"]) for row in rows} == {(0.5, 9.5)}
    assert [row["state"] for row in rows] == ["released", "pending", "pending", "pending", "aborted", "withheld"]
    assert [row["settled_at"] for row in rows] == [0.0, None, None, None, 4.0, 5.0]


def test_a_database_that_ran_the_settlement_migration_under_its_first_number_opens(tmp_path, monkeypatch):
    """Before the merge with admission's m007 it was m007_sync_ledger_settlement: such a database has its columns
    and settled rows already; m008 leaves them as they are instead of failing on a duplicate column."""
    import sqlite_utils

    from agent.core.store import migrations

    path = tmp_path / "early.db"
    early = sqlite_utils.Database(path)
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:6])
        migrations.apply_migrations(early)
    migrations.m008_sync_ledger_settlement(early)
    early["_migrations"].insert({"name": "m007_sync_ledger_settlement", "applied_at": 1.0})
    early["sync_ledger"].insert({"at": 1.0, "coordinator_key": "k", "round_id": "0" * 32, "state": "pending",
                                 "noise_multiplier": 1.0, "target_delta": 1e-5})
    early.close()
    store = Store.open(path)
    try:
        (row,) = list(store.db.query("select state, settled_at, epsilon_round_honest from sync_ledger"))
        applied = {r["name"] for r in store.db["_migrations"].rows}
    finally:
        store.close()
    assert row == {"state": "pending", "settled_at": None, "epsilon_round_honest": None}
    assert {"m007_sync_round_epsilon", "m008_sync_ledger_settlement"} <= applied
