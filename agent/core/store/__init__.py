"""Local SQLite storage (see `store.py`) and its numbered migrations (see `migrations.py`)."""

from agent.core.store.store import (
    FEEDBACK_KINDS,
    Interaction,
    Item,
    NewItem,
    Store,
    StoreError,
    UnknownItem,
    UpsertResult,
    text_hash,
)

__all__ = [
    "FEEDBACK_KINDS", "Interaction", "Item", "NewItem", "Store", "StoreError", "UnknownItem",
    "UpsertResult", "text_hash",
]
