"""The facade's part for the chat LLM: loading it (with the personal LoRA), the chat and its conversations,
and what the language model is told of the person (the judge's profile, the portrait); a part of the facade
which `Agent` (agent.core.api) is built from: the state it uses (`store`, `config`, `home`, `_lock`, the
ranker's state) is the agent's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.core.llm.chat import Answer, ReplyStream
from agent.core.llm.portrait import Portrait
from agent.core.ranker import Recommendation
from agent.core.store import Conversation, Conversations, Message, UnknownItem
from agent.core.traits import clearest

if TYPE_CHECKING:
    from agent.core.llm import LLM
    from agent.core.llm.chat import ChatContext
    from agent.core.llm.judge import Profile


class LanguageModelPart:
    @property
    def llm(self) -> "LLM":
        """The chat LLM, loaded on first use from the llm.* settings (raises LLMUnavailable with
        the fix). Nothing else needs it: ranking, feedback and traits work without it."""
        from agent.core.llm import load_llm

        with self._lock:
            if self._llm is None:
                llm = self._given_llm or load_llm(self.config)
                self._use_personal_lora(llm)  # nobody else holds this model yet
                self._llm = llm
            return self._llm

    @property
    def llm_loaded(self) -> bool:
        """Whether the chat LLM is in memory (the first request loads it). Never waits for the lock (one
        reference is read): the TUI asks from its own thread while a worker may be loading the model."""
        return self._llm is not None

    def apply_llm_adapter(self) -> None:
        """Make a loaded LLM use the personal LoRA as its versions and switch now say (after a
        training, `ownrec lora on|off|reset`); an unloaded one picks it up when it loads. The
        swap waits for a generation in progress (LLM.lock), outside the agent's lock."""
        with self._lock:
            llm = self._llm
        if llm is not None:
            self._use_personal_lora(llm)

    def _use_personal_lora(self, llm: "LLM") -> None:
        """The active, intact personal LoRA for this base, or none: a refused adapter is logged
        and the base model works on alone (agent.core.lora.versions)."""
        from agent.core.llm.adapter import AdapterRefused
        from agent.core.lora.versions import active_adapter

        with self._lock:
            active = active_adapter(self.store, self.home, llm.base_description())
        if active is None:
            llm.clear_adapter()
            return
        if llm.adapter is not None and llm.adapter.path == active.path:
            return
        try:
            llm.set_adapter(active.path)
        except AdapterRefused as error:
            llm.clear_adapter()
            with self._lock:
                self.store.log_event("llm_lora_refused", {"version": active.version, "problem": str(error)})

    def ask(self, text: str, conversation_id: int | None = None, size: int | None = None,
            on_chunk: Callable[[str], None] | None = None) -> Answer:
        """Answer a request from the person's own ranking, in words, completely (`stream`); `on_chunk`
        sees each piece of the reply as it is released."""
        from agent.core.llm.chat import ask

        return ask(text, self._chat_context(), conversation_id, size, on_chunk)

    def stream(self, text: str, conversation_id: int | None = None, size: int | None = None) -> ReplyStream:
        """Start answering a request (continuing `conversation_id`): the ranker's shortlist and the filters
        are ready at once, iterating yields the reply as each sentence passes the grounding check, and
        `answer` is set (the exchange stored) when the iteration ends. ChatError for an empty request and
        ConversationNotFound before the model loads; LLMUnavailable (with its fix) before the ranker runs."""
        from agent.core.llm.chat import stream

        return stream(text, self._chat_context(), conversation_id, size)

    def shortlist(self, text: str, size: int | None = None) -> list[Recommendation]:
        """The items `stream` would show for `text` (`llm.shortlist` of them unless `size`), made without
        the language model: filters from keywords only. What the chat shows when the model is unavailable."""
        from agent.core.llm.chat import keyword_shortlist

        return keyword_shortlist(text, self.store, self._ranker_answer, int(size or self.config.get("llm.shortlist")))

    def _ranker_answer(self, request: str, count: int) -> list[Recommendation]:
        """The ranker's answer to a request; an empty one (it asked only against things: "nothing scary") is
        the feed, and the filters do the rest."""
        return self.recommend(count, query=request or None)

    def _chat_context(self) -> "ChatContext":
        from agent.core.llm.chat import TRAITS_SHOWN, ChatContext
        from agent.core.llm.inputs import LLMSettings

        return ChatContext(self.store, llm=lambda: self.llm, llm_loaded=self.llm_loaded, recommend=self._ranker_answer,
                           traits=clearest(self.traits.readings(), TRAITS_SHOWN), trait_words=self._trait_words(),
                           settings=LLMSettings.read(self.config.get), standing=self.standing,
                           summary=self.taste_summary, person=self.person_facts)

    def _trait_words(self) -> list[str]:
        """The traits' names and pole words: a reply or a portrait may use them, they name no title."""
        return [word for trait in self.traits.definitions for word in (trait.name, *trait.high, *trait.low)]

    def conversations(self) -> list[Conversation]:
        """Every conversation, most recently updated first (without their messages)."""
        return Conversations(self.store).list()

    def conversation(self, conversation_id: int) -> Conversation:
        """One conversation with its messages (ConversationNotFound)."""
        return Conversations(self.store).get(conversation_id)

    def reply_items(self, message: Message) -> list[Recommendation]:
        """The items a stored reply listed, as the catalog has them now, with the score and reason shown then;
        items no longer in the catalog are left out. What a reopened conversation shows beside it."""
        found = []
        for entry in message.items:
            try:
                item = self.store.item(int(entry["id"]))
            except (UnknownItem, KeyError, TypeError, ValueError):
                continue
            found.append(Recommendation(item, float(entry.get("score") or 0.0), str(entry.get("reason") or ""),
                                        False, None))
        return found

    def delete_conversation(self, conversation_id: int) -> None:
        Conversations(self.store).delete(conversation_id)

    def delete_conversations(self) -> int:
        """Delete every conversation; how many there were."""
        return Conversations(self.store).delete_all()

    def judge_profile(self, exclude: set[int] | frozenset[int] = frozenset(), extra: int = 0) -> "Profile":
        """The person as the language model's yes/no judge sees them (the reranker asks it, the personal
        LoRA learns to answer it): the latest likes and dislikes by title, leaving out `exclude`, with
        `extra` more titles per list, and the clearest visible traits."""
        from agent.core.llm import judge

        return judge.profile_of(self.store.interactions(), lambda item_id: self.store.item(item_id).display_title,
                                clearest(self.traits.readings(), judge.TRAITS_SHOWN), exclude, extra)

    def cached_portrait(self) -> Portrait | None:
        """The portrait of the person's taste already written for the current readings, if any (no model
        needed)."""
        from agent.core.llm import portrait

        return portrait.cached_portrait(self.store, self._portrait_facts(), str(self.config.get("llm.model")))

    def write_portrait(self) -> Portrait:
        """A few sentences about the person's taste, written by the language model from the clearest
        readings (cached per set of readings; LLMUnavailable when one must be written without a model)."""
        from agent.core.llm import portrait
        from agent.core.llm.inputs import LLMSettings

        return portrait.write_portrait(self.store, self._portrait_facts(), llm=lambda: self.llm,
                                       settings=LLMSettings.read(self.config.get), trait_words=self._trait_words())

    def _portrait_facts(self) -> list[str]:
        from agent.core.llm import portrait

        return portrait.portrait_facts(clearest(self.traits.readings(), portrait.FACTS_SHOWN, portrait.MIN_LEAN))

    def _judge_profile_without(self, excluded: frozenset[int]) -> "Profile":
        return self.judge_profile(exclude=excluded)
