"""What every importer shares: the types a parser yields, and the field parsers.

A parser yields, per record, either a `ParsedRow` (an item plus optional feedback) or an `ImportProblem`
(file, line, what is wrong), and once an `Understood` (what it took the file for, and the scale its ratings
are on when the format says). It raises `ImportFailed` only when the whole file is unusable.
`reading` drives CSV, JSONL and JSON files; `writing.apply_rows` writes a parsed file to the store.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from agent.core.problems import FileProblem
from agent.core.store import FEEDBACK_KINDS, Item, NewItem, PublicSignals, Store


class ImportFailed(ValueError):
    """The whole file is unusable; nothing was written."""


class RowError(ValueError):
    """One record is malformed; it becomes an `ImportProblem` and is skipped."""


ImportProblem = FileProblem  # a malformed row: reported with its file and line, then skipped


@dataclass(frozen=True)
class Scale:
    """The scale a file's ratings are on: `top` is the best rating (5, 10 or 100); `why` says how it is known."""

    top: float
    why: str

    @property
    def low(self) -> float:
        return 0.5 if self.top == 5 else 1.0

    def stars(self, value: float) -> float:
        """`value` on 0.5-5 stars, the scale feedback is stored on."""
        return max(0.5, min(5.0, value * 5.0 / self.top))


SCALES = (5, 10, 100)


@dataclass(frozen=True)
class Understood:
    """What a parser took its file for ("a Letterboxd diary export"), the scale of its ratings when the
    format fixes it (None: read from the ratings themselves), and notes such as the encoding it was read in."""

    what: str
    scale: Scale | None = None
    notes: tuple[str, ...] = ()


# What each kind of feedback says a row was taken as, unless the parser says better ("watched", "read").
TAKEN_AS = {"rating": "rated", "like": "liked", "dislike": "disliked", "skip": "skipped", "open": "opened",
            "want": "wanted", None: "catalog only"}


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
    understood: str = ""  # "a Letterboxd diary export"
    notes: list[str] = field(default_factory=list)  # the encoding it was read in, ...
    taken_as: Counter[str] = field(default_factory=Counter)  # "rated" -> how many rows
    scale: Scale | None = None  # None: the file held no ratings

    def summary(self) -> str:
        problems = len(self.problems)
        return (
            f"{self.path} ({self.format}): {self.items_added} items added, {self.items_updated} updated, "
            f"{self.items_unchanged} unchanged; {self.feedback_added} feedback added, "
            f"{self.feedback_duplicates} already present; {problems} problem{'' if problems == 1 else 's'}"
        )

    def understanding(self) -> list[str]:
        """What the import took the file and its rows for, in sentences: shown before the summary."""
        lines = [f"{self.path}: read as {self.understood or 'a ' + self.format + ' file'}"
                 + "".join(f"; {note}" for note in self.notes) + "."]
        if self.taken_as:
            counts = ", ".join(f"{count} {label}" for label, count in self.taken_as.most_common())
            lines.append(f"  rows taken as: {counts}.")
        if self.scale is not None:
            stored = "" if self.scale.top == 5 else ", stored as 0.5-5 stars"
            lines.append(f"  ratings read out of {self.scale.top:g} ({self.scale.why}){stored}.")
        return lines


@dataclass(frozen=True)
class Feedback:
    kind: str
    value: float | None = None  # a rating, on the file's own scale until `apply_rows` converts it
    at: float | None = None  # None: undated, recorded at import time


@dataclass(frozen=True)
class ParsedRow:
    item: NewItem
    feedback: Feedback | None = None
    # History imports (Letterboxd, Goodreads, IMDb, ...) first look for an existing item with the same
    # title, year and kind, so a rating lands on the catalog item the person already has.
    match_title: bool = False
    taken_as: str | None = None  # what the row counts as in the report; default from the feedback kind
    line: int = 0  # where the record starts in its file; the readers set it

    @property
    def key(self) -> tuple[str, str]:
        return (self.item.source, self.item.external_id)

    @property
    def label(self) -> str:
        return self.taken_as or TAKEN_AS[self.feedback.kind if self.feedback else None]


Parsed = ParsedRow | ImportProblem | Understood


# What an item is, for matching across catalogs: a history's film matches films only, a book books only.
SOURCE_KINDS = {"movielens-100k": "film", "letterboxd": "film", "goodreads": "book"}


def item_kind(source: str, metadata: dict[str, Any]) -> str | None:
    """"film", "show", "book", ... from the item's metadata `kind`, else from its source; None when unknown."""
    kind = metadata.get("kind")
    if isinstance(kind, str) and kind.strip():
        return kind.strip().lower()
    return SOURCE_KINDS.get(source) or SOURCE_KINDS.get(source.split(":", 1)[0])


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


def find_existing(store: Store, title: str, year: int | None, kind: str | None) -> Item | None:
    """The first item titled `title` (either article form) in `year` whose kind is `kind`: a film never
    matches a book of the same name. An item of unknown kind matches nothing, and nothing matches it."""
    if kind is None:
        return None
    for variant in title_variants(title):
        found = store.find_by_title(variant, year, where=lambda item: item_kind(item.source, item.metadata) == kind)
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
    except (TypeError, ValueError, OverflowError):
        raise RowError(f"bad year {value!r}: expected a whole number like 1995") from None
    if not math.isfinite(number) or not number.is_integer() or abs(number) > 9999:
        raise RowError(f"bad year {value!r}: expected a whole number like 1995")
    return int(number)


def parse_rating(value: Any) -> float | None:
    """A rating on the file's own scale: a finite number above 0. Its range is checked once the scale is
    known (`writing.apply_rows`)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        rating = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError, OverflowError):
        raise RowError(f"rating {value!r} is not a number") from None
    if not math.isfinite(rating) or rating <= 0:
        raise RowError(f"rating {value!r} is not a rating: use a number above 0 (stars, or out of 10 or 100)")
    return rating


def _moment(seconds: float, value: Any) -> float:
    """`seconds` when it is a time a calendar can show (years 1-9999), else the row is refused."""
    try:
        datetime.fromtimestamp(seconds, timezone.utc)
    except (OverflowError, ValueError, OSError):
        raise RowError(f"bad date {value!r}: not a date between the years 1 and 9999") from None
    return float(seconds)


def parse_date(value: Any) -> float | None:
    """ISO 8601 date or datetime (naive means UTC), YYYY/MM/DD, or unix seconds -> unix time."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _moment(value, value)
    text = str(value).strip()
    try:
        return _moment(float(text), value)
    except (ValueError, OverflowError):
        pass
    if re.fullmatch(r"\d{4}/\d{1,2}/\d{1,2}", text):
        text = "-".join(part.zfill(2) for part in text.split("/"))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise RowError(f"bad date {value!r}: use ISO 8601 (2024-03-01 or 2024-03-01T20:15:00Z) "
                       "or unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.timestamp()
    except (OverflowError, ValueError):
        raise RowError(f"bad date {value!r}: not a date between the years 1 and 9999") from None


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
            try:
                when = parse_date(published)
            except RowError as error:
                raise RowError(f"{error} (in published)") from None
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
