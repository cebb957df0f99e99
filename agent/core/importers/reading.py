"""Reading the files people give: their bytes, their text in the encoding they are in, and the CSV, JSONL and
JSON-array drivers that turn records into `ParsedRow`s or reported problems, each with its line.

A bad record never loses the file: a field too large, a quote that never closes, JSON nested past any
sense, a lone surrogate or a number that is not finite is that record's problem, reported and skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from agent.core.importers.base import ImportFailed, ImportProblem, ParsedRow, RowError, Understood

# The largest field a row may hold; a row with a larger one (a 10 MB review) is refused, not the file.
MAX_FIELD = 1_000_000
# The csv module's own limit is raised far above MAX_FIELD, so that such a row reaches the check above
# instead of failing the whole reader.
csv.field_size_limit(1 << 30)

_PHYSICAL_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


ENCODING_NAMES = {"cp1252": "Windows-1252 (latin-1)"}


def read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImportFailed(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportFailed(f"{path}: is a directory; import its files one by one") from None
    except OSError as error:
        raise ImportFailed(f"{path}: can't read it ({error.strerror or error})") from None


# How many lines may hold bytes that are not UTF-8 before the file, not those lines, is refused: a few bad
# bytes are damage (those rows are reported), more mean the file is in another encoding.
MAX_NON_UTF8_LINES = 10
_ESCAPED = re.compile("[\udc80-\udcff]")


def decode(path: Path, data: bytes, legacy: str | None = None) -> tuple[str, str | None]:
    """The file's text, and a note when it was not all UTF-8. `legacy` is the encoding the format is known to
    ship in besides UTF-8 (IMDb's exports are Windows-1252); without one, text that is not UTF-8 is refused
    rather than guessed at, unless only a few lines hold such bytes: they are kept as escapes, and the rows
    holding them are refused (`check_text`)."""
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as error:
        if legacy is None:
            text = data.decode("utf-8-sig", errors="surrogateescape")
            damaged = sum(1 for line in physical_lines(text) if _ESCAPED.search(line))
            if damaged <= MAX_NON_UTF8_LINES:
                return text, f"{damaged} line{'s' if damaged != 1 else ''} with bytes that are not UTF-8"
            line = data.count(b"\n", 0, error.start) + 1
            raise ImportFailed(f"{path}: not UTF-8 text (line {line}, byte {error.start}); save it as UTF-8") from None
    try:
        return data.decode(legacy), f"text in {ENCODING_NAMES.get(legacy, legacy)} (it is not UTF-8)"
    except UnicodeDecodeError:
        # Windows-1252 leaves five bytes undefined; latin-1 defines every byte.
        return data.decode("latin-1"), "text in latin-1 (it is not UTF-8)"


def read_text(path: Path, legacy: str | None = None) -> str:
    return decode(path, read_bytes(path), legacy)[0]


def csv_header(text: str) -> list[str]:
    try:
        return [cell.strip() for cell in next(csv.reader(io.StringIO(text, newline="")), [])]
    except csv.Error:
        return []


def physical_lines(text: str) -> list[str]:
    """Physical lines with their ends, split where the csv module splits them (\\r\\n, \\r or \\n)."""
    return _PHYSICAL_LINE.findall(text)


def _never_closes(lines: list[str]) -> bool:
    """Whether a quote opened in these lines is still open at their end."""
    try:
        for _ in csv.reader(iter(lines), strict=True):
            pass
    except csv.Error as error:
        return "unexpected end of data" in str(error)
    return False


# How many unclosed quotes a file may have before it is refused as a whole: each one costs a read of the rest.
MAX_BROKEN_QUOTES = 100


def _records(path: Path, lines: list[str], first: int) -> Iterator[tuple[int, list[str]] | ImportProblem]:
    """(line, fields) per CSV record of `lines`, the first of which is line `first` of the file. A quote
    that never closes would swallow the rest of the file into one field: it is reported at the line where
    it opens, and reading starts again on the next line."""
    for _ in range(MAX_BROKEN_QUOTES + 1):
        reader = csv.reader(iter(lines))
        start = 0  # index in `lines` where the next record starts
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield ImportProblem(str(path), first + start, f"not readable as CSV: {error}")
                start = reader.line_num
                continue
            end = reader.line_num
            if end == len(lines) and end - start > 1 and _never_closes(lines[start:end]):
                break
            yield first + start, row
            start = end
        yield ImportProblem(str(path), first + start, "a quoted field opens on this line and never closes, so "
                            "the rest of the file would be one field: this line is skipped and the ones after "
                            "it are read as rows; check the quotes on this line")
        lines, first = lines[start + 1:], first + start + 1
    raise ImportFailed(f"{path}: more than {MAX_BROKEN_QUOTES} quoted fields never close; it is not CSV as "
                       "written (is it another format, or tab-separated?)")


def parse_csv(path: Path, check_header: Callable[[list[str]], None],
              parse_record: Callable[[dict[str, str]], Any], legacy: str | None = None,
              skip_lines: int = 0) -> Iterator[Any]:
    """Drive a CSV file: a header, then one `parse_record` per row; the encoding note (when not UTF-8) comes
    first, as an `Understood` with no description.

    The header is line 1 (after `skip_lines` lines a format puts above it). A problem's line is the
    physical line where its record starts (a quoted field may span lines; \\r, \\n and \\r\\n all end one).
    Blank rows are skipped; a row with more fields than the header, or a field over MAX_FIELD characters,
    is a problem; missing trailing fields are empty.
    """
    text, note = decode(path, read_bytes(path), legacy)
    if note:
        yield Understood("", notes=(note,))
    lines = physical_lines(text)[skip_lines:]
    del text  # the lines hold it now; a large file is not kept twice
    records = _records(path, lines, skip_lines + 1)
    header: list[str] | None = None
    for entry in records:
        if isinstance(entry, ImportProblem):
            if header is None:
                raise ImportFailed(f"{path}: the header (line {entry.line}) is not readable CSV: {entry.message}")
            yield entry
            continue
        line, row = entry
        if header is None:
            header = [cell.strip() for cell in row]
            if not any(header):
                raise ImportFailed(f"{path}: empty file, expected a CSV header on line {line}")
            check_header(header)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            yield ImportProblem(str(path), line, f"{len(row)} fields but the header has {len(header)}")
            continue
        large = next((index for index, cell in enumerate(row) if len(cell) > MAX_FIELD), None)
        if large is not None:
            yield ImportProblem(str(path), line, f"the field {header[large] or large + 1!r} holds "
                                f"{len(row[large]):,} characters; a field may hold at most {MAX_FIELD:,}")
            continue
        record = dict(zip(header, [cell.strip() for cell in row] + [""] * (len(header) - len(row))))
        yield from _one(path, line, lambda: parse_record(record))
    if header is None:
        raise ImportFailed(f"{path}: empty file, expected a CSV header on line {skip_lines + 1}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(text: str) -> Any:
    """json.loads without NaN or Infinity; raises ValueError (a message) for anything it cannot read."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON: {error.msg} (column {error.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply to read") from None


