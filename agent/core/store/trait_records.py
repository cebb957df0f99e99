"""What the database keeps about the person's traits (migration m002): each trait's flags (pinned, hidden,
where its evidence starts), its value over time (snapshots), and the log of edits with what each changed,
so undo is exact. Rows in, rows out: what the values mean is `agent.core.traits`'. Every method holds the
store's lock (one connection is shared by the app's threads)."""

from __future__ import annotations

from typing import Any

from agent.core.store.store import Store

NO_STATE = {"pinned": False, "pinned_value": None, "hidden": False, "evidence_since": None}


class TraitRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- flags ---------------------------------------------------------------------------------

    def state(self, trait_id: str) -> dict[str, Any]:
        """pinned, pinned_value, hidden and evidence_since of one trait (defaults when never set)."""
        with self.store.lock:
            row = self.store.db.execute(
                "select pinned, pinned_value, hidden, evidence_since from trait_state where trait_id = ?", [trait_id]
            ).fetchone()
        if row is None:
            return dict(NO_STATE)
        return {"pinned": bool(row[0]), "pinned_value": row[1], "hidden": bool(row[2]), "evidence_since": row[3]}

    def set_state(self, trait_id: str, state: dict[str, Any]) -> None:
        with self.store.lock:
            self.store.db["trait_state"].upsert(
                {"trait_id": trait_id, "pinned": int(state["pinned"]), "pinned_value": state["pinned_value"],
                 "hidden": int(state["hidden"]), "evidence_since": state["evidence_since"]}, pk="trait_id")

    def flagged(self, flag: str) -> set[str]:
        """The traits with `flag` ("pinned" or "hidden") set."""
        if flag not in ("pinned", "hidden"):
            raise ValueError(f"no trait flag {flag!r}")
        with self.store.lock:
            return {row[0] for row in self.store.db.execute(f"select trait_id from trait_state where {flag} = 1")}

    # -- snapshots -----------------------------------------------------------------------------

    def trend(self, trait_id: str, points: int) -> list[tuple[float, float]]:
        """The latest `points` (time, value) snapshots of a trait, oldest first."""
        with self.store.lock:
            return [(row[0], row[1]) for row in self.store.db.execute(
                "select at, value from (select at, value, id from trait_snapshots where trait_id = ?"
                " order by id desc limit ?) order by id", [trait_id, points])]

    def add_snapshots(self, rows: list[dict[str, Any]]) -> None:
        with self.store.transaction():
            self.store.db["trait_snapshots"].insert_all(rows)

    def snapshots(self, trait_id: str) -> list[dict[str, Any]]:
        with self.store.lock:
            return list(self.store.db["trait_snapshots"].rows_where("trait_id = ?", [trait_id]))

    def delete_snapshots(self, trait_id: str) -> None:
        with self.store.lock:
            self.store.db.execute("delete from trait_snapshots where trait_id = ?", [trait_id])

    def restore_snapshot(self, snapshot: dict[str, Any]) -> None:
        with self.store.lock:
            self.store.db["trait_snapshots"].insert(snapshot, replace=True)

    # -- the edit log --------------------------------------------------------------------------

    def add_edit(self, row: dict[str, Any]) -> int:
        with self.store.lock:
            return self.store.db["trait_edits"].insert(row).last_pk

    def open_edits(self, trait_id: str) -> list[tuple[str, str]]:
        """(action, detail JSON) of a trait's edits that are not undone, oldest first."""
        with self.store.lock:
            return list(self.store.db.execute(
                "select action, detail from trait_edits where trait_id = ? and undone = 0 order by id", [trait_id]))

    def latest_open_edit(self) -> dict[str, Any] | None:
        """The newest edit that is not undone, as a row, or None."""
        with self.store.lock:
            rows = list(self.store.db["trait_edits"].rows_where("undone = 0", order_by="id desc", limit=1))
        return rows[0] if rows else None

    def mark_undone(self, edit_id: int) -> None:
        with self.store.lock:
            self.store.db.execute("update trait_edits set undone = 1 where id = ?", [edit_id])

    def edits(self, trait_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Edit rows, newest first; of one trait when `trait_id` is given."""
        where, args = ("trait_id = ?", [trait_id]) if trait_id else (None, [])
        with self.store.lock:
            return list(self.store.db["trait_edits"].rows_where(where, args, order_by="id desc", limit=limit))
