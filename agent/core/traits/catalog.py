"""Trait definitions: the shipped `catalog.toml` plus the person's own `traits.toml`.

Each `[[trait]]` block is parsed on its own, so one malformed entry is reported with its file and
line and the others still load.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from agent.core.problems import FileProblem

KINDS = ("personality", "taste")
_BLOCK = re.compile(r"^\s*\[\[\s*trait\s*\]\]\s*(#.*)?$")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_TOML_LINE = re.compile(r"at line (\d+)")


@dataclass(frozen=True)
class TraitDef:
    id: str
    name: str
    kind: str
    meaning: str
    high: tuple[str, ...]
    low: tuple[str, ...]
    origin: str  # "builtin" or the path of the person's file


TraitProblem = FileProblem  # a malformed [[trait]] entry: reported, the others still load


def _phrases(entry: dict, key: str) -> tuple[str, ...]:
    value = entry.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(p, str) and p.strip() for p in value):
        raise ValueError(f"`{key}` must be a non-empty list of phrases")
    return tuple(p.strip() for p in value)


def _trait(entry: dict, origin: str) -> TraitDef:
    unknown = set(entry) - {"id", "name", "kind", "meaning", "high", "low"}
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}")
    trait_id = entry.get("id")
    if not isinstance(trait_id, str) or not _ID.match(trait_id):
        raise ValueError("`id` must be lowercase letters, digits and _ (starting with a letter), e.g. \"whimsy\"")
    kind = entry.get("kind", "taste")
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {', '.join(KINDS)}")
    name = entry.get("name", trait_id.replace("_", " ").capitalize())
    meaning = entry.get("meaning", "")
    if not isinstance(name, str) or not isinstance(meaning, str):
        raise ValueError("`name` and `meaning` must be strings")
    return TraitDef(trait_id, name, kind, meaning, _phrases(entry, "high"), _phrases(entry, "low"), origin)


def parse_traits(text: str, path: str, origin: str) -> tuple[list[TraitDef], list[TraitProblem]]:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _BLOCK.match(line)]
    problems: list[TraitProblem] = []
    for number, line in enumerate(lines[: starts[0] if starts else len(lines)], 1):
        if line.strip() and not line.strip().startswith("#"):
            problems.append(TraitProblem(path, number, "only [[trait]] blocks are read; this line is ignored"))
            break
    traits: list[TraitDef] = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        block = "\n".join(lines[start:end]) + "\n"
        try:
            (entry,) = tomllib.loads(block)["trait"]
            traits.append(_trait(entry, origin))
        except tomllib.TOMLDecodeError as error:
            found = _TOML_LINE.search(str(error))
            line = start + int(found.group(1)) if found else end  # "at end of document"
            problems.append(TraitProblem(path, line, f"not valid TOML: {error}"))
        except ValueError as error:
            problems.append(TraitProblem(path, start + 1, str(error)))
    return traits, problems


def load_traits(user_path: Path | None = None) -> tuple[list[TraitDef], list[TraitProblem]]:
    """The built-in traits, then the person's own from `user_path` (their traits.toml; None: the
    built-in ones only); a person's trait with a built-in id replaces it."""
    builtin_text = resources.files("agent.core.traits").joinpath("catalog.toml").read_text(encoding="utf-8")
    traits, problems = parse_traits(builtin_text, "catalog.toml", "builtin")
    if user_path is not None and user_path.exists():
        try:
            text = user_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(TraitProblem(str(user_path), 0, f"cannot read: {error}"))
        else:
            mine, mine_problems = parse_traits(text, str(user_path), str(user_path))
            problems += mine_problems
            by_id = {t.id: t for t in traits}
            for trait in mine:
                if trait.id in by_id and by_id[trait.id].origin != "builtin":
                    problems.append(TraitProblem(str(user_path), 0, f"trait {trait.id!r} is defined twice; the first is used"))
                    continue
                by_id[trait.id] = trait
            traits = list(by_id.values())
    return traits, problems
