"""Public ratings files: who (anonymous ids) interacted with which catalog item, to build a public prior.

Not the person's own history: nothing here is stored as feedback. The rows only say which items people
in some public dataset chose, and `ownrec prior build FILE` learns release 0 from them
(agent.core.sync.prior).

CSV (UTF-8, a header on line 1) or JSONL (one object per line; by the file's extension, `.jsonl` or
`.ndjson`), the history format's columns plus the person:

- `user`: required; any id of the person in that dataset (never shown, never stored).
- `item`: the catalog item as `source:external_id` (what `ownrec recommend --json` calls `ref`); or
  `id` with `source` (the same two parts); one of them is required.
- `at`: optional, when the person made it (ISO 8601 or unix seconds). It gives each person's order, from
  which ownrec learns what people went on to like (agent.core.ranker.co_liked); when a row has none, the
  file's order is each person's order.
- `rating`, `feedback`: optional and ignored: every row counts as one interaction (implicit feedback), as
  the demo's MovieLens ratings do.

A row without a user or an item is reported with its line and skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.core.importers.base import ImportFailed, ImportProblem, RowError, Understood, parse_date
from agent.core.importers.reading import parse_csv as drive_csv
from agent.core.importers.reading import parse_jsonl as drive_jsonl
from agent.core.importers.demo import SOURCE as DEMO_SOURCE
from agent.core.importers.demo import movielens_ratings

Interaction = tuple[str, str]  # (person id in the dataset, item ref)


def _field(record: dict[str, Any], name: str) -> str:
    for key, value in record.items():
        if str(key).strip().lower() == name and value is not None:
            return str(value).strip()
    return ""


def _interaction(record: dict[str, Any]) -> tuple[Interaction, float | None]:
    user = _field(record, "user")
    if not user:
        raise RowError("missing user")
    item = _field(record, "item")
    if not item:
        source, external = _field(record, "source"), _field(record, "id")
        if not (source and external):
            raise RowError("missing item: give `item` as source:external_id, or `source` and `id`")
        item = f"{source}:{external}"
    return (user, item), parse_date(_field(record, "at") or None)


def read_public_ratings(path: Path) -> tuple[list[Interaction], list[ImportProblem]]:
    """The file's interactions, in the order they were made where every row says when (`at`), else in the
    file's order, and the problems of the rows that were skipped."""
    path = Path(path)
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    rows: list[tuple[Interaction, float | None]] = []
    problems: list[ImportProblem] = []
    entries: Iterator[Any]
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        entries = drive_jsonl(path, _interaction)
    else:
        def check(header: list[str]) -> None:
            names = {column.strip().lower() for column in header}
            if "user" not in names or not ({"item"} <= names or {"source", "id"} <= names):
                raise ImportFailed(f"{path}: a public ratings file needs a `user` column and `item` (or `source` "
                                   "and `id`) in its header (line 1)")
        entries = drive_csv(path, check, _interaction)
    for entry in entries:
        if isinstance(entry, Understood):
            continue
        (problems if isinstance(entry, ImportProblem) else rows).append(entry)
    if rows and all(at is not None for _, at in rows):
        rows.sort(key=lambda row: row[1])  # stable: ties keep the file's order
    return [interaction for interaction, _ in rows], problems


def demo_public_ratings() -> list[Interaction]:
    """The public MovieLens-100K ratings as interactions with the demo catalog's films, in the order they
    were made."""
    ratings = sorted(movielens_ratings(), key=lambda rating: rating[3])
    return [(str(user), f"{DEMO_SOURCE}:{item}") for user, item, _, _ in ratings]
