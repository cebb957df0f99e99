"""Importers: catalogs and histories from files into the store.

Formats: generic CSV and JSONL (`csv_jsonl.py`), Letterboxd (`letterboxd.py`), Goodreads (`goodreads.py`),
IMDb (`imdb.py`), Trakt and Simkl (`trakt.py`), RSS and Atom (`feeds.py`), OPML subscription lists
(`opml.py`), and the MovieLens demo catalog (`demo.py`). Each module's docstring documents its fields.

Every import says what it took the file for, what it took each row as and the scale it read ratings on;
it writes the file's good rows in one transaction (all of them or, on a failure while writing, none),
reports malformed rows with file and line and skips them, and is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from agent.core.importers import csv_jsonl, feeds, goodreads, imdb, letterboxd, opml, trakt
from agent.core.importers.base import SCALES, ImportFailed, ImportProblem, ImportReport, Parsed, Scale
from agent.core.importers.demo import import_demo, movielens_ratings, movielens_users
from agent.core.importers.reading import csv_header
from agent.core.importers.writing import apply_rows, scan_scale
from agent.core.store import Store

PARSERS: dict[str, Callable[[Path], Iterator[Parsed]]] = {
    "csv": csv_jsonl.parse_csv,
    "jsonl": csv_jsonl.parse_jsonl,
    "letterboxd": letterboxd.parse,
    "goodreads": goodreads.parse,
    "imdb": imdb.parse,
    "trakt": trakt.parse_trakt,
    "simkl": trakt.parse_simkl,
    "rss": feeds.parse,  # Atom too
    "opml": opml.parse,
}
FORMATS = tuple(PARSERS)
# The formats whose ratings have no scale of their own: it is read from the ratings, in a first pass.
SCALE_FROM_RATINGS = ("csv", "jsonl")

__all__ = [
    "FORMATS", "SCALES", "ImportFailed", "ImportProblem", "ImportReport", "detect_format", "import_demo",
    "import_file", "movielens_ratings", "movielens_users",
]


def _csv_format(head: str) -> str | None:
    if letterboxd.is_list(head):
        return "letterboxd"
    columns = set(csv_header(head))
    for name, required in (("letterboxd", letterboxd.COLUMNS), ("goodreads", goodreads.COLUMNS),
                           ("simkl", trakt.SIMKL_COLUMNS)):
        if set(required) <= columns:
            return name
    if imdb.is_imdb(list(columns)):
        return "imdb"
    if "title" in {column.lower() for column in columns}:
        return "csv"
    return None


def _existing_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ImportFailed(f"{path}: is a directory; import its files one by one")
    if not path.is_file():
        raise ImportFailed(f"{path}: no such file")
    return path


def _markup(head: str) -> str | None:
    if "<opml" in head:
        return "opml"
    if any(mark in head for mark in ("<rss", "<feed", "<rdf:RDF", "<RDF")):
        return "rss"
    return None


def _json(head: str) -> str | None:
    start = head.lstrip("\ufeff \t\r\n")[:1]
    if start == "[":
        return "trakt"
    if start == "{":
        return "simkl" if any(f'"{name}"' in head for name in trakt.SIMKL_LISTS) else "jsonl"
    return None


def detect_format(path: Path) -> str:
    """The format of `path`, from its extension and its first bytes."""
    path = _existing_file(path)
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8192)
    except OSError as error:
        raise ImportFailed(f"{path}: can't read it ({error.strerror or error})") from None
    head = raw.replace(b"\x00", b"").decode("utf-8-sig", errors="replace")
    if suffix == ".opml":
        return "opml"
    if suffix in (".xml", ".rss", ".atom"):
        return _markup(head) or "rss"  # the feed parser names what it found instead
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        found = _json(head)
        if found:
            return found
        raise ImportFailed(f"{path}: a .json file that is neither a Trakt export (an array) nor a Simkl backup "
                           "(an object with movies, shows or anime); pass --format")
    if suffix == ".csv":
        return _csv_format(head) or "csv"  # the CSV parser names what is missing
    start = head.lstrip(" \t\r\n\ufeff")[:1]
    if start == "<":
        found = _markup(head)
    elif start in ("[", "{"):
        found = _json(head)
    else:
        found = _csv_format(head) if start else None
    if found:
        return found
    raise ImportFailed(f"{path}: can't tell its format; pass --format (one of {', '.join(FORMATS)})")


def import_file(store: Store, path: Path, format: str | None = None, scale: int | None = None) -> ImportReport:
    """Import one file; `format` defaults to `detect_format(path)`, and `scale` (5, 10 or 100: what the best
    rating is) to the one the format fixes or the ratings show."""
    path = _existing_file(path)
    if format is None:
        format = detect_format(path)
    if format not in PARSERS:
        raise ImportFailed(f"{path}: unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if scale is not None and scale not in SCALES:
        raise ImportFailed(f"--scale {scale}: use one of {', '.join(map(str, SCALES))} (the best rating)")
    parse = PARSERS[format]
    read_on = Scale(scale, "given with --scale") if scale is not None else None
    if read_on is None and format in SCALE_FROM_RATINGS:
        read_on = scan_scale(parse(path))
    return apply_rows(store, path, format, parse(path), scale=read_on)