def parse_jsonl(path: Path, parse_record: Callable[[dict[str, Any]], Any]) -> Iterator[Any]:
    """Drive a JSONL file: one `parse_record` per JSON object; a line that is not valid JSON, not an object, or
    that `parse_record` refuses (RowError) becomes a problem with its line. Blank lines are skipped."""
    # Not splitlines(): JSON strings may hold U+2028 and friends, which it would split on.
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = load_json(line)
        except ValueError as error:
            yield ImportProblem(str(path), number, str(error))
            continue
        if not isinstance(record, dict):
            yield ImportProblem(str(path), number, f"expected a JSON object, got {type(record).__name__}")
            continue
        yield from _one(path, number, lambda: parse_record(record))


def json_array(path: Path, text: str, position: int = 0) -> Iterator[tuple[int, Any]]:
    """(line, element) for each element of the JSON array that starts at `position` of `text` (after any
    whitespace); ImportFailed when there is none or it is not readable JSON."""
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)
    while position < len(text) and text[position] in " \t\r\n\ufeff":
        position += 1
    if text[position:position + 1] != "[":
        raise ImportFailed(f"{path}: expected a JSON array ([...]) of records, as a Trakt export is")
    position += 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if text[position:position + 1] == "]" or position >= len(text):
            return
        line = text.count("\n", 0, position) + 1
        try:
            element, position = decoder.raw_decode(text, position)
        except (json.JSONDecodeError, ValueError, RecursionError) as error:
            reason = "nested too deeply" if isinstance(error, RecursionError) else getattr(error, "msg", str(error))
            raise ImportFailed(f"{path}: not readable JSON at line {line}: {reason}; nothing was imported") from None
        yield line, element


def drive(path: Path, records: Iterable[tuple[int, Any]], parse_record: Callable[[Any], Any]) -> Iterator[Any]:
    """One `parse_record` per (line, record): its RowError becomes a problem at that line."""
    for line, record in records:
        yield from _one(path, line, lambda record=record: parse_record(record))


def _one(path: Path, line: int, parse: Callable[[], Any]) -> Iterator[Any]:
    try:
        result = parse()
        if isinstance(result, ParsedRow):
            check_text(result)
            result = dataclasses.replace(result, line=line)
    except RowError as error:
        yield ImportProblem(str(path), line, str(error))
        return
    except UnicodeEncodeError as error:
        yield ImportProblem(str(path), line, _not_text(error))
        return
    except ImportFailed:
        raise
    except (ValueError, OverflowError, TypeError, RecursionError) as error:
        # What a record's values can still provoke in a field parser; the row, not the file, is refused.
        yield ImportProblem(str(path), line, f"not readable ({type(error).__name__}: {error})")
        return
    yield result


def _not_text(error: UnicodeEncodeError) -> str:
    bad = error.object[error.start:error.end]
    if _ESCAPED.fullmatch(bad[:1]):
        return f"holds the byte 0x{ord(bad[0]) - 0xDC00:02x}, which is not UTF-8 text; save the file as UTF-8"
    return f"holds {bad!r}, half of a UTF-16 pair and no text; fix the file's encoding"


def check_text(row: ParsedRow) -> None:
    """Refuse a row the store could not keep as it is: a lone surrogate is no text, NaN no number."""
    item = row.item
    try:
        json.dumps([item.source, item.external_id, item.title, item.text, item.metadata],
                   allow_nan=False, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        raise RowError(_not_text(error)) from None
    except (ValueError, TypeError):
        raise RowError("holds a value that is not a finite number (NaN or Infinity)") from None


def require_columns(path: Path, what: str, required: Iterable[str]) -> Callable[[list[str]], None]:
    def check(header: list[str]) -> None:
        missing = [column for column in required if column not in header]
        if missing:
            raise ImportFailed(f"{path}: not a {what} file: the header lacks {', '.join(missing)}")
    return check
