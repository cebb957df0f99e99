"""EVALUATION.md and BENCHMARKS.md are written by several commands, each owning one section
between its own markers: a command replaces only its section and keeps the rest of the file. Each run
records where it was measured (`measured_where`): the code, when, and on what machine."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_text_atomic

REPOSITORY = Path(__file__).resolve().parents[2]


def provenance() -> dict[str, Any]:
    """The commit measured and whether the tree had uncommitted changes (None: not a git checkout)."""
    info: dict[str, Any] = {"commit": None, "uncommitted_changes": None}
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True,
                                        text=True, timeout=10, check=True).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain"], cwd=REPOSITORY, capture_output=True, text=True,
                                timeout=10, check=True).stdout
        info["uncommitted_changes"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def measured_where() -> dict[str, Any]:
    """What a run records about itself when it starts: the code measured, when, and on what machine."""
    return {**provenance(), "at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "numpy": np.__version__}


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
