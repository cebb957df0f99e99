"""Local SQLite storage (see `store.py`), the conversations kept in it (`conversations.py`) and its numbered
migrations (see `migrations.py`)."""

from agent.core.store.store import (
    FEEDBACK_KINDS,
    Interaction,
    Item,
    NewItem,
    PublicSignals,
    Store,
    StoreError,
    UnknownItem,
    UpsertResult,
    text_hash,
)
from agent.core.store.conversations import Conversation, ConversationNotFound, Conversations, Message

__all__ = [
    "FEEDBACK_KINDS", "Conversation", "ConversationNotFound", "Conversations", "Interaction", "Item", "Message",
    "NewItem", "PublicSignals", "Store", "StoreError", "UnknownItem", "UpsertResult", "text_hash",
]
