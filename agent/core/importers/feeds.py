"""RSS 2.0, RSS 1.0 (RDF) and Atom files as a news catalog.

Each RSS `<item>` / Atom `<entry>` becomes an item:

- source: `rss:<channel or feed title>`, or `rss:<file name>` when the feed has no title;
- external id: RSS `<guid>` / Atom `<id>`, else the link, else derived from the title;
- title: `<title>`; when missing, the start of the description, else the link;
- text: the title, then the description with HTML tags removed (RSS `<description>`, else
  `<content:encoded>`; Atom `<summary>`, else `<content>`);
- metadata: `url` (RSS `<link>`; Atom `<link rel="alternate">` or the first link's href),
  `published` (RSS `<pubDate>` as RFC 822 or `<dc:date>`; Atom `<published>`, else `<updated>`;
  stored as ISO 8601 in UTC; an unparseable date is left out), `author` (RSS `<author>` or
  `<dc:creator>`; Atom `<author><name>`).

Feeds carry no feedback. An entry with neither a title nor a link is reported with the line of
its opening tag and skipped. A file that is not well-formed XML, or whose root is not <rss>,
<feed> or <rdf:RDF>, fails as a whole.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from xml.parsers import expat

from agent.core.importers.base import (
    ImportFailed,
    ImportProblem,
    Parsed,
    ParsedRow,
    derive_id,
    sentence,
)
from agent.core.store import NewItem, PublicSignals


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_xml(path: Path) -> tuple[ET.Element, dict[ET.Element, int]]:
    """Parse with expat directly: ElementTree keeps no line numbers, expat knows them."""
    parser = expat.ParserCreate(namespace_separator="}")
    builder = ET.TreeBuilder()
    lines: dict[ET.Element, int] = {}

    def qualify(name: str) -> str:
        return "{" + name if "}" in name else name

    def start(name: str, attributes: dict[str, str]) -> None:
        element = builder.start(qualify(name), {qualify(k): v for k, v in attributes.items()})
        lines[element] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda name: builder.end(qualify(name))
    parser.CharacterDataHandler = builder.data
    try:
        with open(path, "rb") as handle:
            parser.ParseFile(handle)
    except expat.ExpatError as error:
        raise ImportFailed(f"{path}: not well-formed XML (line {error.lineno}: "
                           f"{expat.ErrorString(error.code)})") from None
    except OSError as error:
        raise ImportFailed(f"{path}: can't read it ({error.strerror or error})") from None
    return builder.close(), lines


def _child(element: ET.Element, *names: str) -> ET.Element | None:
    for name in names:
        for child in element:
            if _local(child.tag) == name:
                return child
    return None


def _text(element: ET.Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


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


def _date(text: str) -> str | None:
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def _recency(published: str | None) -> PublicSignals:
    """The entry's date as its public signal; a date no signal can hold ("31 Dec 9999", a feed's way of
    saying never) is left out, as an unparseable one is."""
    try:
        return PublicSignals(published=datetime.fromisoformat(published).timestamp() if published else None)
    except (ValueError, OverflowError):
        return PublicSignals()


def _atom_link(entry: ET.Element) -> str:
    links = [child for child in entry if _local(child.tag) == "link"]
    for link in links:
        if link.get("rel", "alternate") == "alternate" and link.get("href"):
            return link.get("href", "").strip()
    return next((link.get("href", "").strip() for link in links if link.get("href")), "")


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else re.sub(r"\s+\S*$", "", text[:limit]) + "…"


def parse(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    root, lines = _parse_xml(path)
    kind = _local(root.tag)
    if kind == "feed":
        channel, entries = root, [child for child in root if _local(child.tag) == "entry"]
    elif kind in ("rss", "RDF"):
        channel = _child(root, "channel")
        channel = root if channel is None else channel
        # RSS 2.0 nests items in <channel>; RSS 1.0 puts them beside it.
        entries = [child for parent in dict.fromkeys((channel, root)) for child in parent
                   if _local(child.tag) == "item"]
    else:
        raise ImportFailed(f"{path}: not an RSS or Atom feed (the root element is <{kind}>)")
    source = "rss:" + (_text(_child(channel, "title")) or path.name)

    for index, entry in enumerate(entries, start=1):
        if kind == "feed":
            link = _atom_link(entry)
            guid = _text(_child(entry, "id"))
            body = _child(entry, "summary", "content")
            published = _date(_text(_child(entry, "published", "updated")))
            person = _child(entry, "author")
            author = _text(_child(person, "name")) if person is not None else ""
        else:
            link = _text(_child(entry, "link")) or entry.get("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about", "")
            guid = _text(_child(entry, "guid"))
            body = _child(entry, "description", "encoded")
            published = _date(_text(_child(entry, "pubDate", "date")))
            author = _text(_child(entry, "author", "creator"))
        title = _text(_child(entry, "title"))
        description = strip_html("".join(body.itertext())) if body is not None else ""
        if not title and not link:
            yield ImportProblem(str(path), lines.get(entry, 0), f"entry {index} has neither a title nor a link")
            continue
        if not title:
            title = _clip(description) or link
        metadata = {"url": link, "published": published, "author": author}
        yield ParsedRow(NewItem(
            source=source,
            external_id=guid or link or derive_id(title, None),
            title=title,
            text=f"{sentence(title)} {description}".strip(),
            metadata={key: value for key, value in metadata.items() if value},
            # Recency is the one public signal a feed carries.
            signals=_recency(published),
        ))
