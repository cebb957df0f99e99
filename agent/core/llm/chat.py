"""`ownrec ask`: a request in the person's words, answered from their own ranker.

1. Understand: the request's text is the ranker's query term; filters (genres, years) are read
   from it (see `understand.py`).
2. Candidates: the ranker's answer to the request (`recommend(request, pool)`), then the filters:
   the shortlist (`shortlist`). The items shown are always these ranker items, never anything read
   from generated text.
3. Reply: the LLM sees a numbered shortlist (id, title, year, the ranker's reason) and the
   person's strongest traits (hidden ones never), and writes a short reply, streamed out
   sentence by sentence as each one passes the grounding check (`grounding.py`): a sentence that
   names a title not on the shortlist is never shown.
4. The exchange is stored as a conversation (agent.core.store.conversations) as it streams: the request
   and an empty reply when the iteration starts, each released piece as it is released, and the
   reply's details when it ends. A reply stopped early (`cancel`, `close`, an error, the iterator
   dropped) keeps what was released, marked "interrupted". Only released text is ever stored.

`stream(text, context)` returns a `ReplyStream`: its items and filters are ready at once; iterate
it for the reply's text; its `answer` is complete when the iteration ends (None if it was stopped).
The `ChatContext` is what the facade (agent.core.api) gathers from the person's data: this module
never sees it.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.core.llm.answers import (OFF_TOPIC_REPLY, WHY_WITHOUT_TITLE, ItemStanding, TasteSummary, about_me_reply,
                                    why_reply)
from agent.core.llm.claims import Claims, PersonFacts
from agent.core.llm.grounding import Grounder, RemovedSpan, SentenceGate, TitleIndex, title_key
from agent.core.llm.inputs import Leaning, LLMSettings
from agent.core.llm.requests import Request, classify, ranking_query, refine, same_series
from agent.core.llm.understand import Filters, Vocabulary, apply_filters, understand, words_of
from agent.core.store.conversations import Conversations

if TYPE_CHECKING:
    from agent.core.llm.model import LLM
    from agent.core.ranker import Recommendation
    from agent.core.store import Store

Recommend = Callable[[str, int], list["Recommendation"]]  # (request, how many): the ranker's answer, best first

SYSTEM_PROMPT = (
    "You are ownrec, a recommender on the person's own computer. Recommend only titles from the numbered "
    "list, written exactly as listed, and say in a few words why they fit. Name nothing that is not on the "
    "list. Two or three short sentences."
)
REPEAT_PENALTY = 1.1  # higher makes the model miscopy titles and years from the list; repeats are cut instead
HISTORY_MESSAGES = 4  # earlier messages of the conversation the model sees
LOOK_BACK_MESSAGES = 40  # how far back a follow-up looks for the request it refines
TRAITS_SHOWN = 3
POOL_WITH_FILTERS = 400  # ranker candidates to filter; without filters, a few times the shortlist


# How a held-back sentence's title problem is told to the person (`Answer.held_back`); other reasons are
# said as the claim checks word them.
TITLE_REASONS = {"not in the catalog": "named a title not on this list", "not on the shortlist": "named a title not on this list"}


class ChatError(ValueError):
    pass


@dataclass(frozen=True)
class Answer:
    conversation_id: int
    message_id: int
    request: str
    reply: str  # the checked text the person saw
    items: list["Recommendation"]
    mentioned: list[int]  # shortlist ids the reply names
    removed: list[RemovedSpan]  # sentences held back
    filters: Filters
    relaxed: list[str]
    stats: dict[str, Any]

    def items_json(self) -> list[dict[str, Any]]:
        return [_item_json(r) for r in self.items]

    @property
    def held_back(self) -> str | None:
        """What was held back of the generated reply and why, in a line; None when nothing was."""
        reasons = [TITLE_REASONS.get(r.reason, r.reason) for r in self.removed if r.reason != "repeated"]
        if not reasons:
            return None
        counted = "; ".join(dict.fromkeys(reasons))
        return f"{len(reasons)} sentence{'s' if len(reasons) > 1 else ''} held back: {counted}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id, "message_id": self.message_id, "request": self.request,
            "reply": self.reply, "items": self.items_json(), "mentioned": self.mentioned,
            "removed_sentences": len(self.removed), "filters": self.filters.as_dict(), "relaxed": self.relaxed,
            "stats": self.stats,
        }


def _item_json(r: "Recommendation") -> dict[str, Any]:
    return {"id": r.item.id, "ref": r.item.ref, "title": r.item.display_title, "year": r.item.year,
            "genres": r.item.metadata.get("genres", []), "score": round(float(r.score), 4), "reason": r.reason}


# -- per-store caches (the catalog's titles and genres), rebuilt when the items change ---------

_CACHE: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def catalog_views(store: "Store") -> tuple[TitleIndex, Vocabulary]:
    """The catalog's titles (for grounding) and genres and years (for filters), cached per store."""
    with store.lock:  # the signature and the views it stands for, as of one moment
        signature = store.catalog_signature()
        with _CACHE_LOCK:
            cached = _CACHE.get(store)
        if cached and cached["signature"] == signature:
            return cached["index"], cached["vocabulary"]
        index, vocabulary = TitleIndex.from_store(store), Vocabulary.from_store(store)
    with _CACHE_LOCK:
        _CACHE[store] = {"signature": signature, "index": index, "vocabulary": vocabulary}
    return index, vocabulary


