"""Chat: a request in the person's words, answered from their own ranker (`Agent.stream`).

The request goes into the transcript at once; in a thread worker the language model loads (the
first time only), the ranker's shortlist appears beside the transcript as soon as it is known,
and the reply streams in sentence by sentence as each one passes the grounding check. The
exchange continues one conversation until ctrl+n starts a new one; ctrl+o lists past ones
(ChatsScreen) to reopen or delete. The core stores the reply as it streams, so Esc while it streams
stops it and keeps what was shown, marked interrupted; Chat opens again on the same conversation,
its transcript shown (`app.chat_conversation`). The items take feedback (l/d/s) and open in the
details (enter). Without a usable language model the problem and its fix are shown, and the
ranker's items still are. Dismisses with True when feedback was given, so the feed re-ranks."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from agent.core.api import Conversation, ConversationNotFound, Item, LLMUnavailable, Recommendation
from agent.tui.common import PAST_TENSE, reported, title_with_year
from agent.tui.screens.chats import ChatsScreen

PLACEHOLDER = "ask for something: \"a cosy mystery from the 70s\" · enter sends"
HELLO = ("Ask for something in your own words, why an item is recommended (“why Heat?”), or what ownrec "
         "knows about you. The items come from your own ranker; the reply only names items on that list, and what "
         "it cannot check is held back. tab moves to the items: l/d/s rate one, enter opens it.")
LOADING = "loading the language model…"
INTERRUPTED = "(interrupted: the reply stopped here)"
MARKS = {"like": "♥", "dislike": "✗", "skip": "·"}


class ChatItems(DataTable):
    """The ranker's items for the latest request, keyed by item ref."""

    BINDINGS = [
        Binding("l", "screen.feedback('like')", "Like"),
        Binding("d", "screen.feedback('dislike')", "Dislike"),
        Binding("s", "screen.feedback('skip')", "Skip"),
        Binding("enter", "screen.details", "Details"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, show_header=False, **kwargs)
        self.recommendations: list[Recommendation] = []
        self.marks: dict[str, str] = {}

    @property
    def current(self) -> Recommendation | None:
        if not self.recommendations or not 0 <= self.cursor_row < len(self.recommendations):
            return None
        return self.recommendations[self.cursor_row]

    def on_mount(self) -> None:
        self.add_column("", width=1, key="mark")
        self.add_column("item", key="item")

    def show(self, recommendations: list[Recommendation]) -> None:
        self.recommendations = list(recommendations)
        self.marks = {}
        self.clear()
        for rec in self.recommendations:
            self.add_row("", self._cell(rec), key=rec.item.ref, height=None)
        if self.row_count:
            self.move_cursor(row=0)

    def mark(self, ref: str, kind: str) -> None:
        self.marks[ref] = kind
        if ref in self.rows:
            self.update_cell(ref, "mark", Text(MARKS.get(kind, ""), style="bold magenta"))

    def _cell(self, rec: Recommendation) -> Text:
        width = max((self.size.width or 40) - 6, 20)
        text = Text(title_with_year(rec.item), style="bold", overflow="ellipsis", no_wrap=True)
        text.truncate(width, overflow="ellipsis")
        reason = Text(rec.reason, style="dim italic", overflow="ellipsis", no_wrap=True)
        reason.truncate(width, overflow="ellipsis")
        return Text("\n").join([text, reason])


class ChatScreen(Screen[bool]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+n", "new_conversation", "New chat"),
        Binding("ctrl+o", "chats", "Chats"),
    ]

    def __init__(self, conversation_id: int | None = None) -> None:
        super().__init__()
        self.conversation_id = conversation_id  # shown and continued; None: the next request starts one
        self.busy = False
        self.feedback_given = False
        self.reply = None  # the latest ReplyStream (None when the model was unavailable)
        self.answers: list = []  # every Answer of the conversation shown
        self._ticket = 0
        self._reply_widget: Static | None = None
        self._reply_text = ""
        self._live = None  # the ReplyStream a worker is reading, to stop it on Esc

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="chat-body"):
            with VerticalScroll(id="transcript") as transcript:
                transcript.border_title = "conversation"
                transcript.can_focus = False  # tab goes between the input and the items
                yield Static(Text(HELLO), classes="chat-note")
            with Vertical(id="chat-side") as side:
                side.border_title = "from your ranker"
                yield ChatItems(id="chat-items")
        yield Static("new conversation", id="status")
        yield Input(placeholder=PLACEHOLDER, id="chat-input")
        yield Footer()

    def on_mount(self) -> None:
        if self.conversation_id is not None:
            self.show_conversation(self.conversation_id)
        self.query_one(Input).focus()

    def on_unmount(self) -> None:
        self._stop_reply()  # the app is closing: what was shown stays stored, interrupted

    @property
    def items(self) -> ChatItems:
        return self.query_one(ChatItems)

    @property
    def transcript(self) -> VerticalScroll:
        return self.query_one("#transcript", VerticalScroll)

    def transcript_text(self) -> str:
        """Everything the transcript shows, as plain text."""
        parts = []
        for widget in self.transcript.query(Static):
            content = widget.content
            parts.append(content.plain if isinstance(content, Text) else str(content))
        return "\n".join(parts)

    def status(self, text: str) -> None:
        self.query_one("#status", Static).update(Text(text))

    def _say(self, text: str, classes: str) -> Static:
        widget = Static(Text(text), classes=classes)
        self.transcript.mount(widget)
        self.transcript.scroll_end(animate=False)
        return widget

    # -- actions ------------------------------------------------------------------------

    @on(Input.Submitted, "#chat-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = " ".join(event.value.split())
        if not text:
            return
        if self.busy:
            self.app.notify("one request at a time: wait for the reply", title="ownrec", severity="warning")
            return
        event.input.value = ""
        self.busy = True
        self._ticket += 1
        self._say(text, "chat-request")
        self._reply_widget, self._reply_text = None, ""
        loaded = self.app.agent.llm_loaded
        self.status("thinking…" if loaded else LOADING)
        self.answer(self._ticket, text, self.conversation_id)

    def _left(self, sent_in: int | None, stored_in: int | None) -> None:
        """A reply stopped by Esc was stored in `stored_in` (a new conversation, when `sent_in` was None):
        Chat opens on it next, unless another conversation was opened meanwhile; a Chat screen opened
        again before the reply stopped (llama.cpp stops at the next token) shows how it ended."""
        if stored_in is None or self.app.chat_conversation not in (sent_in, stored_in):
            return
        self.app.chat_conversation = stored_in
        again = self.app.screen
        if (isinstance(again, ChatScreen) and again is not self and not again.busy and not again.answers
                and again.conversation_id in (sent_in, stored_in)):
            again.show_conversation(stored_in)

    def action_back(self) -> None:
        self._ticket += 1  # a reply still on its way is no longer shown
        self._stop_reply()
        self.app.chat_conversation = self._current()
        self.dismiss(self.feedback_given)

    def _stop_reply(self) -> None:
        """Stop a reply being written: the worker ends at the next token; the core keeps what was shown."""
        live = self._live
        if live is not None:
            live.cancel()
        self.workers.cancel_group(self, "chat")

    def _current(self) -> int | None:
        """The conversation on screen, including one whose first request is still being answered."""
        live = self._live
        return self.conversation_id if live is None or live.conversation_id is None else live.conversation_id

    def action_new_conversation(self) -> None:
        if self.busy:
            self.app.notify("wait for the reply before starting a new conversation", title="ownrec",
                            severity="warning")
            return
        self._set_conversation(None)
        self.reply, self.answers = None, []
        self.transcript.remove_children()
        self.transcript.mount(Static(Text(HELLO), classes="chat-note"))
        self.items.show([])
        self.status("new conversation")
        self.query_one(Input).focus()

    def _set_conversation(self, conversation_id: int | None) -> None:
        self.conversation_id = self.app.chat_conversation = conversation_id

    def action_chats(self) -> None:
        if self.busy:
            self.app.notify("wait for the reply before opening another conversation", title="ownrec",
                            severity="warning")
            return
        chats = ChatsScreen(self.conversation_id)

        def chosen(conversation_id: int | None) -> None:
            if conversation_id is not None:
                self.show_conversation(conversation_id)
            elif self.conversation_id in chats.deleted:
                deleted = self.conversation_id
                self.action_new_conversation()
                self.status(f"conversation {deleted} was deleted: the next request starts a new one")
            self.query_one(Input).focus()

        self.app.push_screen(chats, chosen)

    def show_conversation(self, conversation_id: int) -> None:
        """Show a stored conversation's transcript (each reply with the items it listed, the last reply's
        items beside) and continue it with the next request."""
        try:
            conversation = self.app.agent.conversation(conversation_id)
        except ConversationNotFound:
            self._set_conversation(None)
            self.status(f"conversation {conversation_id} is gone (deleted): a new one starts")
            return
        self._set_conversation(conversation.id)
        self.reply, self.answers = None, []
        self.transcript.remove_children()
        for message in conversation.messages:
            if message.role == "user":
                self._say(message.text, "chat-request")
                continue
            if message.text:
                self._say(message.text, "chat-reply")
            listed = ", ".join(f"{i['title']} ({i['year']})" if i.get("year") else str(i.get("title"))
                               for i in message.items)
            if listed:
                self._say(f"from your ranker: {listed}", "chat-note")
            if message.state == "interrupted":
                self._say(INTERRUPTED if message.text else "(interrupted before any reply)", "chat-note")
            elif message.state == "streaming":
                self._say("(unfinished: the reply is still being written, or is stopping)", "chat-note")
        replies = [m for m in conversation.messages if m.role == "assistant"]
        self.items.show(self.app.agent.reply_items(replies[-1]) if replies else [])
        self.status(_described(conversation) + " · the next request continues it")

    def action_feedback(self, kind: str) -> None:
        rec = self.items.current
        if rec is not None:
            self.give(rec.item, kind)

    def action_details(self) -> None:
        rec = self.items.current
        if rec is not None:
            from agent.tui.screens.details import DetailsScreen

            self.app.push_screen(DetailsScreen(rec.item, rec), lambda kind: kind and self.give(rec.item, kind))

    @on(DataTable.RowSelected, "#chat-items")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_details()

    def give(self, item: Item, kind: str) -> None:
        self.items.mark(item.ref, kind)
        self.send_feedback(item, kind)

    # -- workers ------------------------------------------------------------------------

    @work(thread=True, group="chat-feedback")
    @reported
    def send_feedback(self, item: Item, kind: str) -> None:
        try:
            result = self.app.agent.feedback(item.ref, kind, origin="chat")
        except Exception:
            self.app.call_from_thread(self._unmark, item.ref)
            raise
        note = f"{PAST_TENSE[kind]} {title_with_year(item)} · model updated in {result.update_ms:.1f} ms"
        self.app.call_from_thread(self._rated, note)

    def _unmark(self, ref: str) -> None:
        self.items.marks.pop(ref, None)
        if ref in self.items.rows:
            self.items.update_cell(ref, "mark", "")

    def _rated(self, note: str) -> None:
        self.feedback_given = True
        self.status(note)

    @work(thread=True, group="chat", exit_on_error=False)
    def answer(self, ticket: int, text: str, conversation_id: int | None) -> None:
        agent = self.app.agent
        call = self.app.call_from_thread
        try:
            try:
                reply = agent.stream(text, conversation_id)
            except LLMUnavailable as error:
                call(self._unavailable, ticket, error.problem, error.fix)
                items = agent.shortlist(text)
                call(self._show_items, ticket, items, None)
                call(self._finished, ticket, None, f"the language model is unavailable · {len(items)} items "
                                                   "from your ranker")
                return
            worker = get_current_worker()
            self._live = reply
            try:
                if worker.is_cancelled:  # left while the model loaded: the request is kept, without a reply
                    reply.cancel()
                call(self._show_items, ticket, reply.items, reply)
                call(self._note, ticket, "writing the reply…")
                for chunk in reply:
                    if worker.is_cancelled:
                        break
                    call(self._chunk, ticket, chunk)
            finally:
                self._live = None
                reply.close()  # a reply left unfinished frees the model at once, and is kept as interrupted
            if worker.is_cancelled:
                call(self._left, conversation_id, reply.conversation_id)
                return
            call(self._finished, ticket, reply.answer, None)
        except Exception as error:  # never crash: say it, and let the next request through
            if not get_current_worker().is_cancelled:
                message = str(error) or type(error).__name__
                call(self.app.notify, message, title="ownrec", severity="error", markup=False)
                call(self._finished, ticket, None, f"no reply: {message}",
                     isinstance(error, ConversationNotFound))

    def _note(self, ticket: int, text: str) -> None:
        if ticket == self._ticket:
            self.status(text)

    def _unavailable(self, ticket: int, problem: str, fix: str) -> None:
        if ticket != self._ticket:
            return
        self._say(f"The language model is unavailable: {problem}\nFix: {fix}\n"
                  "The items beside are your ranker's, which works without it.", "chat-problem")

    def _show_items(self, ticket: int, items: list[Recommendation], reply) -> None:
        if ticket != self._ticket:
            return
        self.reply = reply
        self.items.show(items)

    def _chunk(self, ticket: int, chunk: str) -> None:
        if ticket != self._ticket:
            return
        self._reply_text += chunk
        if self._reply_widget is None:
            self._reply_widget = self._say(self._reply_text, "chat-reply")
        else:
            self._reply_widget.update(Text(self._reply_text))
            self.transcript.scroll_end(animate=False)

    def _finished(self, ticket: int, answer, note: str | None, lost: bool = False) -> None:
        if ticket != self._ticket:
            return
        self.busy = False
        if lost:  # the conversation was deleted meanwhile (`ownrec chats delete`): the next one starts anew
            self._set_conversation(None)
        if answer is not None:
            self.answers.append(answer)
            self._set_conversation(answer.conversation_id)
            if answer.reply != self._reply_text:  # what was stored is what is shown
                self._reply_text = ""
                self._reply_widget = self._reply_widget or self._say("", "chat-reply")
                self._chunk(ticket, answer.reply)
            seconds = answer.stats.get("load_seconds")
            note = (f"conversation {answer.conversation_id} · {len(answer.items)} items"
                    + (f" · model loaded in {seconds:.1f} s" if seconds is not None else "")
                    + (f" · {answer.held_back}" if answer.held_back else ""))
        self.status(note or "")


def _described(conversation: Conversation) -> str:
    count = conversation.message_count
    return (f"conversation {conversation.id} · {count} message{'' if count == 1 else 's'}"
            + (" · the last reply was interrupted" if conversation.interrupted else ""))
