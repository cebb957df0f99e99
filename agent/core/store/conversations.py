"""Conversations with ownrec, kept in the local database (migration m003): listed, shown,
deleted, exported. A message keeps what the person saw: the (checked) reply text and the items
shown beside it, with details of how it was made in `meta`. Every method holds the store's lock
(one connection is shared by the app's threads).

A reply is stored as it streams (migration m006): `begin_exchange` stores the request and an empty
reply in the state "streaming", `append` adds each piece as it is shown, and `finish` ("complete",
with its details) or `interrupt` ("interrupted") ends it. A reply left "streaming" by a process that
is gone (a crash, a kill) reads as "interrupted"."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from agent.core.store.records import StoreError
from agent.core.store.store import Store

TITLE_LENGTH = 60
STREAMING, COMPLETE, INTERRUPTED = "streaming", "complete", "interrupted"


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
    state: str = COMPLETE  # streaming | complete | interrupted (a request is always complete)

    @property
    def interrupted(self) -> bool:
        return self.state == INTERRUPTED

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "text": self.text, "items": self.items,
                "created": self.created, "meta": self.meta, "state": self.state}


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created: float
    updated: float
    message_count: int
    messages: list[Message] = field(default_factory=list)
    state: str = COMPLETE  # its last reply's

    @property
    def interrupted(self) -> bool:
        return self.state == INTERRUPTED

    def as_dict(self, with_messages: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "title": self.title, "created": self.created,
                                "updated": self.updated, "messages": self.message_count, "state": self.state}
        if with_messages:
            data["messages"] = [m.as_dict() for m in self.messages]
        return data


MESSAGE_COLUMNS = "id, conversation_id, role, text, items, created, meta, state"


def _message(row: tuple) -> Message:
    meta = json.loads(row[6] or "{}")
    return Message(row[0], row[1], row[2], row[3], json.loads(row[4] or "[]"), row[5], meta,
                   _state(row[7], meta.get("writer")))


def _state(stored: str | None, writer: Any) -> str:
    """The state as it is: a reply still "streaming" whose writer process is gone was cut off."""
    if stored == STREAMING and not _alive(writer):
        return INTERRUPTED
    return stored or COMPLETE


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return True
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows: take it as gone
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # it exists, as another user's
        return True
    except OSError:
        return False
    return True


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
            meta: dict[str, Any] | None = None, state: str = COMPLETE) -> Message:
        now = time.time()
        with self.store.transaction():
            self._require(conversation_id)
            cursor = self.db.execute(
                "insert into messages (conversation_id, role, text, items, created, meta, state)"
                " values (?, ?, ?, ?, ?, ?, ?)",
                [conversation_id, role, text, json.dumps(items or [], ensure_ascii=False), now,
                 json.dumps(meta or {}, ensure_ascii=False), state])
            self.db.execute("update conversations set updated = ? where id = ?", [now, conversation_id])
        return Message(int(cursor.lastrowid), conversation_id, role, text, items or [], now, meta or {}, state)

    def record_exchange(self, conversation_id: int | None, request: str, request_meta: dict[str, Any], reply: str,
                        items: list[dict[str, Any]], reply_meta: dict[str, Any]) -> Message:
        """A request and its whole reply in one transaction, continuing `conversation_id` or starting a
        conversation titled by the request; the reply's message."""
        with self.store.transaction():
            message = self.begin_exchange(conversation_id, request, request_meta, items)
            return self.finish(message.id, reply, reply_meta)

    def begin_exchange(self, conversation_id: int | None, request: str, request_meta: dict[str, Any],
                       items: list[dict[str, Any]]) -> Message:
        """The request and an empty reply "streaming", in one transaction, continuing `conversation_id` or
        starting a conversation titled by the request; the reply's message (`append`, then `finish` or
        `interrupt`)."""
        with self.store.transaction():
            conversation_id = conversation_id or self.start(request)
            self.add(conversation_id, "user", request, meta=request_meta)
            # The writer's process id tells a live reply from one a crash left unfinished (`_state`).
            return self.add(conversation_id, "assistant", "", items, meta={"writer": os.getpid()}, state=STREAMING)

    def append(self, message_id: int, text: str) -> None:
        """Add released text to a streaming reply (ConversationNotFound if it was deleted meanwhile)."""
        with self.store.transaction():
            self._update(message_id, "update messages set text = text || ? where id = ? and state = ?",
                         [text, message_id, STREAMING])

    def finish(self, message_id: int, text: str, meta: dict[str, Any]) -> Message:
        """Complete a streaming reply: its whole text (what was appended) and how it was made."""
        with self.store.transaction():
            self._update(message_id, "update messages set text = ?, meta = ?, state = ? where id = ? and state = ?",
                         [text, json.dumps(meta, ensure_ascii=False), COMPLETE, message_id, STREAMING])
            return self.message(message_id)

    def interrupt(self, message_id: int, meta: dict[str, Any]) -> None:
        """Mark a streaming reply cut off, keeping the text appended so far; nothing if it is gone or ended."""
        with self.store.transaction():
            self.db.execute("update messages set meta = ?, state = ? where id = ? and state = ?",
                            [json.dumps(meta, ensure_ascii=False), INTERRUPTED, message_id, STREAMING])

    def _update(self, message_id: int, sql: str, parameters: list[Any]) -> None:
        if self.db.execute(sql, parameters).rowcount != 1:
            raise ConversationNotFound(f"reply {message_id} is no longer being written (its conversation was "
                                       "deleted meanwhile?)")
        self.db.execute("update conversations set updated = ? where id = (select conversation_id from messages"
                        " where id = ?)", [time.time(), message_id])

    def message(self, message_id: int) -> Message:
        with self.store.lock:
            row = self.db.execute(f"select {MESSAGE_COLUMNS} from messages where id = ?", [message_id]).fetchone()
        if row is None:
            raise ConversationNotFound(f"no message {message_id}")
        return _message(row)

    def _require(self, conversation_id: int) -> tuple:
        with self.store.lock:
            row = self.db.execute("select id, title, created, updated from conversations where id = ?",
                                  [conversation_id]).fetchone()
        if row is None:
            raise ConversationNotFound(f"no conversation {conversation_id}: `ownrec chats list` shows them")
        return row

    def list(self) -> list[Conversation]:
        """Every conversation, most recently updated first (without their messages), with its last reply's state."""
        last_reply = ("(select {} from messages where conversation_id = conversations.id and role = 'assistant'"
                      " order by id desc limit 1)")
        with self.store.lock:
            rows = self.db.execute(
                "select conversations.id, title, conversations.created, updated, count(messages.id), "
                + last_reply.format("state") + ", " + last_reply.format("json_extract(meta, '$.writer')")
                + " from conversations left join messages on messages.conversation_id = conversations.id"
                " group by conversations.id order by updated desc, conversations.id desc").fetchall()
        return [Conversation(r[0], r[1], r[2], r[3], r[4], state=_state(r[5], r[6])) for r in rows]

    def messages(self, conversation_id: int, last: int | None = None) -> list[Message]:
        with self.store.lock:
            rows = self.db.execute(f"select {MESSAGE_COLUMNS} from messages where conversation_id = ? order by id",
                                   [conversation_id]).fetchall()
        messages = [_message(r) for r in rows]
        return messages[-last:] if last else messages

    def get(self, conversation_id: int) -> Conversation:
        with self.store.lock:  # the conversation and its messages as of one moment
            row = self._require(conversation_id)
            messages = self.messages(conversation_id)
        replies = [m for m in messages if m.role == "assistant"]
        return Conversation(row[0], row[1], row[2], row[3], len(messages), messages,
                            replies[-1].state if replies else COMPLETE)

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
