"""Trakt and Simkl exports (JSON), films and shows with their ratings, watches and watchlists.

Trakt's export is one JSON array per file (ratings-movies.json, watched-shows.json, watchlist-movies.json,
history.json, ...). Each record names its title under `movie`, `show` or `episode` (with `title`, `year`
and `ids`: `trakt`, `slug`, `imdb`, `tmdb`, ...), plus what it records:

- `rating` (1-10, with `rated_at`): a rating;
- `listed_at` (a watchlist), or any record of a file whose name contains "watchlist": `want`;
- `watched_at`, `last_watched_at` or `plays`: watched (`open`);
- anything else (a collection): catalog only.

Simkl's backup is one JSON object whose `movies`, `shows` and `anime` arrays hold records with the title
under `movie` or `show`, a `status` and a `user_rating` (1-10): a rating when rated; else `plantowatch`
is `want`, `dropped` a `skip`, and `completed`, `watching` or `hold` watched (`open`); the date is
`last_watched_at`, else `added_to_watchlist_at`. Its CSV backup (Settings > Download backup, CSV) has the
columns `SIMKL_ID, Title, Type, Year, Watchlist, LastEpWatched, WatchedDate, Rating, Memo, TVDB, TMDB,
IMDB`: `Watchlist` is the status, `Type` movie, tv or anime, `WatchedDate` ISO or DD-MM-YYYY [HH:MM:SS].

Items have source `trakt` or `simkl`, external id `<kind>/<id>` from the service's own id (else IMDb's,
else the slug), kind film, show or episode, so that they only match items of their own kind. Ratings are
on the services' 1-10 scale. A record without a title is reported with its line and skipped; a file
that is not JSON fails as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.core.importers.base import (
    Feedback,
    ImportFailed,
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
from agent.core.importers.reading import decode, drive, json_array, parse_csv, read_bytes, require_columns
from agent.core.store import NewItem

KINDS = {"movie": "film", "show": "show", "anime": "show", "episode": "episode", "season": "season"}
SIMKL_LISTS = ("movies", "shows", "anime")
SIMKL_STATUS = {"plantowatch": ("want", "wanted"), "dropped": ("skip", "dropped"),
                "completed": ("open", "watched"), "watching": ("open", "watching"), "hold": ("open", "on hold")}


def _media(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(trakt type, the title's object) of a record."""
    wanted = record.get("type")
    for name in ([wanted] if wanted in KINDS else []) + ["episode", "movie", "show", "season"]:
        media = record.get(name)
        if isinstance(media, dict):
            return name, media
    raise RowError("no movie, show or episode in this record")


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else "" if value is None else str(value)


def _item(service: str, kind_name: str, media: dict[str, Any], record: dict[str, Any]) -> NewItem:
    title = _text(media.get("title"))
    show = record.get("show") if isinstance(record.get("show"), dict) else {}
    if kind_name == "episode":
        season, number = media.get("season"), media.get("number")
        where = f"S{season:02d}E{number:02d}" if isinstance(season, int) and isinstance(number, int) else ""
        title = " ".join(part for part in (_text(show.get("title")), where, title) if part)
    if not title:
        raise RowError("missing title")
    year = parse_year(media.get("year") if media.get("year") is not None else show.get("year"))
    ids = media.get("ids") if isinstance(media.get("ids"), dict) else {}
    own = ids.get(service) or ids.get("imdb") or ids.get("slug")
    external = f"{kind_name}/{_text(own)}" if own not in (None, "") else derive_id(f"{kind_name} {title}", year)
    metadata = {"kind": KINDS[kind_name], "year": year,
                "imdb": _text(ids.get("imdb")), "tmdb": _text(ids.get("tmdb"))}
    return NewItem(service, external, title, item_text(title, year),
                   {key: value for key, value in metadata.items() if value not in (None, "")})


