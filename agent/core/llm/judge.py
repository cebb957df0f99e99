"""The one yes/no question the LLM answers about an item: "would this person enjoy it?".

The personal LoRA is trained to answer it (agent.core.lora) and the reranker asks it
(agent.core.llm.rerank), so the prompt lives here, in one place, and both sides render it with
the same function. The answer is read as P("Yes") against P("No") at the first generated token.

The prompt is ChatML (SmolLM2's template) with everything constant for one person first (the
system prompt, the profile, the instruction and the opening of the assistant's turn) and the item
last, so every candidate of one person shares the longest possible prefix: the reranker evaluates
that prefix once, and per candidate only the item's text and a newline (`suffix`), after which the
assistant's next token is the answer. The assistant's turn is opened in the prefix, not after each
item: the closing and opening template tokens would be 5 of every candidate's 21 tokens (MovieLens
titles, years and genres take about 15), and the cost of a rerank is those per-candidate tokens.
So that training sees exactly the tokens the reranker evaluates, every user of this module
tokenizes `prefix` and `suffix` separately and concatenates the ids (`tokens`); the prefix ends in
a newline, where BPE never merges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent.core.llm.inputs import Leaning
from agent.core.ranker.feedback import latest_judgements

if TYPE_CHECKING:
    from agent.core.store import Interaction

SYSTEM = "You predict whether a person will enjoy an item, from what they liked and disliked. Answer Yes or No."
QUESTION = "For each item, write its name, then on the next line Yes if this person would enjoy it or No if not."
YES, NO = "Yes", "No"
LIKED_SHOWN = 8
DISLIKED_SHOWN = 4
TRAITS_SHOWN = 3
ITEM_CHARS = 240  # item text shown; titles and genres come first in ownrec's item text


@dataclass(frozen=True)
class Profile:
    """What the model is told about the person: a few recent likes and dislikes (titles) and
    their strongest visible traits. Plain data, so an evaluation can build one without a store."""

    liked: tuple[str, ...] = ()
    disliked: tuple[str, ...] = ()
    traits: tuple[tuple[str, float], ...] = field(default=())

    def text(self) -> str:
        lines = [f"Liked: {'; '.join(self.liked) if self.liked else 'nothing yet'}."]
        if self.disliked:
            lines.append(f"Disliked: {'; '.join(self.disliked)}.")
        if self.traits:
            lines.append("Taste: " + ", ".join(f"{name} {value:.1f}" for name, value in self.traits) + ".")
        return "\n".join(lines)

    def without(self, title: str, liked_shown: int = LIKED_SHOWN, disliked_shown: int = DISLIKED_SHOWN) -> "Profile":
        """The profile with `title` left out of both lists, each then cut to its usual length:
        an item being judged must not describe itself. Built from a profile made with one more
        entry per list (`profile_of(..., extra=1)`), it equals `profile_of(..., exclude={item})`."""
        return Profile(tuple(t for t in self.liked if t != title)[:liked_shown],
                       tuple(t for t in self.disliked if t != title)[:disliked_shown], self.traits)


def prefix(profile: Profile) -> str:
    """The part of the prompt shared by all of one person's candidates: the system prompt, the
    profile, the instruction, and the start of the assistant's turn."""
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\nThe person.\n{profile.text()}\n\n{QUESTION}<|im_end|>\n"
            f"<|im_start|>assistant\n")


def suffix(item_text: str) -> str:
    """The per-item part: the item's text on one line, ending where the model's answer starts."""
    text = " ".join(item_text.split())
    if len(text) > ITEM_CHARS:
        text = text[:ITEM_CHARS].rsplit(" ", 1)[0] + "…"
    return f"{text}\n"


def prompt(profile: Profile, item_text: str) -> str:
    return prefix(profile) + suffix(item_text)


def tokens(tokenize: Callable[[str], list[int]], profile: Profile, item_text: str) -> tuple[list[int], list[int]]:
    """(prefix ids, suffix ids) with `tokenize` (text -> ids, no BOS): the split both sides use."""
    return tokenize(prefix(profile)), tokenize(suffix(item_text))


def answer(enjoyed: bool) -> str:
    """The training target after the prompt."""
    return YES if enjoyed else NO


def profile_of(interactions: Sequence["Interaction"], title_of: Callable[[int], str], traits: Sequence[Leaning],
               exclude: set[int] | frozenset[int] = frozenset(), extra: int = 0) -> Profile:
    """The person's profile from their own feedback (`interactions`, oldest first): the latest likes and
    dislikes (`judgement`: ratings count by their stars), by title (`title_of(item id)`), skipping
    `exclude` (the item being judged must not describe itself); and `traits`, the clearest visible
    readings (at most TRAITS_SHOWN). `extra` more entries per list let `Profile.without` drop one title
    and keep the usual length."""
    liked: list[str] = []
    disliked: list[str] = []
    for item_id, positive in latest_judgements(interactions).items():
        if positive is None or item_id in exclude:
            continue
        target = liked if positive else disliked
        if len(target) < (LIKED_SHOWN if positive else DISLIKED_SHOWN) + extra:
            target.append(title_of(item_id))
        if len(liked) >= LIKED_SHOWN + extra and len(disliked) >= DISLIKED_SHOWN + extra:
            break
    shown = tuple((r.name, round(r.value, 1)) for r in traits if r.value is not None)
    return Profile(tuple(liked), tuple(disliked), shown)
