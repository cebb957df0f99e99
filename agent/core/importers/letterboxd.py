"""Letterboxd export CSVs (Settings > Import & Export > Export your data).

Reads ratings.csv, diary.csv, watched.csv, reviews.csv and likes/films.csv. Columns used:

- `Date`: when the entry was logged (YYYY-MM-DD); required column.
- `Name`: the film's title; required.
- `Year`: release year; may be empty.
- `Letterboxd URI`: the film's (or diary entry's) link; required column.
- `Rating`: optional, 0.5-5 stars (ratings, diary, reviews).
- `Watched Date`: optional (diary, reviews); preferred over `Date`.

Other columns (Rewatch, Tags, Review) are ignored.

Every row is history. Its film is matched to an existing item by title and year, also trying
the article moved to the other end ("Usual Suspects, The" <-> "The Usual Suspects"), so ratings
land on MovieLens items; otherwise a new item is added with source `letterboxd`, external id the
URI's path (e.g. `29Zc` for https://boxd.it/29Zc), text "Name (Year).", metadata year and url.

Feedback: `rating` with the stars when Rating is set; else `like` for a likes file (a file in a
folder named `likes`, or whose name starts with "likes"); else `open` (watched). Its date is
Watched Date, else Date (midnight UTC).

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
    derive_id,
    item_text,
    parse_csv,
    parse_date,
    parse_rating,
    parse_year,
    require_columns,
)
from agent.core.store import NewItem

COLUMNS = ("Date", "Name", "Year", "Letterboxd URI")


def parse(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    likes = path.parent.name.lower() == "likes" or path.stem.lower().startswith("likes")

    def record(row: dict[str, str]) -> ParsedRow:
        title = row["Name"]
        if not title:
            raise RowError("missing Name")
        year = parse_year(row["Year"])
        rating = parse_rating(row.get("Rating"))
        at = parse_date(row.get("Watched Date")) or parse_date(row["Date"])
        uri = row["Letterboxd URI"]
        kind = "rating" if rating is not None else "like" if likes else "open"
        metadata = {key: value for key, value in (("year", year), ("url", uri)) if value}
        item = NewItem("letterboxd", urlparse(uri).path.strip("/") or uri or derive_id(title, year),
                       title, item_text(title, year), metadata)
        return ParsedRow(item, Feedback(kind, rating, at), match_title=True)

    return parse_csv(path, require_columns(path, "Letterboxd export", COLUMNS), record)
