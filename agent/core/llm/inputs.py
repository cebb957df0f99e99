"""What the facade (agent.core.api) gathers and passes to the language model's features: the
llm.* settings as values, and the person's trait readings as the model is told them.

The LLM never reads the traits itself (agent.core.traits is a sibling, not a dependency): the facade
picks the clearest readings with `traits.clearest` and passes them in, so which traits are put forward
is decided in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Leaning(Protocol):
    """One trait reading, as far as the LLM is told it (`agent.core.traits.TraitReading` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> float | None: ...

    @property
    def lean(self) -> float:
        """How far the value is from neutral, 0 to 0.5."""
        ...

    @property
    def leaning_pole(self) -> str:
        """The words of the pole the person leans to."""
        ...


@dataclass(frozen=True)
class LLMSettings:
    """The llm.* settings the chat, the portrait and the reranker use."""

    model: str  # llm.model: the portrait's cache key names it
    max_tokens: int
    temperature: float
    seed: int
    shortlist: int
    understand: str
    rerank_weight: float
    rerank_candidates: int

    @classmethod
    def read(cls, setting: Callable[[str], Any]) -> "LLMSettings":
        """From the settings, `setting` being `Config.get`."""
        return cls(model=str(setting("llm.model")), max_tokens=int(setting("llm.max_tokens")),
                   temperature=float(setting("llm.temperature")), seed=int(setting("llm.seed")),
                   shortlist=int(setting("llm.shortlist")), understand=str(setting("llm.understand")),
                   rerank_weight=float(setting("llm.rerank_weight")),
                   rerank_candidates=int(setting("llm.rerank_candidates")))