def trakt_record(record: Any, watchlist: bool) -> ParsedRow:
    if not isinstance(record, dict):
        raise RowError(f"expected a JSON object, got {type(record).__name__}")
    kind_name, media = _media(record)
    item = _item("trakt", kind_name, media, record)
    rating = parse_rating(record.get("rating"))
    if rating is not None:
        return ParsedRow(item, Feedback("rating", rating, parse_date(record.get("rated_at"))), match_title=True)
    if watchlist or "listed_at" in record:
        return ParsedRow(item, Feedback("want", None, parse_date(record.get("listed_at"))), match_title=True)
    watched = record.get("watched_at") or record.get("last_watched_at")
    if watched or record.get("plays"):
        return ParsedRow(item, Feedback("open", None, parse_date(watched)), match_title=True, taken_as="watched")
    return ParsedRow(item, None, match_title=True)


def parse_trakt(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    text, _ = decode(path, read_bytes(path))
    watchlist = "watchlist" in path.stem.lower()
    yield Understood("a Trakt export" + (" (a watchlist: films and shows you want to watch)" if watchlist else ""),
                     Scale(10, "Trakt's 1-10"))
    yield from drive(path, json_array(path, text), lambda record: trakt_record(record, watchlist))


def simkl_record(record: Any, list_name: str) -> ParsedRow:
    if not isinstance(record, dict):
        raise RowError(f"expected a JSON object, got {type(record).__name__}")
    kind_name, media = _media(record)
    if list_name == "anime":
        kind_name = "anime"
    item = _item("simkl", kind_name, media, record)
    at = parse_date(record.get("last_watched_at")) or parse_date(record.get("added_to_watchlist_at"))
    rating = parse_rating(record.get("user_rating"))
    if rating is not None:
        return ParsedRow(item, Feedback("rating", rating, at), match_title=True)
    status = _text(record.get("status")).lower()
    if status not in SIMKL_STATUS:
        raise RowError(f"unknown status {status!r}: expected one of {', '.join(SIMKL_STATUS)}")
    kind, taken_as = SIMKL_STATUS[status]
    return ParsedRow(item, Feedback(kind, None, at), match_title=True, taken_as=taken_as)


SIMKL_COLUMNS = ("SIMKL_ID", "Title", "Type", "Watchlist")
SIMKL_TYPES = {"movie": "movie", "tv": "show", "tv show": "show", "show": "show", "anime": "anime"}


def _simkl_date(value: str) -> float | None:
    try:
        return parse_date(value)
    except RowError:
        for layout in ("%d-%m-%Y %H:%M:%S", "%d-%m-%Y"):
            try:
                return datetime.strptime(value.strip(), layout).replace(tzinfo=timezone.utc).timestamp()
            except ValueError:
                continue
        raise


def simkl_row(row: dict[str, str]) -> ParsedRow:
    kind_name = SIMKL_TYPES.get(row["Type"].strip().lower())
    if kind_name is None:
        raise RowError(f"unknown Type {row['Type']!r}: expected movie, tv or anime")
    media = {"title": row["Title"], "year": row.get("Year") or None,
             "ids": {"simkl": row["SIMKL_ID"], "imdb": row.get("IMDB", ""), "tmdb": row.get("TMDB", "")}}
    record = {"status": row["Watchlist"], "user_rating": row.get("Rating") or None,
              "last_watched_at": _simkl_date(row.get("WatchedDate", "")), "show" if kind_name != "movie" else "movie": media}
    return simkl_record(record, "anime" if kind_name == "anime" else kind_name + "s")


def parse_simkl(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    text, _ = decode(path, read_bytes(path))
    if not text.lstrip("\ufeff \t\r\n").startswith("{"):
        yield Understood("a Simkl CSV backup", Scale(10, "Simkl's 1-10"))
        yield from parse_csv(path, require_columns(path, "Simkl backup", SIMKL_COLUMNS), simkl_row)
        return
    yield Understood("a Simkl backup", Scale(10, "Simkl's 1-10"))
    found = False
    for list_name in SIMKL_LISTS:
        # The arrays are read where they stand, so that each record's problem names its line.
        for match in re.finditer(rf'"{list_name}"\s*:\s*(?=\[)', text):
            found = True
            yield from drive(path, json_array(path, text, match.end()),
                             lambda record, name=list_name: simkl_record(record, name))
    if not found:
        raise ImportFailed(f"{path}: not a Simkl backup: it has no movies, shows or anime list")
