"""RSS (0.9x, 1.0, 2.0) and Atom (0.3, 1.0) files as a news catalog, read with feedparser.

feedparser rather than a parser of our own: feeds in the wild come in every encoding (Big5, GB2312,
EUC-KR, latin-1 declared as UTF-8 or not declared at all), with whitespace or a BOM before the XML
declaration, Atom 0.3 dates, HTML entities in titles and markup that is not well-formed; it reads them all.
It is only ever handed the file's bytes, never a name or a URL, so it opens no file and no connection.

Each RSS `<item>` / Atom `<entry>` becomes an item:

- source: `rss:<channel or feed title>`, or `rss:<file name>` when the feed has no title;
- external id: RSS `<guid>` / Atom `<id>`, else the link, else derived from the title. Entries that share
  an id but differ in link or title (feeds reuse guids) each get the id plus a short hash of their link
  and title, so that none replaces another;
- title: `<title>`, its HTML entities and markup decoded to text; when missing, the start of the
  description, else the link;
- text: the title, then the description (or the content) with HTML tags removed;
- metadata: `url` (the entry's alternate link), `published` (published, else updated; ISO 8601 in UTC;
  an unparseable date is left out), `author`.

Feeds carry no feedback. An entry with neither a title nor a link is reported with the line of its
opening tag and skipped. A feed that is not well-formed is read as far as it can be, and the place where
it breaks is reported. A file in which no feed can be found fails as a whole, and so does a file that
declares external entities or entities built of other entities (the shape of an XML bomb): it is refused
before any parser expands or fetches anything.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from agent.core.importers.base import (
    ImportFailed,
    ImportProblem,
    Parsed,
    ParsedRow,
    Understood,
    derive_id,
    sentence,
)
from agent.core.importers.reading import read_bytes
from agent.core.store import NewItem, PublicSignals

# An entity declaration ownrec accepts: a name and a literal value that refers to no other entity: plain
# text, or one character reference alone (several could spell "&#38;lol;" and reference one after all).
# Anything else, external (SYSTEM/PUBLIC), parameter (%) or nested, is refused: nested entities are how an
# XML bomb grows, external ones how a file reads other files.
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_SAFE_ENTITY = re.compile(rb"""<!ENTITY\s+[\w.:-]+\s+("[^"&%<]*"|'[^'&%<]*'|"&\#\w+;"|'&\#\w+;')\s*>""",
                          re.IGNORECASE)
VERSIONS = {"rss090": "an RSS 0.90 feed", "rss091n": "an RSS 0.91 feed", "rss091u": "an RSS 0.91 feed",
            "rss092": "an RSS 0.92 feed", "rss093": "an RSS 0.93 feed", "rss094": "an RSS 0.94 feed",
            "rss20": "an RSS 2.0 feed", "rss10": "an RSS 1.0 (RDF) feed", "rss": "an RSS feed",
            "atom01": "an Atom 0.1 feed", "atom02": "an Atom 0.2 feed", "atom03": "an Atom 0.3 feed",
            "atom10": "an Atom 1.0 feed", "atom": "an Atom feed", "cdf": "a CDF feed"}
_ENTRY_TAG = re.compile(rb"<(?:[\w-]+:)?(?:item|entry)[\s>/]")


def _ascii_view(data: bytes) -> bytes:
    """The bytes with NULs removed: UTF-16 and UTF-32 markup then reads as ASCII, so the checks below see
    `<!ENTITY` and `<item` whatever the file's encoding."""
    return data.replace(b"\x00", b"")


def refuse_entities(path: Path, data: bytes) -> None:
    view = _ascii_view(data)
    for match in _ENTITY.finditer(view):
        if not _SAFE_ENTITY.match(view, match.start()):
            line = view.count(b"\n", 0, match.start()) + 1
            raise ImportFailed(f"{path}: line {line} declares an external or nested XML entity; ownrec does not "
                               "read such files (they can read other files or expand without end)")


def _entry_lines(data: bytes) -> list[int]:
    view = _ascii_view(data)
    return [view.count(b"\n", 0, match.start()) + 1 for match in _ENTRY_TAG.finditer(view)]


