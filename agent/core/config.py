"""The user's settings: a TOML file in the data directory, checked against a fixed schema.

Every key the program reads is declared once in `SETTINGS` with its type, default, allowed
range and a line of help; `ownrec config list` prints that table. Unknown keys and bad values
are refused with a message that says what would be accepted.
"""

from __future__ import annotations

import math
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from agent.core import paths
from agent.core.atomic import write_text_atomic


class ConfigError(ValueError):
    """A bad setting: what is wrong (`problem`) and, when there is one, the command or edit that fixes it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; fix: {fix}" if fix else problem)


@dataclass(frozen=True)
class Setting:
    key: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def parse(self, raw: Any) -> Any:
        """Turn a TOML value or a command-line string into a checked value of this setting."""
        value = raw
        if isinstance(raw, str) and self.type is not str:
            try:
                if self.type is bool:
                    lowered = raw.strip().lower()
                    if lowered not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                        raise ValueError
                    value = lowered in {"true", "1", "yes", "on"}
                else:
                    value = self.type(raw)
            except ValueError:
                raise ConfigError(f"{self.key}: {raw!r} is not a valid {self.type.__name__}") from None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is not bool and isinstance(value, bool)):
            raise ConfigError(f"{self.key}: expected {self.type.__name__}, got {type(raw).__name__} {raw!r}")
        # NaN passes every comparison below and an infinity is no setting: refuse both before the range check.
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{self.key}: {raw!r} is not a finite number; give one{self._range()}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{self.key}: {value} is below the minimum {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{self.key}: {value} is above the maximum {self.maximum}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{self.key}: {value!r} is not one of {', '.join(self.choices)}")
        if isinstance(value, str) and not value.isprintable():
            raise ConfigError(f"{self.key}: {raw!r} has characters a settings file cannot hold (control characters "
                              "or a lone surrogate)")
        return value

    def _range(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" from {self.minimum} to {self.maximum}"
        return f" of at least {self.minimum}" if self.minimum is not None else ""


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in [
        Setting("feed.size", int, 20, "How many items a feed or `recommend` shows.", 1, 500),
        Setting("feed.diversity", float, 0.3,
                "MMR trade-off: 0 ranks by score alone, 1 maximises variety.", 0.0, 1.0),
        Setting("feed.exploration", float, 0.1,
                "Share of the slate given to items the model is unsure about.", 0.0, 0.5),
        Setting("ranker.learning_rate", float, 0.05, "Step size of the online update.", 1e-5, 1.0),
        Setting("ranker.adapter_rank", int, 8, "Rank of the personal item-tower adapter.", 1, 64),
        Setting("ranker.retrain_every", int, 25,
                "Fully retrain the personal adapter after this many feedback events.", 1, 10_000),
        Setting("encoder.batch_size", int, 32, "Texts per encoder batch.", 1, 1024),
        Setting("llm.model", str, "",
                "The chat model for `ownrec ask`: a name from `ownrec models list` (ollama:MODEL:TAG, "
                "lmstudio:PUBLISHER/REPO/FILE.gguf) or a GGUF file's path; empty: the built-in "
                "SmolLM2-135M-Instruct."),
        Setting("llm.threads", int, 0, "CPU threads for the language model (0: OWNREC_THREADS, else all cores).",
                0, 256),
        Setting("llm.context", int, 2048, "The language model's context window, in tokens (memory grows with it).",
                512, 32768),
        Setting("llm.max_tokens", int, 160, "The longest reply `ownrec ask` generates, in tokens.", 16, 2048),
        Setting("llm.temperature", float, 0.2, "Sampling temperature: 0 always picks the likeliest word.", 0.0, 2.0),
        Setting("llm.seed", int, 42, "Sampling seed: the same question and state give the same reply.", 0, 2**31 - 1),
        Setting("llm.shortlist", int, 5, "How many of your ranker's items `ownrec ask` shows and talks about.", 1, 20),
        Setting("llm.understand", str, "keywords",
                "How `ownrec ask` reads filters from a request: keywords, model (the LLM, validated) or both.",
                choices=("keywords", "model", "both")),
        # Off, with the weight chosen on validation items, because the evaluation (`ownrec eval rerank`,
        # EVALUATION.md) does not show the default model's judgement improving the feed on test items.
        Setting("llm.rerank", bool, False,
                "Let the language model rescore the top of the feed (\"would you enjoy it?\") and reorder it."),
        Setting("llm.rerank_weight", float, 0.25,
                "How much the language model's judgement counts against the ranker's score when reranking.",
                0.0, 10.0),
        Setting("llm.rerank_candidates", int, 20, "How many of the feed's top items the language model rescores.",
                2, 50),
        Setting("sync.interval_minutes", float, 60.0,
                "Federated sync (when on): start at most one round per this many minutes.", 1.0, 10_080.0),
        Setting("sync.idle_seconds", float, 30.0,
                "Federated sync (when on): start a round only after no key was pressed for this long.", 1.0, 3600.0),
        # A cohort of 10 leaves each member's update mixed with at least 6 others (after 30% dropouts); a small
        # group that trusts its members can go down to 3, the fewest the protocol allows.
        Setting("sync.min_cohort", int, 10,
                "Federated sync: take part only in cohorts of at least this many devices.", 3, 100_000),
        # Epsilon 10 is where the coordinator's default makes room (`--max-round-epsilon`): a stricter device
        # refuses rounds of a coordinator that makes less room, a laxer one adds only its share.
        Setting("sync.max_round_epsilon", float, 10.0,
                "Federated sync: add enough noise that one round costs this device at most this epsilon, even if "
                "every other member of its cohort were fake.", 0.1, 1000.0),
    ]
}


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in sorted(flat.items()):
        *parents, leaf = key.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def setting(key: str) -> Setting:
    try:
        return SETTINGS[key]
    except KeyError:
        known = ", ".join(sorted(SETTINGS))
        raise ConfigError(f"unknown setting {key!r}; known settings: {known}") from None


class Config:
    """The settings file, read once; `set` and `unset` write it back atomically.

    A file with a bad entry (an unknown key, a value out of range or not finite) is refused with every problem,
    its key and the file named (ConfigError), unless `lenient`: then the bad entries are kept aside (`problems`),
    written back unchanged, and `get` of one of them raises; that is how `ownrec config set` and `unset` repair
    a hand-edited file. A file that is not TOML at all is refused either way (there would be nothing to keep).
    """

    def __init__(self, path: Path | None = None, *, lenient: bool = False) -> None:
        self.path = path or paths.config_path()
        self.problems: dict[str, str] = {}  # key -> what is wrong with its entry in the file
        self._kept: dict[str, Any] = {}  # the bad entries, as found, so that writing the file loses nothing
        self._values = self._read()
        if self.problems and not lenient:
            raise self.problem_error()

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            raw = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            where = shlex.quote(str(self.path))
            raise ConfigError(f"{self.path} is not valid TOML ({error})",
                              f"correct that line, or set the file aside and start again from the defaults: "
                              f"`mv {where} {shlex.quote(str(self.path) + '.broken')}`") from None
        values = {}
        for key, value in _flatten(raw).items():
            try:
                values[key] = setting(key).parse(value)
            except ConfigError as error:
                self.problems[key] = str(error)
                self._kept[key] = value
        return values

    def problem_error(self) -> ConfigError:
        """Every bad entry of the file, with the commands that fix it."""
        fixes = [f"`ownrec config unset {key}`" if key in SETTINGS else f"delete {key} from the file"
                 for key in self.problems]
        return ConfigError("; ".join(f"{self.path}: {problem}" for problem in self.problems.values()),
                           f"{', '.join(fixes)} (back to the default), or `ownrec config set KEY VALUE`")

    def get(self, key: str) -> Any:
        if key in self.problems:
            raise ConfigError(f"{self.path}: {self.problems[key]}",
                              f"`ownrec config unset {key}` or `ownrec config set {key} VALUE`")
        return self._values.get(key, setting(key).default)

    def is_set(self, key: str) -> bool:
        setting(key)
        return key in self._values

    def set(self, key: str, raw: Any) -> Any:
        value = setting(key).parse(raw)
        self._values[key] = value
        self._forget_problem(key)
        self._write()
        return value

    def unset(self, key: str) -> None:
        if key not in self.problems:  # an unknown key found in the file may be unset too: that deletes it
            setting(key)
        self._values.pop(key, None)
        self._forget_problem(key)
        self._write()

    def _forget_problem(self, key: str) -> None:
        self.problems.pop(key, None)
        self._kept.pop(key, None)

    def items(self) -> list[tuple[Setting, Any, bool]]:
        """Every setting with its current value and whether the user set it."""
        return [(s, self._values.get(k, s.default), k in self._values) for k, s in sorted(SETTINGS.items())
                if k not in self.problems]

    def _write(self) -> None:
        write_text_atomic(self.path, tomli_w.dumps(_nest(self._values | self._kept)))
