"""Inferred personality and taste traits the person can inspect and edit (README, "Your traits")."""

from agent.core.traits.axes import REACHABLE, TraitSpace
from agent.core.traits.book import NUDGE, Evidence, TraitEdit, TraitError, TraitReading, Traits, clearest
from agent.core.traits.catalog import TraitDef, TraitProblem, load_traits, parse_traits

__all__ = ["NUDGE", "REACHABLE", "Evidence", "TraitDef", "TraitEdit", "TraitError", "TraitProblem", "TraitReading", "TraitSpace",
           "Traits", "clearest", "load_traits", "parse_traits"]
