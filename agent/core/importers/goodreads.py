"""Goodreads library export CSV (My Books > Import and export > Export Library).

Columns used (the export has more; they are ignored):

- `Book Id`: required; the item's external id (source `goodreads`).
- `Title`: required; kept as is, series suffix included ("Catching Fire (The Hunger Games, #2)").
- `Author`: optional.
- `ISBN13` (else `ISBN`): optional; the export's `="..."` quoting is removed.
- `My Rating`: 0-5 whole stars; 0 means not rated.
- `Original Publication Year`, else `Year Published`: the year.
- `Date Read`, else `Date Added`: the feedback date (YYYY/MM/DD, midnight UTC).
- `Exclusive Shelf`: read, currently-reading, to-read or a custom shelf.

Items are books: text "Title by Author (year).", metadata author, year, isbn and url
(https://www.goodreads.com/book/show/<Book Id>); the public signals take `Average Rating`, Goodreads'
average over all its readers (not the person's own rating). Like Letterboxd, a book is first matched to an
existing item by title and year; otherwise it is added.

Feedback: `rating` when My Rating > 0 (on Goodreads' 1-5 stars); else `want` on the to-read shelf
(wanting to read a book is neither reading nor liking it); else `open` (read, currently reading, or a
custom shelf), reported as read, reading or shelved.

A row is reported and skipped when Book Id or Title is missing, or My Rating, a year or a date
is malformed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from agent.core.importers.base import (
    Feedback,
    Parsed,
    ParsedRow,
    RowError,
    Scale,
    Understood,
    parse_date,
    parse_public_signals,
    parse_year,
    sentence,
)
from agent.core.importers.reading import parse_csv, require_columns
from agent.core.store import NewItem

COLUMNS = ("Book Id", "Title", "Author", "My Rating", "Exclusive Shelf")


def _isbn(value: str) -> str:
    return value.removeprefix("=").strip('"')


def _stars(value: str) -> int:
    if not value:
        return 0
    if not value.isdigit() or int(value) > 5:
        raise RowError(f"My Rating {value!r} is not 0-5 stars")
    return int(value)


def parse(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    yield Understood("a Goodreads library export (books)", Scale(5, "Goodreads' 1-5 stars"))

    def record(row: dict[str, str]) -> ParsedRow:
        book_id, title, author = row["Book Id"], row["Title"], row["Author"]
        if not book_id:
            raise RowError("missing Book Id")
        if not title:
            raise RowError("missing Title")
        stars = _stars(row["My Rating"])
        year = parse_year(row.get("Original Publication Year")) or parse_year(row.get("Year Published"))
        at = parse_date(row.get("Date Read")) or parse_date(row.get("Date Added"))
        shelf = row["Exclusive Shelf"].lower()

        byline = f"{title} by {author}" if author else title
        metadata = {"author": author, "year": year, "isbn": _isbn(row.get("ISBN13", "")) or _isbn(row.get("ISBN", "")),
                    "url": f"https://www.goodreads.com/book/show/{book_id}"}
        # Goodreads' own average over all its readers (1-5 stars): public, not the person's rating.
        # 0.00 is what it exports for a book nobody has rated yet.
        average = (row.get("Average Rating") or "").strip()
        signals = parse_public_signals(avg_rating=None if average in ("", "0", "0.0", "0.00") else average)
        item = NewItem("goodreads", book_id, title,
                       f"{byline} ({year})." if year is not None else sentence(byline),
                       {key: value for key, value in metadata.items() if value not in (None, "")}, signals)
        if stars:
            return ParsedRow(item, Feedback("rating", float(stars), at), match_title=True)
        if shelf == "to-read":
            return ParsedRow(item, Feedback("want", None, at), match_title=True)
        shelved = {"read": "read", "currently-reading": "reading"}.get(shelf, "shelved")
        return ParsedRow(item, Feedback("open", None, at), match_title=True, taken_as=shelved)

    yield from parse_csv(path, require_columns(path, "Goodreads export", COLUMNS), record)
