"""Chats (ctrl+o on the Chat screen): the past conversations, most recent first. enter reopens one on
the Chat screen (dismisses with its id), delete removes one after a confirmation, esc goes back (None).
`deleted` holds the ids removed here, so the Chat screen can let go of one it was showing."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from agent.core.api import Conversation, ConversationNotFound
from agent.tui.screens.confirm import ConfirmScreen


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


class ChatList(DataTable):
    """One row per conversation, keyed by its id."""

    BINDINGS = [
        Binding("enter", "screen.open", "Open"),
        Binding("delete,d", "screen.delete", "Delete", key_display="del"),
    ]


class ChatsScreen(Screen[int | None]):
    HELP_TITLE = "chats"
    BINDINGS = [Binding("escape", "dismiss(None)", "Back")]

    def __init__(self, current: int | None = None) -> None:
        super().__init__()
        self.current = current  # the conversation the Chat screen shows: the cursor starts on it
        self.conversations: list[Conversation] = []
        self.deleted: set[int] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield ChatList(cursor_type="row", zebra_stripes=True, id="chat-list")
        yield Static("", id="status")
        yield Footer()

    @property
    def table(self) -> ChatList:
        return self.query_one(ChatList)

    def on_mount(self) -> None:
        table = self.table
        table.border_title = "your conversations, most recent first"
        table.add_column("last message", key="when")
        table.add_column("messages", key="count")
        table.add_column("", key="mark")
        table.add_column("first request", key="title")
        self.load()
        table.focus()

    def load(self, status: str | None = None) -> None:
        self.conversations = self.app.agent.conversations()
        table = self.table
        table.clear()
        for c in self.conversations:
            mark = Text("interrupted", style="bold yellow") if c.interrupted else Text("")
            table.add_row(when(c.updated), Text(str(c.message_count), justify="right"), mark, c.title, key=str(c.id))
        ids = [c.id for c in self.conversations]
        if self.current in ids:
            table.move_cursor(row=ids.index(self.current))
        if status is None:
            status = (f"{len(ids)} conversation{'' if len(ids) == 1 else 's'} · enter reopens one, del deletes it"
                      if ids else "no conversations yet: ask something on the Chat screen to start one")
        self.query_one("#status", Static).update(Text(status))

    @property
    def selected(self) -> Conversation | None:
        if not self.conversations or not 0 <= self.table.cursor_row < len(self.conversations):
            return None
        return self.conversations[self.table.cursor_row]

    def action_open(self) -> None:
        chosen = self.selected
        if chosen is not None:
            self.dismiss(chosen.id)

    @on(DataTable.RowSelected, "#chat-list")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_delete(self) -> None:
        chosen = self.selected
        if chosen is None:
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.app.agent.delete_conversation(chosen.id)
            except ConversationNotFound:
                pass  # deleted elsewhere meanwhile (`ownrec chats delete`): gone all the same
            self.deleted.add(chosen.id)
            self.load(f"deleted conversation {chosen.id}: {chosen.title}")

        messages = f"{chosen.message_count} message{'' if chosen.message_count == 1 else 's'}"
        self.app.push_screen(ConfirmScreen("Delete this conversation?",
                                           f"“{chosen.title}” ({messages}, last on {when(chosen.updated)}) will be "
                                           "deleted from this machine. This cannot be undone.", confirm="Delete"),
                             answered)
