"""IMDb exports: your ratings (Your Ratings > Export), your watchlist and your lists (Export this list).

UTF-8, or Windows-1252 (latin-1), the encoding IMDb long shipped them in; the report says which it was.
Columns used (IMDb adds and renames others over the years; they are ignored):

Today's export and the old one (until about 2017: `const`, `Title type`, `You rated`, `created` as "Sun Mar
1 00:00:00 2015", `Num. Votes`, `Release Date (month/day/year)`) are both read; column names are matched
case-insensitively.

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
from datetime import datetime, timezone
from pathlib import Path

from agent.core.importers.base import (
    Feedback,
    ImportFailed,
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
from agent.core.importers.reading import csv_header, parse_csv, read_bytes
from agent.core.store import NewItem

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


# The columns this reads, each with the name the old export (until about 2017) gave it.
OLD_NAMES = {"const": "const", "your rating": "you rated", "date rated": "created", "num votes": "num. votes",
             "release date": "release date (month/day/year)"}


def _fields(row: dict[str, str]) -> dict[str, str]:
    """The row under today's column names, lower-cased, whichever export it comes from."""
    fields = {name.lower(): value for name, value in row.items()}
    for name, old in OLD_NAMES.items():
        fields.setdefault(name, fields.get(old, ""))
    return fields


def _date(value: str) -> float | None:
    """ISO 8601, or the old export's "Sun Mar  1 00:00:00 2015"."""
    try:
        return parse_date(value)
    except RowError:
        try:
            moment = datetime.strptime(" ".join(value.split()), "%a %b %d %H:%M:%S %Y")
        except ValueError:
            raise RowError(f"bad date {value!r}: expected 2015-03-01 or Sun Mar 1 00:00:00 2015") from None
        return moment.replace(tzinfo=timezone.utc).timestamp()


def is_imdb(header: list[str]) -> bool:
    return {"const", "title", "title type"} <= {name.strip().lower() for name in header}


def parse(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    watchlist = "watchlist" in path.stem.lower()

    def check(header: list[str]) -> None:
        if not is_imdb(header):
            raise ImportFailed(f"{path}: not an IMDb export file: the header lacks Const, Title or Title Type")

    def record(raw: dict[str, str]) -> ParsedRow:
        row = _fields(raw)
        const, title = row["const"], row["title"]
        if not const:
            raise RowError("missing Const (the IMDb id)")
        if not title:
            raise RowError("missing Title")
        year = parse_year(row.get("year"))
        kind = title_kind(row.get("title type", ""))
        genres = split_labels(row.get("genres") or "")
        metadata = {"kind": kind, "year": year, "genres": genres, "url": row.get("url", ""),
                    "directors": row.get("directors", "")}
        signals = parse_public_signals(row["num votes"], row.get("imdb rating"), row["release date"],
                                       rating_scale=10.0)
        item = NewItem("imdb", const, title, item_text(title, year, genres),
                       {key: value for key, value in metadata.items() if value not in (None, "", [])}, signals)
        rating = parse_rating(row["your rating"])
        at = _date(row["date rated"]) or _date(row.get("created", ""))
        if rating is not None:
            return ParsedRow(item, Feedback("rating", rating, at), match_title=True)
        if watchlist:
            return ParsedRow(item, Feedback("want", None, at), match_title=True)
        return ParsedRow(item, None, match_title=True)

    header = {name.lower() for name in csv_header(read_bytes(path)[:4096].decode("utf-8", errors="replace"))}
    listed = "position" in header and "you rated" not in header  # the old ratings export had a position too
    yield Understood("an IMDb watchlist export" if watchlist else "an IMDb list export" if listed
                     else "an IMDb ratings export", TEN)
    yield from parse_csv(path, check, record, legacy=LEGACY_ENCODING)
