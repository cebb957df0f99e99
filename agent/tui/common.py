"""Helpers the screens share: how items are named, and how worker errors reach the user."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from textual.worker import get_current_worker

from agent.core.api import Item

PAST_TENSE = {"like": "liked", "dislike": "disliked", "skip": "skipped"}


def title_with_year(item: Item) -> str:
    return f"{item.display_title} ({item.year})" if item.year else item.display_title


def genres_of(item: Item) -> str:
    genres = item.metadata.get("genres") or []
    return genres if isinstance(genres, str) else ", ".join(genres)


def reported(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For thread workers of a widget or screen: turn any error into an error notification,
    so nothing the core raises can end the app."""

    @wraps(fn)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as error:
            if not get_current_worker().is_cancelled:
                self.app.call_from_thread(self.app.notify, str(error) or type(error).__name__,
                                          title="ownrec", severity="error", markup=False)
            return None

    return wrapper