# -- the shortlist --------------------------------------------------------------------------------


def shortlist(request: str, filters: Filters, recommend: Recommend, size: int
              ) -> tuple[list["Recommendation"], list[str]]:
    """The items a reply may name: the ranker's candidates for `request`, filtered (`apply_filters`);
    and the filters relaxed to find enough."""
    pool = POOL_WITH_FILTERS if filters else max(4 * size, 20)
    return apply_filters(recommend(request, pool), filters, size)


def keyword_shortlist(text: str, store: "Store", recommend: Recommend, size: int) -> list["Recommendation"]:
    """The shortlist made without the language model, the filters read from keywords alone: what the
    chat shows when the model is unavailable."""
    request = " ".join(text.split())
    _, vocabulary = catalog_views(store)
    filters, _ = understand(request, vocabulary, None, mode="keywords")
    return shortlist(request, filters, recommend, size)[0]


# -- the prompt ---------------------------------------------------------------------------------


def strongest_traits(traits: Sequence[Leaning]) -> list[tuple[str, str, float]]:
    """(trait name, the pole the person leans to, value) of each reading."""
    return [(r.name, r.leaning_pole, r.value) for r in traits]


def shortlist_lines(shortlist: list["Recommendation"]) -> list[str]:
    lines = []
    for number, r in enumerate(shortlist, 1):
        year = f" ({r.item.year})" if r.item.year else ""
        genres = ", ".join(r.item.metadata.get("genres", []) or [])
        lines.append(f"{number}. {r.item.display_title}{year} [id {r.item.id}]"
                     + (f" - {genres}" if genres else "") + f" - {r.reason}")
    return lines


def build_messages(request: str, shortlist: list["Recommendation"], history: list[dict[str, str]] | None = None
                   ) -> list[dict[str, str]]:
    """The prompt: the request and the numbered shortlist. The traits are not in it: the ranker has already
    used them to pick the shortlist, and a reply that repeats them only risks stating them wrongly."""
    parts = [request.strip(), "", "Options:", *shortlist_lines(shortlist)]
    return [{"role": "system", "content": SYSTEM_PROMPT}, *(history or []),
            {"role": "user", "content": "\n".join(parts)}]


def fallback_reply(shortlist: list["Recommendation"]) -> str:
    """A reply made from the shortlist alone, when the model's reply had nothing left to show."""
    if not shortlist:
        return ("Nothing to recommend for that yet: import a catalog (`ownrec import --demo`) or more items, "
                "or ask for something else.")
    names = [f"{r.item.display_title} ({r.item.year})" if r.item.year else r.item.display_title for r in shortlist[:2]]
    return "From your list, I would start with " + " and ".join(names) + "."


