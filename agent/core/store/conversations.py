"""Conversations with ownrec, kept in the local database (migration m003): listed, shown,
deleted, exported. A message keeps what the person saw: the (checked) reply text and the items
shown beside it, with details of how it was made in `meta`. Every method holds the store's lock
(one connection is shared by the app's threads)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from agent.core.store.records import StoreError
from agent.core.store.store import Store

TITLE_LENGTH = 60


class ConversationNotFound(StoreError):
    pass


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str  # "user" | "assistant"
    text: str
    items: list[dict[str, Any]]
    created: float
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "text": self.text, "items": self.items,
                "created": self.created, "meta": self.meta}


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created: float
    updated: float
    message_count: int
    messages: list[Message] = field(default_factory=list)

    def as_dict(self, with_messages: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "title": self.title, "created": self.created,
                                "updated": self.updated, "messages": self.message_count}
        if with_messages:
            data["messages"] = [m.as_dict() for m in self.messages]
        return data


def _message(row: tuple) -> Message:
    return Message(row[0], row[1], row[2], row[3], json.loads(row[4] or "[]"), row[5], json.loads(row[6] or "{}"))


class Conversations:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def db(self):
        return self.store.db

    def start(self, first_request: str) -> int:
        title = " ".join(first_request.split())
        if len(title) > TITLE_LENGTH:
            title = title[: TITLE_LENGTH - 1].rstrip() + "…"
        now = time.time()
        with self.store.transaction():
            cursor = self.db.execute("insert into conversations (title, created, updated) values (?, ?, ?)",
                                     [title, now, now])
        return int(cursor.lastrowid)

    def add(self, conversation_id: int, role: str, text: str, items: list[dict[str, Any]] | None = None,
            meta: dict[str, Any] | None = None) -> Message:
        now = time.time()
        with self.store.transaction():
            self._require(conversation_id)
            cursor = self.db.execute(
                "insert into messages (conversation_id, role, text, items, created, meta) values (?, ?, ?, ?, ?, ?)",
                [conversation_id, role, text, json.dumps(items or [], ensure_ascii=False), now,
                 json.dumps(meta or {}, ensure_ascii=False)])
            self.db.execute("update conversations set updated = ? where id = ?", [now, conversation_id])
        return Message(int(cursor.lastrowid), conversation_id, role, text, items or [], now, meta or {})

    def record_exchange(self, conversation_id: int | None, request: str, request_meta: dict[str, Any], reply: str,
                        items: list[dict[str, Any]], reply_meta: dict[str, Any]) -> Message:
        """A request and its reply in one transaction, continuing `conversation_id` or starting a
        conversation titled by the request; the reply's message."""
        with self.store.transaction():
            conversation_id = conversation_id or self.start(request)
            self.add(conversation_id, "user", request, meta=request_meta)
            return self.add(conversation_id, "assistant", reply, items, meta=reply_meta)

    def _require(self, conversation_id: int) -> tuple:
        with self.store.lock:
            row = self.db.execute("select id, title, created, updated from conversations where id = ?",
                                  [conversation_id]).fetchone()
        if row is None:
            raise ConversationNotFound(f"no conversation {conversation_id}: `ownrec chats list` shows them")
        return row

    def list(self) -> list[Conversation]:
        """Every conversation, most recently updated first (without their messages)."""
        with self.store.lock:
            rows = self.db.execute(
                "select conversations.id, title, conversations.created, updated, count(messages.id) from conversations"
                " left join messages on messages.conversation_id = conversations.id"
                " group by conversations.id order by updated desc, conversations.id desc").fetchall()
        return [Conversation(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def messages(self, conversation_id: int, last: int | None = None) -> list[Message]:
        with self.store.lock:
            rows = self.db.execute(
                "select id, conversation_id, role, text, items, created, meta from messages where conversation_id = ?"
                " order by id", [conversation_id]).fetchall()
        messages = [_message(r) for r in rows]
        return messages[-last:] if last else messages

    def get(self, conversation_id: int) -> Conversation:
        with self.store.lock:  # the conversation and its messages as of one moment
            row = self._require(conversation_id)
            messages = self.messages(conversation_id)
        return Conversation(row[0], row[1], row[2], row[3], len(messages), messages)

    def delete(self, conversation_id: int) -> None:
        with self.store.transaction():
            self._require(conversation_id)
            self.db.execute("delete from messages where conversation_id = ?", [conversation_id])
            self.db.execute("delete from conversations where id = ?", [conversation_id])

    def delete_all(self) -> int:
        with self.store.transaction():
            count = self.db.execute("select count(*) from conversations").fetchone()[0]
            self.db.execute("delete from messages")
            self.db.execute("delete from conversations")
        return int(count)

    def export(self) -> list[dict[str, Any]]:
        with self.store.lock:
            return [self.get(c.id).as_dict() for c in sorted(self.list(), key=lambda c: c.id)]
