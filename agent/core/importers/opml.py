"""OPML subscription lists (what feed readers export) as a list of feeds to import.

Each `<outline>` with an `xmlUrl` names a feed. ownrec reads feeds from files only: with sync off it opens
no network connection at all, and importing never does. So a feed given as a file path (relative to the
OPML file, absolute, or a `file:` URL) is imported as `ownrec import FEED` would import it, and a feed
given as a web address is reported, with its line, as not downloaded: save it as a file (your feed reader
or a browser can) and import that. A list that names no feed file at all fails as a whole and says so.
All the feeds of one list are written together.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse
from xml.parsers import expat

from agent.core.importers import feeds
from agent.core.importers.base import ImportFailed, ImportProblem, Parsed, Understood
from agent.core.importers.reading import read_bytes


def _outlines(path: Path, data: bytes) -> list[tuple[int, dict[str, str]]]:
    """(line, attributes) of every outline, read with expat (which knows lines) after the entity check."""
    feeds.refuse_entities(path, data)
    parser = expat.ParserCreate()
    found: list[tuple[int, dict[str, str]]] = []
    root: list[str] = []  # the first element's name, once seen

    def start(name: str, attributes: dict[str, str]) -> None:
        if not root:
            root.append(name)
        if name == "outline":
            found.append((parser.CurrentLineNumber, attributes))

    parser.StartElementHandler = start
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise ImportFailed(f"{path}: not an OPML file: not well-formed XML (line {error.lineno}: "
                           f"{expat.ErrorString(error.code)})") from None
    except (ValueError, RecursionError, ET.ParseError) as error:
        raise ImportFailed(f"{path}: not readable XML ({error})") from None
    if root[:1] != ["opml"]:
        raise ImportFailed(f"{path}: not an OPML file (the root element is <{root[0] if root else '?'}>)")
    return found


def _local(base: Path, address: str) -> Path | None:
    """The file `address` names, or None for a web address."""
    parsed = urlparse(address)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # "C:" is a Windows drive, not a scheme
        return None
    return base / address


def _count(number: int, noun: str, plural: str = "s") -> str:
    return f"{number} {noun}{'' if number == 1 else plural}"


def parse(path: Path) -> Iterator[Parsed]:
    path = Path(path)
    outlines = [(line, attributes) for line, attributes in _outlines(path, read_bytes(path))
                if attributes.get("xmlUrl", "").strip()]
    local = [(line, _local(path.parent, attributes["xmlUrl"].strip()), attributes["xmlUrl"].strip())
             for line, attributes in outlines]
    files = [(line, file, address) for line, file, address in local if file is not None]
    readable = sum(1 for _, file, _ in files if file.is_file())
    web = len(local) - len(files)
    if not files:
        raise ImportFailed(
            f"{path}: its {len(local)} feed{'s are' if len(local) != 1 else ' is a'} web address"
            f"{'es' if len(local) != 1 else ''} and ownrec downloads nothing (it opens no network connection): "
            "save each feed as a file and import it, or list the files' paths in the OPML" if local
            else f"{path}: an OPML file with no feeds in it (no outline has an xmlUrl)")
    yield Understood(f"an OPML subscription list of {_count(len(local), 'feed')}: {_count(readable, 'file')} read, "
                     f"{_count(len(files) - readable, 'file')} missing, {_count(web, 'web address', 'es')} "
                     "not downloaded")
    for line, file, address in local:
        if file is None:
            yield ImportProblem(str(path), line, f"{address}: a web address; ownrec downloads nothing, so save the "
                                "feed as a file and import that")
        elif not file.is_file():
            yield ImportProblem(str(path), line, f"{address}: no such file")
        else:
            try:
                yield from (entry for entry in feeds.parse(file) if not isinstance(entry, Understood))
            except ImportFailed as error:
                yield ImportProblem(str(path), line, str(error))
