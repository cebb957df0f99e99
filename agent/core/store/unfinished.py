"""The imports whose rows are in the database but whose items are not all encoded, or whose feedback the model
has not learned from yet: a state row written in the same transaction as an import's rows (`note`), struck off
once the work is done (`finished`), so that an import killed in between is finished by the next run
(`Agent.finish_interrupted_imports`)."""

from __future__ import annotations

import time
from typing import Any

from agent.core.store.store import Store

STATE_KEY = "unfinished_imports"


class UnfinishedImports:
    def __init__(self, store: Store) -> None:
        self.store = store

    def note(self, path: str, feedback: int) -> None:
        """Note that the import of `path` (which added `feedback` rows) is still to be encoded and learned from;
        called inside the transaction that writes its rows."""
        with self.store.lock:
            earlier = self.entries()
            previous = sum(entry["feedback"] for entry in earlier if entry["path"] == path)
            self.store.set_state(STATE_KEY, [entry for entry in earlier if entry["path"] != path]
                                 + [{"path": path, "at": time.time(), "feedback": previous + feedback}])

    def entries(self) -> list[dict[str, Any]]:
        """The imports noted and not yet finished: path, at (when their rows were written) and feedback (how
        many rows they added)."""
        return list(self.store.get_state(STATE_KEY, []))

    def finished(self, done: list[dict[str, Any]]) -> None:
        """Strike `done` (entries of `entries()`) off; an import noted since stays."""
        with self.store.transaction():
            left = [entry for entry in self.entries() if entry not in done]
            if left:
                self.store.set_state(STATE_KEY, left)
            else:
                self.store.db.execute("delete from state where key = ?", [STATE_KEY])
