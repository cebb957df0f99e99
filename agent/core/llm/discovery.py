"""The GGUF chat models a person already has: the built-in one, Ollama's and LM Studio's (`folders`), each
described from its header alone (nothing is loaded), with whether it can chat and fits in memory.

`ownrec models list` shows `list_models`; `ownrec config set llm.model` checks its value with `setting_for`.
What llm.model stores: a name stays a name (resolved at every load, so a tag Ollama pulls again keeps
working), a path becomes absolute, and the built-in model is the empty default.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

from agent.core.config import ConfigError
from agent.core.llm import folders, manifest
from agent.core.llm.gguf_header import GGUFError, GGUFInfo, read_gguf_info
from agent.core.llm.model import (
    DEFAULT_SETTINGS,
    LLMUnavailable,
    available_memory,
    chat_problem,
    default_model_path,
    memory_needed,
)

DEFAULT_NAME = "default"
BUILT_IN = "built-in"
PATH = "path"  # a file llm.model names by its path, outside the folders searched


@dataclass(frozen=True)
class FoundModel:
    """One model as `ownrec models list` shows it. Header fields are empty when the header cannot be read."""

    name: str  # what `ownrec config set llm.model` takes
    source: str  # BUILT_IN, folders.OLLAMA, folders.LMSTUDIO or PATH
    path: str
    size: int  # bytes on disk, every part of a split model
    title: str = ""  # general.name
    architecture: str = ""
    parameters: str = ""  # the header's size label ("3B"), else counted from the tensors ("3.2B")
    quantization: str = ""  # general.file_type ("Q4_K_M")
    chat_template: bool = False
    context_length: int = 0  # what the model was trained for; ownrec uses llm.context
    memory_needed: int | None = None  # bytes, with llm.context tokens (model.memory_needed)
    fits: bool | None = None  # None: the available memory or the header is unknown
    usable: bool = False
    problem: str = ""  # why it cannot chat
    note: str = ""  # what to know although it can
    in_use: bool = False


@dataclass(frozen=True)
class SearchedFolder:
    source: str
    path: str
    why: str
    exists: bool
    found: int


@dataclass(frozen=True)
class ModelList:
    models: list[FoundModel]
    folders: list[SearchedFolder]
    setting: str  # llm.model as configured
    context: int  # llm.context: what memory_needed assumed
    available_memory: int | None
    setting_problem: str = ""  # when llm.model names nothing listed that can chat


def _count(parameters: int) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if parameters >= scale:
            return f"{parameters / scale:.1f}{suffix}".replace(".0" + suffix, suffix)
    return str(parameters)


def _quantization(info: GGUFInfo) -> str:
    value = info.metadata.get("general.file_type")
    if not isinstance(value, int) or isinstance(value, bool):
        return ""
    import gguf  # a runtime dependency (the LoRA's adapters); its enum is llama.cpp's list of file types

    try:
        name = gguf.LlamaFileType(value).name
    except ValueError:
        return f"type {value}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def describe(name: str, source: str, path: Path, context: int, available: int | None, size: int | None = None,
             problem: str = "") -> FoundModel:
    """A model from its header: what it is, whether it can chat, and whether it fits in `available` bytes."""
    path = Path(path)
    if size is None:
        try:
            size = path.stat().st_size
        except OSError as error:
            return FoundModel(name, source, str(path), 0, problem=f"cannot read {path} ({error.strerror})")
    base = FoundModel(name, source, str(path), size)
    if problem:
        return _with(base, problem=problem)
    try:
        info = read_gguf_info(path, tensors=True)
    except GGUFError as error:
        return _with(base, problem=str(error))
    except OSError as error:
        return _with(base, problem=f"cannot read {path} ({error.strerror or error})")
    except (ValueError, OverflowError) as error:  # mmap of an empty or special file, and the like
        return _with(base, problem=f"cannot read {path} as GGUF ({error})")
    label = str(info.metadata.get("general.size_label") or "")
    needed = memory_needed(size, info, context)
    why_not = chat_problem(info)
    note = "" if info.chat_template or why_not else (
        "no chat template in the file: ownrec formats the chat as ChatML, which a base model may not follow")
    return _with(base, title=info.name, architecture=info.architecture,
                 parameters=label or (_count(info.parameter_count) if info.parameter_count else ""),
                 quantization=_quantization(info), chat_template=info.chat_template is not None,
                 context_length=info.arch_int("context_length"), memory_needed=needed,
                 fits=None if available is None else needed <= available, usable=not why_not, problem=why_not,
                 note=note)


def _with(model: FoundModel, **changes) -> FoundModel:
    return replace(model, **changes)


def _default(context: int, available: int | None) -> FoundModel:
    try:
        path = default_model_path()
    except LLMUnavailable as error:
        return FoundModel(DEFAULT_NAME, BUILT_IN, "", 0, title=manifest.NAME, problem=f"{error.problem}; fix: {error.fix}")
    model = describe(DEFAULT_NAME, BUILT_IN, path, context, available)
    # What runs is a Q8_0 copy of the packaged file (model.default_runtime_file): say so beside its Q4_1.
    note = "ownrec runs a Q8_0 copy of this file, made once by `ownrec models prepare` or the first `ownrec ask`" if model.usable else ""
    return _with(model, title=manifest.NAME, note=model.note or note)


def _same_file(a: str, b: Path) -> bool:
    with contextlib.suppress(OSError):
        return bool(a) and Path(a).samefile(b)
    return False


def list_models(setting: str, context: int, available: int | None = None) -> ModelList:
    """The built-in model and every model in the folders searched, the one llm.model chooses marked in use.
    A path llm.model gives outside those folders is listed too. `available`: bytes (default: free now)."""
    available = available_memory() if available is None else available
    searched, candidates = folders.scan()
    models = [_default(context, available)]
    models += [describe(c.name, c.source, c.path, context, available, c.size or None, c.problem) for c in candidates]
    counts = {str(f.path): sum(1 for c in candidates if c.folder == f.path) for f in searched}
    listed_folders = [SearchedFolder(f.source, str(f.path), f.why, f.exists, counts[str(f.path)]) for f in searched]

    value = setting.strip()
    problem = ""
    if value.lower() in DEFAULT_SETTINGS:
        chosen = 0
    elif folders.is_name(value):
        wanted = folders.canonical(value).lower()
        chosen = next((i for i, m in enumerate(models) if m.name.lower() == wanted), None)
        if chosen is None:
            problem = f"llm.model is {value!r}, which is not among these models"
    else:
        path = Path(value).expanduser()
        chosen = next((i for i, m in enumerate(models) if _same_file(m.path, path)), None)
        if chosen is None:
            if path.is_file():
                models.append(describe(str(path), PATH, path, context, available))
                chosen = len(models) - 1
            else:
                problem = f"llm.model is {value}, which is not a file"
    if chosen is not None:
        models[chosen] = _with(models[chosen], in_use=True)
        if not models[chosen].usable:
            problem = f"llm.model chooses {models[chosen].name}, which cannot chat: {models[chosen].problem}"
    return ModelList(models, listed_folders, value, context, available, problem)


def setting_for(raw: str, context: int, available: int | None = None) -> tuple[str, FoundModel]:
    """What `ownrec config set llm.model RAW` stores, and the model it means; ConfigError for a value that
    names nothing, or a model that cannot chat. Accepted: "" or "default", a listed name (its scheme may be
    left out when only one model has that name), or a GGUF file's path."""
    value = raw.strip()
    if value.lower() in DEFAULT_SETTINGS:
        return "", _default(context, available)
    if folders.is_name(value):
        try:
            found = folders.resolve(value)
        except folders.UnknownModel:
            searched, candidates = folders.scan()
            raise ConfigError(f"llm.model: {_unknown(value, candidates, searched, context)}") from None
        model = describe(found.name, found.source, found.path, context, available, found.size or None, found.problem)
        return _usable(found.name, model)
    path = Path(value).expanduser()
    if path.is_file():
        path = path.resolve()
        return _usable(str(path), describe(str(path), PATH, path, context, available))
    searched, candidates = folders.scan()
    # Without its scheme: as typed, or with Ollama's default tag. A name two folders share counts once.
    wanted = {value.lower(), folders.canonical(f"{folders.OLLAMA}:{value}").split(":", 1)[1].lower()}
    matches = list({c.name.lower(): c for c in reversed(candidates) if c.name.split(":", 1)[1].lower() in wanted}
                   .values())[::-1]
    if len(matches) == 1:
        found = matches[0]
        return _usable(found.name, describe(found.name, found.source, found.path, context, available,
                                            found.size or None, found.problem))
    if len(matches) > 1:
        raise ConfigError(f"llm.model: {value!r} could be {' or '.join(c.name for c in matches)}; give the whole name")
    if "/" in value or value.startswith((".", "~")) or value.lower().endswith(".gguf"):
        raise ConfigError(f"llm.model: {path} is not a file; give a GGUF file's path, a name from "
                          f"`ownrec models list`, or `default`")
    raise ConfigError(f"llm.model: {_unknown(value, candidates, searched, context)}")


def _unknown(value: str, candidates: list[folders.Candidate], searched: list[folders.Folder], context: int) -> str:
    """The message for a name that matches nothing, listing only the models that can chat."""
    usable = [c.name for c in candidates if not c.problem
              and describe(c.name, c.source, c.path, context, None, c.size or None).usable]
    if not usable and candidates:
        return (f"no model is called {value!r}, and none of the models found can chat (see `ownrec models list`); "
                "`default` is the built-in one")
    if not usable:
        return folders.unknown_message(value, [], searched)
    listed = ", ".join(usable[:12]) + (f" and {len(usable) - 12} more" if len(usable) > 12 else "")
    return f"no model is called {value!r}; the ones that can chat: {listed}, or `default` (details: `ownrec models list`)"


def _usable(stored: str, model: FoundModel) -> tuple[str, FoundModel]:
    if not model.usable:
        raise ConfigError(f"llm.model: {model.name} cannot be the chat model: {model.problem}")
    return stored, model
