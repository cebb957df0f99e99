"""IMDb exports: your ratings (Your Ratings > Export), your watchlist and your lists (Export this list).

UTF-8, or Windows-1252 (latin-1), the encoding IMDb long shipped them in; the report says which it was.
Columns used (IMDb adds and renames others over the years; they are ignored):

- `Const`: required; the title's IMDb id (tt0111161), the item's external id (source `imdb`).
- `Title`: required. `Title Type`: movie, tvSeries, tvEpisode, ... (also written "TV Series"), which
  makes the item a film, a show, an episode or a game, so that it only ever matches items of its kind.
- `Your Rating`: the person's rating, 1-10 (stored as 0.5-5 stars). `Date Rated`, else `Created`: its date.
- `Year`, `Genres` (comma-separated), `URL`, `Directors`; public signals from `IMDb Rating` (IMDb's
  average, 1-10), `Num Votes` and `Release Date`.

A rated row is a rating. An unrated row of the watchlist (a file whose name contains "watchlist") is
`want`; of any other list, catalog only: being on a list says neither watched nor liked. Like
Letterboxd, a title is first matched to an existing item of its kind by title and year.
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
    item_text,
    parse_date,
    parse_public_signals,
    parse_rating,
    parse_year,
    split_labels,
)
from agent.core.importers.reading import csv_header, parse_csv, read_bytes, require_columns
from agent.core.store import NewItem

COLUMNS = ("Const", "Title", "Title Type")
LEGACY_ENCODING = "cp1252"
TEN = Scale(10, "IMDb's 1-10")


def title_kind(title_type: str) -> str:
    kind = title_type.replace(" ", "").lower()
    if "episode" in kind:
        return "episode"
    if "series" in kind or "serie" in kind:
        return "show"
    if "game" in kind:
        return "game"
    return "film"


def parse(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    watchlist = "watchlist" in path.stem.lower()
    def record(row: dict[str, str]) -> ParsedRow:
        const, title = row["Const"], row["Title"]
        if not const:
            raise RowError("missing Const (the IMDb id)")
        if not title:
            raise RowError("missing Title")
        year = parse_year(row.get("Year"))
        kind = title_kind(row.get("Title Type", ""))
        genres = split_labels(row.get("Genres") or "")
        metadata = {"kind": kind, "year": year, "genres": genres, "url": row.get("URL", ""),
                    "directors": row.get("Directors", "")}
        signals = parse_public_signals(row.get("Num Votes"), row.get("IMDb Rating"), row.get("Release Date"),
                                       rating_scale=10.0)
        item = NewItem("imdb", const, title, item_text(title, year, genres),
                       {key: value for key, value in metadata.items() if value not in (None, "", [])}, signals)
        rating = parse_rating(row.get("Your Rating"))
        at = parse_date(row.get("Date Rated")) or parse_date(row.get("Created"))
        if rating is not None:
            return ParsedRow(item, Feedback("rating", rating, at), match_title=True)
        if watchlist:
            return ParsedRow(item, Feedback("want", None, at), match_title=True)
        return ParsedRow(item, None, match_title=True)

    listed = "Position" in csv_header(read_bytes(path)[:4096].decode("utf-8", errors="replace"))
    yield Understood("an IMDb watchlist export" if watchlist else "an IMDb list export" if listed
                     else "an IMDb ratings export", TEN)
    yield from parse_csv(path, require_columns(path, "IMDb export", COLUMNS), record, legacy=LEGACY_ENCODING)
