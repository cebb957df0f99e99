"""Letterboxd export CSVs (Settings > Import & Export > Export your data).

Reads ratings.csv, diary.csv, watched.csv, reviews.csv, likes/films.csv, watchlist.csv and the lists in
lists/*.csv. Columns used:

- `Date`: when the entry was logged (YYYY-MM-DD); required column.
- `Name`: the film's title; required.
- `Year`: release year; may be empty.
- `Letterboxd URI`: the film's (or diary entry's) link; required column (`URL` in a list).
- `Rating`: optional, 0.5-5 stars (ratings, diary, reviews).
- `Watched Date`: optional (diary, reviews); preferred over `Date`.

Other columns (Rewatch, Tags, Review) are ignored.

Every row is a film. It is matched to an existing film by title and year, also trying the article moved
to the other end ("Usual Suspects, The" <-> "The Usual Suspects"), so ratings land on MovieLens items;
otherwise a new item is added with source `letterboxd`, external id the URI's path (e.g. `29Zc` for
https://boxd.it/29Zc), text "Name (Year).", metadata year and url.

What a row is taken as depends on the file: `rating` with the stars when Rating is set; else in a likes
file (a file in a folder named `likes`, or whose name starts with "likes") `like`; in the watchlist
(`watchlist.csv`) `want`, never a watch; in a list (a file that starts "Letterboxd list export") nothing:
the film is added to the catalog only, as being on a list says neither that it was watched nor liked;
else `open` (watched). Its date is Watched Date, else Date (midnight UTC).

A row is reported and skipped when Name is missing or Year, Rating or a date is malformed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from agent.core.importers.base import (
    Feedback,
    Parsed,
    ParsedRow,
    RowError,
    Scale,
    Understood,
    derive_id,
    item_text,
    parse_date,
    parse_rating,
    parse_year,
)
from agent.core.importers.reading import parse_csv, physical_lines, read_bytes, require_columns
from agent.core.store import NewItem

COLUMNS = ("Date", "Name", "Year", "Letterboxd URI")
LIST_MARK = "Letterboxd list export"
LIST_COLUMNS = ("Position", "Name", "Year", "URL")
STARS = Scale(5, "Letterboxd's 0.5-5 stars")


def is_list(head: str) -> bool:
    return head.lstrip("\ufeff").startswith(LIST_MARK)


def _file_kind(path: Path) -> tuple[str, str | None, str]:
    """(what the file is, the feedback kind of its unrated rows, what those rows are taken as)."""
    stem = path.stem.lower()
    if path.parent.name.lower() == "likes" or stem.startswith("likes"):
        return "a Letterboxd likes export", "like", "liked"
    if stem.startswith("watchlist"):
        return "a Letterboxd watchlist export (films you want to watch)", "want", "wanted"
    name = stem if stem in ("ratings", "diary", "watched", "reviews") else "history"
    return f"a Letterboxd {name} export", "open", "watched"


def _list_header_line(path: Path) -> int:
    """How many lines precede a list's film table (its `Position,Name,...` header)."""
    text = read_bytes(path).decode("utf-8-sig", errors="replace")
    for index, line in enumerate(physical_lines(text)):
        if line.startswith("Position,"):
            return index
    return 0


def parse(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    head = read_bytes(path)[:200].decode("utf-8-sig", errors="replace")
    if is_list(head):
        yield from _parse_list(path)
        return
    what, unrated, taken_as = _file_kind(path)
    yield Understood(what, STARS)

    def record(row: dict[str, str]) -> ParsedRow:
        title = row["Name"]
        if not title:
            raise RowError("missing Name")
        year = parse_year(row["Year"])
        rating = parse_rating(row.get("Rating"))
        at = parse_date(row.get("Watched Date")) or parse_date(row["Date"])
        uri = row["Letterboxd URI"]
        item = _film(title, year, uri)
        if rating is not None:
            return ParsedRow(item, Feedback("rating", rating, at), match_title=True)
        return ParsedRow(item, Feedback(unrated, None, at), match_title=True, taken_as=taken_as)

    yield from parse_csv(path, require_columns(path, "Letterboxd export", COLUMNS), record)


def _film(title: str, year: int | None, uri: str) -> NewItem:
    metadata = {key: value for key, value in (("year", year), ("url", uri)) if value}
    return NewItem("letterboxd", urlparse(uri).path.strip("/") or uri or derive_id(title, year),
                   title, item_text(title, year), metadata)


def _parse_list(path: Path) -> Iterator[Parsed]:
    yield Understood("a Letterboxd list (its films join the catalog; a list says neither watched nor liked)",
                     STARS)

    def record(row: dict[str, str]) -> ParsedRow:
        title = row["Name"]
        if not title:
            raise RowError("missing Name")
        return ParsedRow(_film(title, parse_year(row["Year"]), row["URL"]), None, match_title=True)

    yield from parse_csv(path, require_columns(path, "Letterboxd list", LIST_COLUMNS), record,
                         skip_lines=_list_header_line(path))
