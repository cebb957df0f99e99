"""A short portrait of the person's taste, written by the local LLM from the trait numbers.

The direction is one way only: the numbers come from the model (agent.core.traits, whose clearest
readings the facade passes in), the LLM only phrases them, and nothing it writes flows back into a
number. Hidden traits are never shown to it. A sentence that names a title is dropped (the portrait is about taste, not items), and the
text is cached per set of facts, so it is rewritten only when the readings change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.core.llm.chat import catalog_views
from agent.core.llm.grounding import Grounder
from agent.core.llm.inputs import Leaning, LLMSettings

if TYPE_CHECKING:
    from agent.core.llm.model import LLM
    from agent.core.store import Store

FACTS_SHOWN = 4
MIN_LEAN = 0.05  # |value - 0.5| below this says nothing
SYSTEM_PROMPT = (
    "You describe a person's taste in films in two short sentences, using only the facts given. "
    "Do not mention numbers, film titles or people. Write to the person, as 'you'."
)
STATE_KEY = "llm_portrait"


@dataclass(frozen=True)
class Portrait:
    text: str  # empty when there is too little to say
    facts: list[str]  # what the LLM was told, in words
    cached: bool


def portrait_facts(traits: Sequence[Leaning]) -> list[str]:
    """The readings (the clearest visible ones: at most FACTS_SHOWN, leaning at least MIN_LEAN), as plain
    statements with a strength word."""
    facts = []
    for r in traits:
        strength = "strongly" if r.lean > 0.25 else "clearly" if r.lean > 0.12 else "slightly"
        facts.append(f"{strength} prefers {r.leaning_pole}")
    return facts


def _key(model: str, facts: list[str]) -> str:
    return hashlib.sha256(json.dumps([model, facts]).encode()).hexdigest()


def cached_portrait(store: "Store", facts: list[str], model: str) -> Portrait | None:
    """The portrait already written for these facts (`portrait_facts`) with the `llm.model` setting
    `model`, if any (no model needed)."""
    saved = store.get_state(STATE_KEY)
    if facts and isinstance(saved, dict) and saved.get("key") == _key(model, facts):
        return Portrait(saved["text"], facts, True)
    return None


def write_portrait(store: "Store", facts: list[str], *, llm: Callable[[], "LLM"], settings: LLMSettings,
                   trait_words: Sequence[str]) -> Portrait:
    """The portrait for these facts: the cached one, or one written now (`llm()` loads the model:
    LLMUnavailable without it). `trait_words`: the traits' names and pole words, which are no titles."""
    if not facts:
        return Portrait("", [], False)
    cached = cached_portrait(store, facts, settings.model)
    if cached is not None:
        return cached
    model = llm()
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "Facts measured from their ratings: " + "; ".join(facts)
                 + ".\nDescribe their taste."}]
    text = "".join(model.stream_chat(messages, max_tokens=90, temperature=settings.temperature, seed=settings.seed))
    index, vocabulary = catalog_views(store)
    words = [*vocabulary.genres, *facts, *trait_words]
    grounder = Grounder([], index, vocabulary=words)
    safe = grounder.ground(_complete_sentences(text)).safe_text.strip()
    store.set_state(STATE_KEY, {"key": _key(settings.model, facts), "text": safe})
    return Portrait(safe, facts, False)


def _complete_sentences(text: str) -> str:
    """Drop a last sentence cut off by the token limit."""
    text = text.strip()
    end = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
    return text[: end + 1] if end >= 0 else ""
