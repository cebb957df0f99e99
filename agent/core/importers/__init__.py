"""Importers: catalogs and histories from files into the store.

Formats: generic CSV and JSONL (`csv_jsonl.py`), Letterboxd (`letterboxd.py`), Goodreads
(`goodreads.py`), RSS and Atom (`feeds.py`), and the MovieLens demo catalog (`demo.py`). Each
module's docstring documents its columns. Every import writes the file's good rows in one
transaction, reports malformed rows with file and line, and is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from agent.core.importers import csv_jsonl, feeds, goodreads, letterboxd
from agent.core.importers.base import (
    ImportFailed,
    ImportProblem,
    ImportReport,
    Parsed,
    apply_rows,
    csv_header,
)
from agent.core.importers.demo import import_demo, movielens_ratings, movielens_users
from agent.core.store import Store

FORMATS = ("csv", "jsonl", "letterboxd", "goodreads", "rss")  # rss covers Atom too

PARSERS: dict[str, Callable[[Path], Iterator[Parsed]]] = {
    "csv": csv_jsonl.parse_csv,
    "jsonl": csv_jsonl.parse_jsonl,
    "letterboxd": letterboxd.parse,
    "goodreads": goodreads.parse,
    "rss": feeds.parse,
}

__all__ = [
    "FORMATS", "ImportFailed", "ImportProblem", "ImportReport", "detect_format", "import_demo",
    "import_file", "movielens_ratings", "movielens_users",
]


def _csv_format(header: list[str]) -> str | None:
    columns = set(header)
    if set(letterboxd.COLUMNS) <= columns:
        return "letterboxd"
    if set(goodreads.COLUMNS) <= columns:
        return "goodreads"
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


def detect_format(path: Path) -> str:
    """The format of `path`, from its extension and its first bytes."""
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix in (".xml", ".rss", ".atom"):
        return "rss"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    try:
        with open(path, "rb") as handle:
            head = handle.read(8192).decode("utf-8-sig", errors="replace")
    except OSError as error:
        raise ImportFailed(f"{path}: can't read it ({error.strerror or error})") from None
    if suffix == ".csv":
        return _csv_format(csv_header(head)) or "csv"  # the CSV parser names what is missing
    start = head.lstrip()[:1]
    if start == "<" and any(mark in head for mark in ("<rss", "<feed", "<rdf:RDF")):
        return "rss"
    if start == "{":
        return "jsonl"
    found = _csv_format(csv_header(head)) if start not in ("", "<") else None
    if found:
        return found
    raise ImportFailed(f"{path}: can't tell its format; pass --format (one of {', '.join(FORMATS)})")


def import_file(store: Store, path: Path, format: str | None = None) -> ImportReport:
    """Import one file; `format` defaults to `detect_format(path)`."""
    path = _existing_file(path)
    if format is None:
        format = detect_format(path)
    if format not in PARSERS:
        raise ImportFailed(f"{path}: unknown format {format!r}; use one of {', '.join(FORMATS)}")
    return apply_rows(store, path, format, PARSERS[format](path))
