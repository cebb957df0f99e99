"""What every importer shares: the report and problem types, the field parsers, and `apply_rows`,
the one step that writes a parsed file to the store.

A parser yields, per record, either a `ParsedRow` (an item plus optional feedback) or an
`ImportProblem` (file, line, what is wrong). It raises `ImportFailed` only when the whole file is
unusable. `apply_rows` then writes all good rows of the file in one transaction.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.core.problems import FileProblem
from agent.core.store import FEEDBACK_KINDS, Item, NewItem, PublicSignals, Store, UpsertResult

BATCH = 500


class ImportFailed(ValueError):
    """The whole file is unusable; nothing was written."""


class RowError(ValueError):
    """One record is malformed; it becomes an `ImportProblem` and is skipped."""


ImportProblem = FileProblem  # a malformed row: reported with its file and line, then skipped


@dataclass
class ImportReport:
    path: str
    format: str
    items_added: int = 0
    items_updated: int = 0
    items_unchanged: int = 0
    feedback_added: int = 0
    feedback_duplicates: int = 0
    problems: list[ImportProblem] = field(default_factory=list)

    def summary(self) -> str:
        problems = len(self.problems)
        return (
            f"{self.path} ({self.format}): {self.items_added} items added, {self.items_updated} updated, "
            f"{self.items_unchanged} unchanged; {self.feedback_added} feedback added, "
            f"{self.feedback_duplicates} already present; {problems} problem{'' if problems == 1 else 's'}"
        )


@dataclass(frozen=True)
class Feedback:
    kind: str
    value: float | None = None
    at: float | None = None  # None: undated, recorded at import time


@dataclass(frozen=True)
class ParsedRow:
    item: NewItem
    feedback: Feedback | None = None
    # History imports (Letterboxd, Goodreads) first look for an existing item with the same title
    # and year, so a rating lands on the catalog item the user already has.
    match_title: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.item.source, self.item.external_id)


Parsed = ParsedRow | ImportProblem


# -- writing ---------------------------------------------------------------------------------


def apply_rows(store: Store, path: Path | str, fmt: str, entries: Iterable[Parsed],
               now: float | None = None) -> ImportReport:
    """Write the good rows in one transaction and report the problems.

    Items are upserted by (source, external_id); when a file repeats an id, its last row wins.
    Dated feedback already present with the same (item, kind, at) is a duplicate. Undated feedback
    gets the import time and is a duplicate when the item already has feedback of the same kind
    and value, so re-importing an undated history changes nothing.
    """
    report = ImportReport(str(path), fmt)
    rows: list[ParsedRow] = []
    for entry in entries:  # parse the whole file first: an ImportFailed must leave no writes
        (report.problems if isinstance(entry, ImportProblem) else rows).append(entry)
    with store.transaction():
        ids = _resolve_items(store, rows, report)
        _add_feedback(store, rows, ids, report, time.time() if now is None else now, f"import:{fmt}")
    return report


def _count(report: ImportReport, result: UpsertResult) -> None:
    report.items_added += result.added
    report.items_updated += result.updated
    report.items_unchanged += result.unchanged


def _resolve_items(store: Store, rows: list[ParsedRow], report: ImportReport) -> dict[tuple[str, str], int]:
    ids: dict[tuple[str, str], int] = {}
    counted: set[int] = set()
    catalog: dict[tuple[str, str], NewItem] = {}
    for row in rows:
        if not row.match_title:
            catalog[row.key] = row.item
            continue
        if row.key in ids:
            continue
        # Resolved row by row so that a film logged twice in one diary finds the item added by
        # its first entry.
        found = find_existing(store, row.item.title, row.item.metadata.get("year"))
        if found is not None:
            ids[row.key] = found.id
            if found.id not in counted:
                report.items_unchanged += 1
        else:
            result = store.upsert_items([row.item])
            _count(report, result)
            ids[row.key] = result.item_ids[0]
        counted.add(ids[row.key])
    keys = list(catalog)
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        result = store.upsert_items(catalog[key] for key in chunk)
        _count(report, result)
        ids.update(zip(chunk, result.item_ids))
    return ids


def _add_feedback(store: Store, rows: list[ParsedRow], ids: dict[tuple[str, str], int],
                  report: ImportReport, now: float, origin: str) -> None:
    dated: set[tuple[int, str, float]] = set()
    undated: set[tuple[int, str, float | None]] | None = None
    pending: list[tuple[int, str, float | None, float, str]] = []
    for row in rows:
        feedback = row.feedback
        if feedback is None:
            continue
        item_id = ids[row.key]
        if feedback.at is None:
            if undated is None:
                undated = {(i.item_id, i.kind, i.value) for i in store.interactions()}
            key = (item_id, feedback.kind, feedback.value)
            duplicate = key in undated
            undated.add(key)
            at = now
        else:
            at = feedback.at
            duplicate = (item_id, feedback.kind, at) in dated or store.has_interaction(item_id, feedback.kind, at)
            dated.add((item_id, feedback.kind, at))
        if duplicate:
            report.feedback_duplicates += 1
        else:
            pending.append((item_id, feedback.kind, feedback.value, at, origin))
    for start in range(0, len(pending), BATCH):
        report.feedback_added += store.add_interactions(pending[start : start + BATCH])


# -- titles ----------------------------------------------------------------------------------

ARTICLES = ("The", "A", "An", "Il", "La", "Le", "Les", "L'", "Der", "Die", "Das", "Det", "El", "Los", "Las")
_TRAILING = re.compile(r"^(?P<body>.+), (?P<article>" + "|".join(ARTICLES) + r")(?P<rest> \(.*\))?$")
_LEADING = re.compile(r"^(?P<article>" + "|".join(a if a.endswith("'") else a + " " for a in ARTICLES)
                      + r")(?P<body>.+?)(?P<rest> \(.*\))?$")


def display_title(title: str) -> str:
    """'Usual Suspects, The' -> 'The Usual Suspects' (MovieLens moves articles to the end)."""
    match = _TRAILING.match(title)
    if not match:
        return title
    article = match["article"]
    joiner = "" if article.endswith("'") else " "
    return f"{article}{joiner}{match['body']}{match['rest'] or ''}"


def title_variants(title: str) -> list[str]:
    """The title, plus the form with its article moved to the other end."""
    title = title.strip()
    variants = [title, display_title(title)]
    match = _LEADING.match(title)
    if match:
        variants.append(f"{match['body']}, {match['article'].strip()}{match['rest'] or ''}")
    return list(dict.fromkeys(variants))


def find_existing(store: Store, title: str, year: int | None) -> Item | None:
    for variant in title_variants(title):
        found = store.find_by_title(variant, year)
        if found is not None:
            return found
    return None


def derive_id(title: str, year: int | None) -> str:
    """A stable external id for a record that has none: a slug plus a short hash of title+year."""
    title = title.strip().casefold()
    slug = "-".join("".join(c if c.isalnum() else " " for c in title).split())[:60]
    digest = hashlib.sha1(f"{title}|{year if year is not None else ''}".encode("utf-8")).hexdigest()[:8]
    return "-".join(part for part in (slug, None if year is None else str(year), digest) if part)


def item_text(title: str, year: int | None, labels: Iterable[str] = (), description: str = "") -> str:
    """'Title (year). Label, label. Description' from whatever exists."""
    parts = [f"{title} ({year})." if year is not None else sentence(title)]
    labels = list(labels)
    if labels:
        parts.append(sentence(", ".join(labels)))
    if description.strip():
        parts.append(description.strip())
    return " ".join(parts)


def sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?…" else text + "."


# -- fields ----------------------------------------------------------------------------------


def parse_year(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise RowError(f"bad year {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(f"bad year {value!r}: expected a whole number like 1995") from None
    if not number.is_integer() or abs(number) > 9999:
        raise RowError(f"bad year {value!r}: expected a whole number like 1995")
    return int(number)


def parse_rating(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        rating = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        raise RowError(f"rating {value!r} is not a number") from None
    if not 0.5 <= rating <= 5:
        raise RowError(f"rating {value!r} is out of range: use 0.5 to 5")
    return rating


def parse_date(value: Any) -> float | None:
    """ISO 8601 date or datetime (naive means UTC), YYYY/MM/DD, or unix seconds -> unix time."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    if re.fullmatch(r"\d{4}/\d{1,2}/\d{1,2}", text):
        text = "-".join(part.zfill(2) for part in text.split("/"))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(f"bad date {value!r}: use ISO 8601 (2024-03-01 or 2024-03-01T20:15:00Z) "
                       "or unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _number(value: Any, what: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(str(value).strip().replace(",", "")) if not isinstance(value, (int, float)) else float(value)
    except ValueError:
        raise RowError(f"{what} {value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise RowError(f"{what} {value!r} is not a finite number")
    return number


def parse_public_signals(popularity: Any = None, avg_rating: Any = None, published: Any = None,
                         rating_scale: float = 5.0) -> PublicSignals:
    """The public signals of one row: a count of ratings/readers (>= 0), an average public rating on a
    scale of `rating_scale` (converted to 0-5 stars) and a publication date (`parse_date`, or a bare year)."""
    count = _number(popularity, "popularity")
    if count is not None and count < 0:
        raise RowError(f"popularity {popularity!r} is negative: it counts people")
    rating = _number(avg_rating, "average rating")
    if rating is not None:
        if not 0 <= rating <= rating_scale:
            raise RowError(f"average rating {avg_rating!r} is out of range: use 0 to {rating_scale:g}")
        rating = rating * 5.0 / rating_scale
    when = None
    if published is not None and str(published).strip():
        text = str(published).strip()
        if re.fullmatch(r"\d{4}", text):
            if int(text) < 1:
                raise RowError(f"published {published!r} is not a year")
            when = datetime(int(text), 1, 1, tzinfo=timezone.utc).timestamp()
        else:
            when = parse_date(published)
    try:
        return PublicSignals(count, rating, when)
    except ValueError as error:
        raise RowError(str(error)) from None


def parse_feedback_kind(value: Any) -> str | None:
    if value is None or not str(value).strip():
        return None
    kind = str(value).strip().lower()
    if kind not in FEEDBACK_KINDS:
        raise RowError(f"unknown feedback kind {value!r}: use one of {', '.join(FEEDBACK_KINDS)}")
    return kind


def split_labels(value: Any) -> list[str]:
    """A JSON list, or a string separated by '|' (or by ',' when it has no '|')."""
    if value is None:
        return []
    if isinstance(value, list):
        parts = [str(part) for part in value if part is not None]
    else:
        text = str(value)
        parts = text.split("|") if "|" in text else text.split(",")
    return list(dict.fromkeys(part.strip() for part in parts if part.strip()))


# -- reading ---------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    try:
        # newline="": the csv module must see quoted "\r\n" and "\r" untranslated.
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ImportFailed(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise ImportFailed(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise ImportFailed(f"{path}: can't read it ({error.strerror or error})") from None


def csv_header(text: str) -> list[str]:
    try:
        return [cell.strip() for cell in next(csv.reader(io.StringIO(text)), [])]
    except csv.Error:
        return []


def parse_csv(path: Path, check_header: Callable[[list[str]], None],
              parse_record: Callable[[dict[str, str]], ParsedRow]) -> Iterator[Parsed]:
    """Drive a CSV file: header on line 1, then one `parse_record` per row.

    A problem's line is the physical line where its record starts (a quoted field may span
    lines). Blank rows are skipped; a row with more fields than the header is a problem, missing
    trailing fields are empty.
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    try:
        header = [cell.strip() for cell in next(reader, [])]
        if not any(header):
            raise ImportFailed(f"{path}: empty file, expected a CSV header on line 1")
        check_header(header)
        start = reader.line_num + 1
        for row in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                yield ImportProblem(str(path), line, f"{len(row)} fields but the header has {len(header)}")
                continue
            record = dict(zip(header, [cell.strip() for cell in row] + [""] * (len(header) - len(row))))
            try:
                yield parse_record(record)
            except RowError as error:
                yield ImportProblem(str(path), line, str(error))
    except csv.Error as error:
        raise ImportFailed(f"{path}: not a readable CSV file (line {reader.line_num}: {error})") from None


def parse_jsonl(path: Path, parse_record: Callable[[dict[str, Any]], Any]) -> Iterator[Any]:
    """Drive a JSONL file: one `parse_record` per JSON object; a line that is not valid JSON, not an object, or
    that `parse_record` refuses (RowError) becomes a problem with its line. Blank lines are skipped."""
    # Not splitlines(): JSON strings may hold U+2028 and friends, which it would split on.
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield ImportProblem(str(path), number, f"invalid JSON: {error.msg} (column {error.colno})")
            continue
        if not isinstance(record, dict):
            yield ImportProblem(str(path), number, f"expected a JSON object, got {type(record).__name__}")
            continue
        try:
            yield parse_record(record)
        except RowError as error:
            yield ImportProblem(str(path), number, str(error))


def require_columns(path: Path, what: str, required: Iterable[str]) -> Callable[[list[str]], None]:
    def check(header: list[str]) -> None:
        missing = [column for column in required if column not in header]
        if missing:
            raise ImportFailed(f"{path}: not a {what} file: the header lacks {', '.join(missing)}")
    return check