# -- requests answered from the person's data ----------------------------------------------------

_WHY_PREFIX = re.compile(
    r"^(?:(?:and|so|but|ok|okay) )?(?:why|how come|what makes you think|explain why)(?: (?:did|do|does|would|are|is|was|were"
    r"|have|has))?(?: (?:you|it|ownrec))?(?: (?:recommend|recommended|suggest|suggested|show|showed|shown|pick|picked"
    r"|list|listed|put|include|included|choose|chose|rank|ranked|think|like))?(?: me)?"
    r"(?: (?:i (?:would|will|d|might)|id|ill) (?:like|enjoy|love))?\b")
_WHY_SUFFIX = re.compile(r"\b(?:to me|for me|in my feed|on my feed|in my list|on my list|in the list|on the list"
                         r"|here|so high|at all|there)$")
_LIKE = re.compile(r"\b(?:like|similar to|such as|in the vein of|along the lines of)\b")


def _previous(earlier: list) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The conversation's latest request for items ({"text", "meta"}) and the items its reply listed: what a
    refinement refines and "the second one" counts in ("why X?" and the like list nothing to refine)."""
    for k in range(len(earlier) - 1, -1, -1):
        message = earlier[k]
        if message.role == "user" and message.meta.get("kind", "recommend") == "recommend":
            reply = next((m for m in earlier[k + 1 :] if m.role == "assistant"), None)
            return {"text": message.text, "meta": message.meta}, list(reply.items or []) if reply else []
    return None, []


def _why_subject(request: str) -> str:
    words = " ".join(words_of(request))
    words = _WHY_PREFIX.sub("", words).strip()
    return _WHY_SUFFIX.sub("", words).strip()


def answer_from_data(request: Request, named: list[tuple[int, str, set[int]]], shown: list[dict[str, Any]],
                     context: "ChatContext") -> tuple[str, list["Recommendation"]]:
    """The reply (and the items beside it) for a request the person's own data answers."""
    from agent.core.ranker import Recommendation

    if request.kind == "off_topic":
        return OFF_TOPIC_REPLY, []
    if request.kind == "about_me":
        return about_me_reply(context.summary()), []
    shown_ids = [int(i["id"]) for i in shown]
    ids: set[int] = set()
    subject = _why_subject(request.text)
    if request.ordinal is not None and shown_ids and -len(shown_ids) <= request.ordinal < len(shown_ids):
        ids = {shown_ids[request.ordinal]}
    if not ids and subject:
        ids = set(catalog_views(context.store)[0].find(subject))
    if not ids and not subject and named:  # the title was all the request said after "why"
        ids = max(named, key=lambda found: len(found[1].split()))[2]
    if not ids:
        if subject and request.ordinal is None:
            # A title inside what was asked is only a guess at what was meant: offered, not answered.
            guesses = [context.standing(min(found[2])).item for found in named if len(found[1]) >= 4]
            guess = (" Did you mean " + " or ".join(f"“{_titled(i)}”" for i in guesses[:2]) + "?") if guesses else ""
            return f"I cannot find “{subject}” in your catalog.{guess} " + WHY_WITHOUT_TITLE, []
        return WHY_WITHOUT_TITLE, []
    listed = [i for i in shown_ids if i in ids]
    standings = [context.standing(i) for i in (listed[:1] or sorted(ids))]
    # Of several items with that title, the one the person judged, else the one ranked highest.
    best = min(standings, key=lambda s: (s.judgement is None, s.rank is None, s.rank or 0))
    reason = next((i.get("reason") for i in shown if int(i["id"]) == best.item.id), None)
    text = why_reply(best, reason)
    if len(standings) == 1 and len(ids) > 1:
        text += f" Your catalog has {len(ids)} items with that title; this is the one I listed."
    elif len(standings) > 1:
        text += f" Your catalog has {len(standings)} items with that title; this is the one your ranker places highest."
    if best.judgement is not None:
        return text, []
    return text, [Recommendation(best.item, best.score, best.reason, False, best.because, best.opened)]


