"""Generic CSV and JSONL: catalogs (items only) and histories (items plus feedback).

CSV: UTF-8 (a BOM is fine), comma-separated, a header on line 1. Column names are matched
case-insensitively. JSONL: one JSON object per line with the same keys; blank lines are skipped.
Problems name the physical line of the file: in CSV the header is line 1 and a row is reported at
the line where it starts (a quoted field may span lines).

Columns / keys:

- `id`: the item's id in its source (external id). Optional: without it the id is derived from
  title and year (stable, so re-importing finds the same item).
- `title`: required.
- `text` or `description`: optional free text about the item.
- `year`: optional whole number.
- `genres`, `tags`: optional; a string separated by `|` (or by `,` when there is no `|`), or in
  JSONL a list of strings.
- `url`: optional.
- `author` or `creator`: optional; stored as metadata `author`.
- `source`: optional; default `csv:<file name>` or `jsonl:<file name>`. Items are keyed by
  (source, id): re-importing updates them in place.
- Public signals, optional (what is public about the item, never the person's own feedback; the ranker
  uses them as a prior whose weight the person's own model learns): `popularity` or `rating_count` (how
  many people rated, read or watched it; a number >= 0), `avg_rating` (the public average rating, 0-5
  stars), `published` (when it came out: an ISO 8601 date, unix seconds or a bare year).
- `kind`: optional; what the item is (film, book, show, ...), stored as metadata `kind`. History
  (Letterboxd, Goodreads, IMDb, ...) is matched only to items of its own kind, so a catalog whose
  items should receive it names their kind.
- `feedback`: optional; one of like, dislike, skip, rating, open, want (on a watchlist: never a like
  or a watch).
- `rating`: optional number above 0, on the file's scale: 0.5-5 stars, out of 10 or out of 100, as
  given with --scale or shown by the ratings (`writing.apply_rows`); stored as 0.5-5 stars. A
  rating without `feedback` means feedback=rating; it is recorded only with feedback rating.
- `at` or `date`: when the feedback happened: ISO 8601 date or datetime (`2024-03-01`,
  `2024-03-01T20:15:00+01:00`; without a zone it is UTC) or unix seconds (a plain number).
  Default: the import time. On a row without feedback, it is kept in metadata as given.

Any other column goes into the item's metadata under its own name (empty CSV cells are left out).
The text the encoder reads is "Title (year). Genres, tags. Description", from what exists.

A row is reported (file and line) and skipped when: the title is missing, the year is not a
whole number, the rating is not a finite number or is outside its scale, feedback is not a known
kind or is `rating` without a rating, the date is not a date (NaN, infinity or past the year 9999
included); in JSONL also when a line is not valid JSON (NaN included), is nested too deeply or is not
a JSON object; in CSV when a row has more fields than the header, a field over 1,000,000
characters, or a quote that never closes (reported at its line; the lines after it are read).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.core.importers.base import (
    Feedback,
    ImportFailed,
    Parsed,
    ParsedRow,
    RowError,
    Understood,
    derive_id,
    item_text,
    parse_date,
    parse_feedback_kind,
    parse_public_signals,
    parse_rating,
    parse_year,
    split_labels,
)
from agent.core.importers.reading import parse_csv as drive_csv
from agent.core.importers.reading import parse_jsonl as drive_jsonl
from agent.core.store import NewItem

KNOWN = {"id", "title", "text", "description", "year", "genres", "tags", "url", "author", "creator",
         "source", "feedback", "rating", "at", "date", "popularity", "rating_count", "avg_rating", "published",
         "kind"}


def parse_csv(path: Path) -> Iterator[Parsed]:
    def check(header: list[str]) -> None:
        if "title" not in {column.lower() for column in header}:
            raise ImportFailed(f"{path}: no title column in the header (line 1); a generic CSV needs "
                               "at least `title` (see the README), or pass --format")

    return itertools.chain([Understood("a generic CSV file (the columns the README lists)")],
                           drive_csv(path, check, lambda record: parse_record(record, f"csv:{Path(path).name}")))


def parse_jsonl(path: Path) -> Iterator[Parsed]:
    default_source = f"jsonl:{Path(path).name}"
    return itertools.chain([Understood("a generic JSONL file (the keys the README lists)")],
                           drive_jsonl(path, lambda record: parse_record(record, default_source)))


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _string(value: Any) -> str:
    return value.strip() if isinstance(value, str) else "" if value is None else str(value)


def parse_record(raw: dict[str, Any], default_source: str) -> ParsedRow:
    record: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).strip()
        if name.lower() in KNOWN:
            record.setdefault(name.lower(), value)
        elif _present(value):
            extras[name] = value

    title = _string(record.get("title"))
    if not title:
        raise RowError("missing title")
    year = parse_year(record.get("year"))
    rating = parse_rating(record.get("rating"))
    kind = parse_feedback_kind(record.get("feedback")) or ("rating" if rating is not None else None)
    if kind == "rating" and rating is None:
        raise RowError("feedback is rating but the rating is missing")
    when = record.get("at") if _present(record.get("at")) else record.get("date")
    signals = parse_public_signals(
        record.get("popularity") if _present(record.get("popularity")) else record.get("rating_count"),
        record.get("avg_rating"), record.get("published"))

    genres = split_labels(record.get("genres")) if _present(record.get("genres")) else []
    tags = split_labels(record.get("tags")) if _present(record.get("tags")) else []
    description = _string(record.get("text")) or _string(record.get("description"))
    metadata: dict[str, Any] = {"year": year, "genres": genres, "tags": tags,
                                "url": _string(record.get("url")),
                                "author": _string(record.get("author")) or _string(record.get("creator")),
                                "kind": _string(record.get("kind")).lower()}
    feedback = None
    if kind is not None:
        feedback = Feedback(kind, rating if kind == "rating" else None, parse_date(when))
    elif _present(when):
        metadata["at" if _present(record.get("at")) else "date"] = when
    metadata = {key: value for key, value in metadata.items() if value not in (None, "", [])} | extras

    item = NewItem(
        source=_string(record.get("source")) or default_source,
        external_id=_string(record.get("id")) or derive_id(title, year),
        title=title,
        text=item_text(title, year, list(dict.fromkeys(genres + tags)), description),
        metadata=metadata,
        signals=signals,
    )
    return ParsedRow(item, feedback)