class _Stripper(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.skipping += tag in ("script", "style")
        self.parts.append(" ")  # so "<p>a</p><p>b</p>" reads "a b", not "ab"

    def handle_endtag(self, tag: str) -> None:
        self.skipping -= tag in ("script", "style") and self.skipping > 0
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def strip_html(markup: str) -> str:
    stripper = _Stripper()
    stripper.feed(markup)
    stripper.close()
    return " ".join("".join(stripper.parts).split())


def _plain(detail: Any, value: str) -> str:
    """A feedparser text construct as plain text: HTML is stripped (its entities decoded), text is kept."""
    kind = (detail or {}).get("type", "text/plain")
    text = strip_html(value) if "html" in kind else value
    return " ".join(text.split())


def _date(entry: Any) -> str | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        moment = dict.get(entry, key)  # not entry.get: feedparser maps a missing key onto another, and warns
        if moment:
            try:
                return datetime.fromtimestamp(calendar.timegm(moment), timezone.utc).isoformat()
            except (OverflowError, ValueError, OSError):
                return None
    return None


def _recency(published: str | None) -> PublicSignals:
    """The entry's date as its public signal; a date no signal can hold ("31 Dec 9999", a feed's way of
    saying never) is left out, as an unparseable one is."""
    try:
        return PublicSignals(published=datetime.fromisoformat(published).timestamp() if published else None)
    except (ValueError, OverflowError):
        return PublicSignals()


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else re.sub(r"\s+\S*$", "", text[:limit]) + "…"


def _body(entry: Any) -> str:
    if entry.get("summary"):
        return strip_html(entry["summary"])
    for content in entry.get("content") or ():
        if content.get("value"):
            return strip_html(content["value"])
    return ""


_LEADING = re.compile(rb"(?:\s|\xef\xbb\xbf)*")


def _trim(data: bytes) -> tuple[bytes, int]:
    """The document without whitespace or BOMs before its first `<` (XML allows none before its declaration,
    and files in the wild have them), and how many lines that removed."""
    end = _LEADING.match(data).end()
    if data[end:end + 1] != b"<":
        return data, 0
    return data[end:], data.count(b"\n", 0, end)


def _break_line(result: Any) -> int:
    """The line of the file where feedparser found the feed broken (0: unknown). It reads a copy that begins
    with an XML declaration, one line longer when the file had none."""
    line = getattr(result.get("bozo_exception"), "getLineNumber", lambda: 0)() or 0
    return line and max(1, line + result["line_shift"])


def _break(result: Any) -> str:
    error = result.get("bozo_exception")
    message = getattr(error, "getMessage", lambda: str(error))()
    line = _break_line(result)
    return f"line {line}: {message}" if line else str(message)


def read_feed(path: Path, data: bytes) -> Any:
    """feedparser's reading of `data`, after the entity check; ImportFailed when it holds no feed."""
    import feedparser  # here, not at the top: every CLI command loads the importers, few read a feed

    refuse_entities(path, data)
    data, removed = _trim(data)
    # A stream, never a str: feedparser fetches a str that looks like a URL and opens one that names a file.
    try:
        result = feedparser.parse(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - a third-party parser on hostile bytes: whatever it raises
        raise ImportFailed(f"{path}: not readable as a feed ({type(error).__name__}: {error})") from None
    declared = re.match(rb"(?:\xef\xbb\xbf|\xff\xfe|\xfe\xff)?<\?xml", _ascii_view(data[:64])) is not None
    result["line_shift"] = removed - (0 if declared else 1)
    if not result.get("version") and not result.get("entries"):
        root = re.search(rb"<([A-Za-z][\w:.-]*)", _ascii_view(data))
        what = f" (the root element is <{root.group(1).decode('ascii', 'replace')}>)" if root else ""
        broken = f"; it is not well-formed XML ({_break(result)})" if result.get("bozo") else ""
        raise ImportFailed(f"{path}: not an RSS or Atom feed{what}{broken}")
    return result


def parse(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    data = read_bytes(path)
    result = read_feed(path, data)
    version = VERSIONS.get(result.get("version", ""), "an RSS or Atom feed")
    encoding = (result.get("encoding") or "utf-8").lower()
    yield Understood(f"{version} (a news catalog)",
                     notes=() if encoding in ("utf-8", "utf8") else (f"text in {encoding}",))
    error = result.get("bozo_exception")
    # feedparser also flags a feed whose declared encoding was wrong; the encoding it read is said above.
    if result.get("bozo") and type(error).__name__ != "CharacterEncodingOverride":
        yield ImportProblem(str(path), _break_line(result), f"not well-formed XML ({_break(result)}); the entries before and "
                                             "around it were read as far as they could be")
    feed = result.get("feed", {})
    source = "rss:" + (_plain(feed.get("title_detail"), feed.get("title", "")) or path.name)
    lines = _entry_lines(data)
    rows: list[tuple[str, ParsedRow]] = []
    for index, entry in enumerate(result.get("entries", []), start=1):
        title = _plain(entry.get("title_detail"), entry.get("title", ""))
        guid = (entry.get("id") or "").strip()
        # RSS 1.0 names an item's link in its rdf:about, which feedparser reads as the id.
        link = (entry.get("link") or (guid if guid.startswith(("http://", "https://")) else "")).strip()
        description = _body(entry)
        if not title and not link:
            line = lines[index - 1] if index <= len(lines) else 0
            yield ImportProblem(str(path), line, f"entry {index} has neither a title nor a link")
            continue
        if not title:
            title = _clip(description) or link
        published = _date(entry)
        author = " ".join((entry.get("author") or "").split())
        metadata = {"url": link, "published": published, "author": author}
        rows.append((guid, ParsedRow(NewItem(
            source=source,
            external_id=guid or link or derive_id(title, None),
            title=title,
            text=f"{sentence(title)} {description}".strip(),
            metadata={key: value for key, value in metadata.items() if value},
            # Recency is the one public signal a feed carries.
            signals=_recency(published),
        ))))
    yield from _distinct_ids(rows)


def _distinct_ids(rows: list[tuple[str, ParsedRow]]) -> Iterator[ParsedRow]:
    """Entries whose guid is shared by a different entry keep it, plus a short hash of their link and title."""
    shapes: dict[str, set[tuple[str, str]]] = {}
    for guid, row in rows:
        if guid:
            shapes.setdefault(guid, set()).add((row.item.metadata.get("url", ""), row.item.title))
    for guid, row in rows:
        if guid and len(shapes[guid]) > 1:
            url = row.item.metadata.get("url", "")
            digest = hashlib.sha1(f"{url}\n{row.item.title}".encode("utf-8", "surrogatepass")).hexdigest()[:10]
            row = ParsedRow(NewItem(row.item.source, f"{guid}#{digest}", row.item.title, row.item.text,
                                    row.item.metadata, row.item.signals))
        yield row