def _titled(item) -> str:
    return f"{item.display_title} ({item.year})" if item.year else item.display_title


def _anchors(request: str, named: list[tuple[int, str, set[int]]]) -> set[str]:
    """The title keys a request asks for something like ("a film like Alien"): their series is left out."""
    words = " ".join(words_of(request))
    match = _LIKE.search(words)
    if not match:
        return set()
    after = len(words[: match.end()].split())
    return {key for first, key, _ in named if first >= after}


def _without(recommend: Recommend, leave_out: set[int], anchors: set[str]) -> Recommend:
    if not leave_out and not anchors:
        return recommend

    def answer(request: str, count: int) -> list["Recommendation"]:
        return [r for r in recommend(request, count + len(leave_out) + 10)
                if r.item.id not in leave_out and not same_series(title_key(r.item.title), anchors)]

    return answer


# -- one exchange -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatContext:
    """What answering needs from the person's data, gathered by the facade."""

    store: "Store"  # the conversations, and the catalog's titles and genres
    llm: Callable[[], "LLM"]  # the model, loaded by the first call (LLMUnavailable, with its fix)
    llm_loaded: bool  # whether the model was in memory before this request (else its loading goes in the stats)
    recommend: Recommend
    traits: Sequence[Leaning]  # the clearest visible traits, at most TRAITS_SHOWN (the prompt states them)
    trait_words: Sequence[str]  # the traits' names and pole words: a reply may use them, they name no title
    settings: LLMSettings
    standing: Callable[[int], ItemStanding]  # where an item stands for the person, and why (`Agent.standing`)
    summary: Callable[[], TasteSummary]  # what ownrec has learned about them (`Agent.taste_summary`)
    person: Callable[[], PersonFacts]  # what a reply's claims about them are checked against


