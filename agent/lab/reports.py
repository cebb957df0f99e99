"""EVALUATION.md and BENCHMARKS.md are written by several commands, each owning one section
between its own markers: a command replaces only its section and keeps the rest of the file."""

from __future__ import annotations

import re
from pathlib import Path

from agent.core.atomic import write_text_atomic


def write_section(path: Path | str, begin: str, end: str, body: str, header: str = "") -> str:
    """Replace the section between `begin` and `end` in the Markdown file at `path` with `body`
    (appended when the file has none; the file is created with `header` when missing), written
    temp-then-rename. Returns the section with its markers."""
    path = Path(path)
    section = f"{begin}\n{body.rstrip()}\n{end}"
    if path.exists():
        text = path.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _: section, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    else:
        text = (header + "\n" if header else "") + section + "\n"
    write_text_atomic(path, text)
    return section
