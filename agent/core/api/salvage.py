"""A damaged database, as the CLI sees it: how to tell (`DatabaseDamaged`, `damage_of`, `is_damage`), `ownrec
recover` (`recover`), and what `ownrec export` can still give: a recovered copy in a scratch folder (so the
damaged file is never written), and what was lost."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.core.paths import Home
from agent.core.store import Store
from agent.core.store.damage import DatabaseDamaged, damage_of, is_damage
from agent.core.store.recover import Recovery, recover

__all__ = ["DatabaseDamaged", "Recovery", "damage_of", "damage_summary", "is_damage", "readable_copy", "recover"]


@contextmanager
def readable_copy(home: Home) -> Iterator[tuple[Store, Recovery]]:
    """The rows still readable in `home`'s damaged database, in a store that is deleted afterwards."""
    with tempfile.TemporaryDirectory(dir=home.root, prefix=".ownrec-export-") as scratch:
        recovery = recover(home.database, Path(scratch) / "readable.db")
        store = Store.open(recovery.destination)
        try:
            yield store, recovery
        finally:
            store.close()


def damage_summary(home: Home, recovery: Recovery) -> dict[str, Any]:
    """What an export from a damaged database says about itself."""
    return {"database": str(home.database), "sqlite_check": recovery.problems,
            "tables": {t.table: {"recovered": t.recovered, "lost": t.lost, "notes": t.notes} for t in recovery.tables}}