class ReplyStream:
    """An answer in the making. Items, filters and the prompt are ready on creation; iterating
    yields the reply text as it is released; `answer` is set when the iteration ends (and the
    exchange is stored)."""

    def __init__(self, text: str, context: ChatContext, conversation_id: int | None = None,
                 size: int | None = None) -> None:
        # Undecodable bytes from a terminal arrive as lone surrogates, which SQLite cannot store: shown as U+FFFD.
        text = (text or "").encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        self.request = " ".join(text.split())
        if not self.request:
            raise ChatError("ask something: `ownrec ask \"a funny film from the 80s\"`")
        started = time.perf_counter()
        self.settings = settings = context.settings
        self.conversations = Conversations(context.store)
        earlier: list = []
        if conversation_id is not None:
            self.conversations.get(conversation_id)  # a clear error before any work
            earlier = self.conversations.messages(conversation_id, last=LOOK_BACK_MESSAGES)
        self.conversation_id = conversation_id
        index, vocabulary = catalog_views(context.store)
        named = index.mentions(self.request)
        self.kind = classify(self.request, vocabulary, names_title=any(len(key.split()) > 1 for _, key, _ in named),
                             continuing=bool(earlier))
        self.stats: dict[str, Any] = {"kind": self.kind.kind}
        self.filters, self.relaxed, self.notes = Filters(), [], []
        self.understanding: dict[str, Any] = {}
        self.items: list["Recommendation"] = []
        self.prepared: str | None = None  # a reply built from the person's data: no language model needed
        self.answer: Answer | None = None
        self._iterator: Iterator[str] | None = None
        self._stop = threading.Event()
        previous_request, previous_items = _previous(earlier)
        if self.kind.kind != "recommend":
            self.llm = None
            self.prepared, self.items = answer_from_data(self.kind, named, previous_items, context)
            self.stats["prepare_seconds"] = round(time.perf_counter() - started, 3)
            return
        self.llm = context.llm()  # LLMUnavailable, with its fix, before anything else happens
        self.stats.update({"model": self.llm.model_id, "threads": self.llm.threads})
        if not context.llm_loaded:
            self.stats["load_seconds"] = round(self.llm.load_seconds, 3)
            self.stats["verification"] = self.llm.verification
        mark = time.perf_counter()
        filters, self.understanding = understand(self.request, vocabulary, self.llm, mode=settings.understand)
        previous_filters = (previous_request or {}).get("meta", {}).get("filters")
        self.filters, self.notes = refine(filters, self.kind, previous_filters,
                                          [i.get("year") for i in previous_items], vocabulary)
        refined = previous_request["meta"].get("query", previous_request["text"]) \
            if self.kind.refines and previous_request else None
        self.query = ranking_query(self.request, refined)
        self.stats["understand_seconds"] = round(time.perf_counter() - mark, 3)
        mark = time.perf_counter()
        self.size = int(size or settings.shortlist)
        leave_out = {int(i["id"]) for i in previous_items} if self.kind.refines else set()
        recommend = _without(context.recommend, leave_out, _anchors(self.request, named))
        self.items, self.relaxed = shortlist(self.query, self.filters, recommend, self.size)
        self.stats["rank_seconds"] = round(time.perf_counter() - mark, 3)
        mark = time.perf_counter()
        self.traits = strongest_traits(context.traits)
        history = [{"role": m.role, "content": m.text}  # not a reply cut off before it said anything
                   for m in earlier[-HISTORY_MESSAGES:] if m.text.strip()]
        self.messages = build_messages(self.request, self.items, history)
        because = list({r.because.id: r.because for r in self.items if r.because is not None}.values())
        words = [self.request, *vocabulary.genres, *self.filters.mood, *(m["content"] for m in history
                                                                          if m["role"] == "user")]
        words += context.trait_words
        claims = Claims(genres_of={r.item.id: r.item.metadata.get("genres", []) or [] for r in self.items},
                        catalog_genres=vocabulary.genres, asked_genres=[*self.filters.genres, *self.filters.exclude_genres],
                        person=context.person(), index=index, instructions=SYSTEM_PROMPT,
                        years_of={r.item.id: r.item.year for r in self.items}, request=self.request,
                        asked_years=(self.filters.year_min, self.filters.year_max),
                        figures_of={r.item.id: _public_figures(r) for r in self.items})
        self.grounder = Grounder(self.items, index, vocabulary=words, context=because, claims=claims)
        self.stats["prompt_seconds"] = round(time.perf_counter() - mark, 3)
        self.stats["prepare_seconds"] = round(time.perf_counter() - started, 3)

    def __iter__(self) -> Iterator[str]:
        if self._iterator is None:
            self._iterator = self._saving(self._generate())
        return self._iterator

    def cancel(self) -> None:
        """Stop generating at the next token, from any thread: the iteration ends, and what was released
        stays stored, marked interrupted."""
        self._stop.set()

    def close(self) -> None:
        """Stop here, from the thread that iterates: the request and the reply released so far stay stored,
        marked interrupted (a reply never started is stored empty). Nothing after the reply completed."""
        self.cancel()
        for _ in self:
            pass

    def _saving(self, chunks: Iterator[str]) -> Iterator[str]:
        """`chunks` as they are released, each stored before it is shown, so that a crash keeps what was
        seen; completed by `_store`, else marked interrupted."""
        request_meta = {"kind": self.kind.kind, "filters": self.filters.as_dict(), "understanding": self.understanding}
        if self.kind.kind == "recommend":
            request_meta["query"] = self.query
        message = self.conversations.begin_exchange(self.conversation_id, self.request, request_meta,
                                                    [_item_json(r) for r in self.items])
        self.conversation_id, self.message_id = message.conversation_id, message.id
        try:
            while not self._stop.is_set():
                chunk = next(chunks, None)
                if chunk is None or self._stop.is_set():  # a piece released after a stop is never shown
                    break
                self.conversations.append(message.id, chunk)
                yield chunk
        finally:
            chunks.close()
            if self.answer is None:
                self.conversations.interrupt(message.id, {"relaxed": self.relaxed, "stats": self.stats})

    def _generate(self) -> Iterator[str]:
        settings = self.settings
        started = time.perf_counter()
        shown: list[str] = []  # exactly what was yielded: the stored reply is its concatenation

        def release(text: str) -> str:
            if not shown:
                text = text.lstrip()
            if text:
                if not shown:
                    self.stats["first_release_seconds"] = round(time.perf_counter() - started, 3)
                shown.append(text)
            return text

        if self.prepared is not None or not self.items:  # built from data; or nothing for the model to talk about
            text = release(self.prepared if self.prepared is not None else " ".join([*self.notes, fallback_reply([])]))
            yield text
            self._store(text, [], [], "")
            return
        for note in self.notes:  # what could not be applied, said before the reply
            yield release(note + " ")
        gate = SentenceGate(self.grounder)
        tokens = self.llm.stream_chat(self.messages, max_tokens=settings.max_tokens, temperature=settings.temperature,
                                      seed=settings.seed, repeat_penalty=REPEAT_PENALTY)
        try:
            for token in tokens:
                if self._stop.is_set():
                    break
                text = release(gate.feed(token))
                if text:
                    yield text
                if gate.repeated:
                    self.stats["stopped_repeating"] = True
                    break
        finally:
            tokens.close()
        if self._stop.is_set():  # stopped: nothing more is released, the reply stays interrupted
            return
        self.stats.update(self.llm.last_stats.as_dict())
        text = release(gate.close(cut_off=self.llm.last_stats.finish_reason == "length"))
        if gate.unfinished:
            self.stats["unfinished_dropped"] = True
        if text:
            yield text
        if not shown:
            self.stats["fallback"] = True
            text = release(fallback_reply(self.items))
            yield text
        result = gate.result
        self._store("".join(shown), result.mentioned, result.removed, gate.raw)

    def _store(self, reply: str, mentioned: list[int], removed: list[RemovedSpan], raw: str) -> None:
        """Complete the reply `_saving` began: `reply` is what it appended."""
        message = self.conversations.finish(
            self.message_id, reply, {
                "mentioned": mentioned, "relaxed": self.relaxed, "stats": self.stats,
                # Why sentences were held back, never what they said: a made-up title is not kept.
                "removed": [{"reason": r.reason, "chars": len(r.text)} for r in removed],
                "generated_chars": len(raw),
            })
        self.answer = Answer(message.conversation_id, message.id, self.request, reply, self.items, mentioned, removed,
                             self.filters, self.relaxed, dict(self.stats))


def stream(text: str, context: ChatContext, conversation_id: int | None = None, size: int | None = None
           ) -> ReplyStream:
    """Start answering `text` (continuing `conversation_id` if given); iterate the result for text."""
    return ReplyStream(text, context, conversation_id, size)


def ask(text: str, context: ChatContext, conversation_id: int | None = None, size: int | None = None,
        on_chunk: Callable[[str], None] | None = None) -> Answer:
    """Answer `text` completely; `on_chunk` sees each piece of the reply as it is released."""
    reply = stream(text, context, conversation_id, size)
    try:
        for chunk in reply:
            if on_chunk is not None:
                on_chunk(chunk)
    finally:
        reply.close()  # stopped by an error in on_chunk (or ctrl+c): what was shown stays, interrupted
    assert reply.answer is not None
    return reply.answer


def _public_figures(recommendation) -> list[str]:
    """What a reply may say in numbers about an item: its public count and average rating (as shown, one
    decimal), and the figures of its reason."""
    signals = recommendation.item.signals
    figures = [recommendation.reason]
    if signals.popularity is not None:
        figures.append(str(int(round(signals.popularity))))
    if signals.avg_rating is not None:
        figures.append(f"{signals.avg_rating:.1f}")
    return figures
