"""A short portrait of the person's taste, written by the local LLM from the trait numbers.

The direction is one way only: the numbers come from the model (`agent.traits`), the LLM only
phrases them, and nothing it writes flows back into a number. Hidden traits are never shown to
it. A sentence that names a title is dropped (the portrait is about taste, not items), and the
text is cached per set of facts, so it is rewritten only when the readings change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.core.llm.chat import catalog_views
from agent.core.llm.grounding import Grounder
from agent.core.traits.book import clearest

if TYPE_CHECKING:
    from agent.core.api import Agent

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


def portrait_facts(agent: "Agent") -> list[str]:
    """The clearest non-hidden traits, as plain statements with a strength word."""
    facts = []
    for r in clearest(agent.traits.readings(), FACTS_SHOWN, min_lean=MIN_LEAN):
        strength = "strongly" if r.lean > 0.25 else "clearly" if r.lean > 0.12 else "slightly"
        facts.append(f"{strength} prefers {r.leaning_pole}")
    return facts


def _key(agent: "Agent", facts: list[str]) -> str:
    return hashlib.sha256(json.dumps([str(agent.config.get("llm.model")), facts]).encode()).hexdigest()


def cached_portrait(agent: "Agent") -> Portrait | None:
    """The portrait already written for the current readings, if any (no model needed)."""
    facts = portrait_facts(agent)
    saved = agent.store.get_state(STATE_KEY)
    if facts and isinstance(saved, dict) and saved.get("key") == _key(agent, facts):
        return Portrait(saved["text"], facts, True)
    return None


def write_portrait(agent: "Agent") -> Portrait:
    """The portrait for the current readings (raises LLMUnavailable without the model)."""
    facts = portrait_facts(agent)
    if not facts:
        return Portrait("", [], False)
    cached = cached_portrait(agent)
    if cached is not None:
        return cached
    llm = agent.llm
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "Facts measured from their ratings: " + "; ".join(facts)
                 + ".\nDescribe their taste."}]
    config = agent.config
    text = "".join(llm.stream_chat(messages, max_tokens=90, temperature=float(config.get("llm.temperature")),
                                   seed=int(config.get("llm.seed"))))
    index, vocabulary = catalog_views(agent)
    words = [*vocabulary.genres, *facts]
    for trait in agent.traits.definitions:
        words += [trait.name, *trait.high, *trait.low]
    grounder = Grounder([], index, vocabulary=words)
    safe = grounder.ground(_complete_sentences(text)).safe_text.strip()
    agent.store.set_state(STATE_KEY, {"key": _key(agent, facts), "text": safe})
    return Portrait(safe, facts, False)


def _complete_sentences(text: str) -> str:
    """Drop a last sentence cut off by the token limit."""
    text = text.strip()
    end = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
    return text[: end + 1] if end >= 0 else ""
