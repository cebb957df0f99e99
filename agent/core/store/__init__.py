"""Local SQLite storage (see `store.py`; what it holds as plain data: `records.py`), the conversations kept in it (`conversations.py`) and its numbered
migrations (see `migrations.py`)."""

from agent.core.store.records import (
    FEEDBACK_KINDS,
    Interaction,
    Item,
    NewItem,
    StoreError,
    UnknownItem,
    UpsertResult,
    text_hash,
)
from agent.core.store.damage import DatabaseDamaged
from agent.core.store.signals import PublicSignals
from agent.core.store.store import UNSPENT_LEDGER_STATES, Store
from agent.core.store.conversations import Conversation, ConversationNotFound, Conversations, Message
from agent.core.store.unfinished import UnfinishedImports

__all__ = [
    "FEEDBACK_KINDS", "Conversation", "DatabaseDamaged", "ConversationNotFound", "Conversations", "Interaction", "Item", "Message",
    "NewItem", "PublicSignals", "Store", "StoreError", "UNSPENT_LEDGER_STATES", "UnfinishedImports", "UnknownItem",
    "UpsertResult",
    "text_hash",
]
