"""Where Ollama and LM Studio keep the GGUF chat models a person already has, and the names ownrec gives them.

Only folders and small files are read here (Ollama's JSON manifests, directory listings), never a model's
header: that is `discovery`'s job. The model loader resolves a name through `resolve` at every load, so
this module must stay below it (it does not import `model`).

Names, as `ownrec models list` shows them and `ownrec config set llm.model` takes them:

- ``ollama:MODEL:TAG`` as Ollama itself shortens names (``ollama:llama3.2:3b``); a model from another
  namespace keeps it (``ollama:someone/model:tag``), from another registry its host too
  (``ollama:hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M``). ``ollama:llama3.2`` means ``:latest``,
  as in Ollama.
- ``lmstudio:PUBLISHER/REPO/FILE.gguf``, the file's place under LM Studio's models folder.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

OLLAMA = "ollama"
LMSTUDIO = "lmstudio"
SCHEMES = (OLLAMA, LMSTUDIO)

# The store of Ollama's Linux service (install.sh runs it as the `ollama` user, whose home is here).
SYSTEM_OLLAMA = Path("/usr/share/ollama/.ollama/models")
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_HOST = "registry.ollama.ai"
OLLAMA_NAMESPACE = "library"
# LM Studio records where its home is in this file, else uses ~/.cache/lm-studio (older installs) or ~/.lmstudio.
LMSTUDIO_POINTER = ".lmstudio-home-pointer"

_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


@dataclass(frozen=True)
class Folder:
    """A folder searched: whose, where, why it was searched, and whether it exists."""

    source: str  # OLLAMA or LMSTUDIO
    path: Path
    why: str
    exists: bool


@dataclass(frozen=True)
class Candidate:
    """A model file a folder names, before its header is read. `problem` says why it cannot be used
    even before that (a manifest that does not parse, a blob or a shard that is missing)."""

    name: str
    source: str
    path: Path
    folder: Path
    size: int = 0  # bytes, all shards of a split model together
    problem: str = ""


class UnknownModel(LookupError):
    pass


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def _folder(source: str, path: Path, why: str) -> Folder:
    return Folder(source, path, why, path.is_dir())


def _unique(folders: list[Folder]) -> list[Folder]:
    """The same folder reached twice (an environment variable naming the default) is searched once."""
    seen: set[str] = set()
    kept = []
    for folder in folders:
        key = os.path.realpath(folder.path)
        if key not in seen:
            seen.add(key)
            kept.append(folder)
    return kept


def ollama_folders() -> list[Folder]:
    """$OLLAMA_MODELS (what a person's own `ollama serve` uses when set), ~/.ollama/models (the default),
    and the Linux service's store: the shell's environment need not be the service's, so all are looked at."""
    folders = []
    if os.environ.get("OLLAMA_MODELS"):
        folders.append(_folder(OLLAMA, Path(os.environ["OLLAMA_MODELS"]).expanduser(), "$OLLAMA_MODELS"))
    folders.append(_folder(OLLAMA, _home() / ".ollama" / "models", "Ollama's default store"))
    folders.append(_folder(OLLAMA, SYSTEM_OLLAMA, "the store of Ollama's Linux service"))
    return _unique(folders)


def lmstudio_folders() -> list[Folder]:
    """The models folder of LM Studio's home (the one its pointer file names), of ~/.lmstudio and of the
    older ~/.cache/lm-studio. A models folder moved in LM Studio's settings is not found: give its files' paths."""
    folders = []
    pointer = _home() / LMSTUDIO_POINTER
    try:
        named = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        named = ""
    if named:
        folders.append(_folder(LMSTUDIO, Path(named).expanduser() / "models", f"LM Studio's home (~/{LMSTUDIO_POINTER})"))
    folders.append(_folder(LMSTUDIO, _home() / ".lmstudio" / "models", "LM Studio's default folder"))
    folders.append(_folder(LMSTUDIO, _home() / ".cache" / "lm-studio" / "models", "older LM Studio versions' folder"))
    return _unique(folders)


def ollama_name(host: str, namespace: str, model: str, tag: str) -> str:
    """Ollama's shortest display of a name (its DisplayShortest), with the scheme."""
    if host.lower() != OLLAMA_HOST:
        short = f"{host}/{namespace}/{model}:{tag}"
    elif namespace.lower() != OLLAMA_NAMESPACE:
        short = f"{namespace}/{model}:{tag}"
    else:
        short = f"{model}:{tag}"
    return f"{OLLAMA}:{short}"


def scan_ollama(folder: Path) -> list[Candidate]:
    """Every manifest under manifests/<host>/<namespace>/<model>/<tag>, with the blob of its model layer."""
    manifests = folder / "manifests"
    found = []
    for manifest in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
        host, namespace, model, tag = manifest.relative_to(manifests).parts
        name = ollama_name(host, namespace, model, tag)
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            layers = data.get("layers") or []
            layer = next(x for x in layers if isinstance(x, dict) and x.get("mediaType") == OLLAMA_MODEL_LAYER)
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            found.append(Candidate(name, OLLAMA, manifest, folder, problem=f"its manifest {manifest} cannot be read"))
            continue
        except StopIteration:
            found.append(Candidate(name, OLLAMA, manifest, folder,
                                   problem="its manifest names no GGUF model layer (a cloud or non-GGUF model)"))
            continue
        digest = str(layer.get("digest", ""))
        blob = folder / "blobs" / digest.replace(":", "-", 1)
        if not digest.startswith("sha256:") or not blob.is_file():
            found.append(Candidate(name, OLLAMA, blob, folder, problem=f"its model blob {blob.name} is missing"))
            continue
        found.append(Candidate(name, OLLAMA, blob, folder, blob.stat().st_size))
    return found


def scan_lmstudio(folder: Path) -> list[Candidate]:
    """<publisher>/<repo>/*.gguf, without vision projectors (mmproj) and the later shards of a split model
    (llama.cpp loads those through the first)."""
    found = []
    for path in sorted(folder.glob("*/*/*.gguf")):
        if not path.is_file() or "mmproj" in path.name.lower() or "projector" in path.name.lower():
            continue
        name = f"{LMSTUDIO}:{path.relative_to(folder).as_posix()}"
        shard = _SHARD.search(path.name)
        if shard is None:
            found.append(Candidate(name, LMSTUDIO, path, folder, path.stat().st_size))
            continue
        index, total = int(shard.group(1)), int(shard.group(2))
        if index != 1:
            continue
        shards = [path.with_name(_SHARD.sub(f"-{i:05d}-of-{total:05d}.gguf", path.name)) for i in range(1, total + 1)]
        missing = [s.name for s in shards if not s.is_file()]
        size = sum(s.stat().st_size for s in shards if s.is_file())
        problem = f"{len(missing)} of its {total} parts are missing ({missing[0]}…)" if missing else ""
        found.append(Candidate(name, LMSTUDIO, path, folder, size, problem))
    return found


def scan() -> tuple[list[Folder], list[Candidate]]:
    """Every folder searched and every model found in them. A name found again in a later folder means
    the first folder's model (`resolve`); the later one is kept, marked, so that it can be chosen by path."""
    folders = ollama_folders() + lmstudio_folders()
    found: list[Candidate] = []
    first: dict[str, Path] = {}
    for folder in folders:
        if not folder.exists:
            continue
        try:
            listed = scan_ollama(folder.path) if folder.source == OLLAMA else scan_lmstudio(folder.path)
        except OSError:  # a folder that cannot be listed is reported by its count (none found)
            listed = []
        for candidate in listed:
            key = candidate.name.lower()
            if key in first and not candidate.problem:
                candidate = replace(candidate, problem=f"{candidate.name} already means the one in {first[key]}; "
                                                       f"choose this one by its path")
            first.setdefault(key, folder.path)
            found.append(candidate)
    return folders, found


def is_name(value: str) -> bool:
    """Whether a llm.model value is a name (`ollama:…`, `lmstudio:…`) rather than a path."""
    scheme, sep, _ = value.partition(":")
    return bool(sep) and scheme.lower() in SCHEMES


def canonical(name: str) -> str:
    """A name as listed: the scheme in lower case, and Ollama's default tag when none is given."""
    scheme, _, rest = name.strip().partition(":")
    scheme = scheme.lower()
    if scheme == OLLAMA and ":" not in rest.rpartition("/")[2]:
        rest += ":latest"
    return f"{scheme}:{rest}"


def resolve(name: str) -> Candidate:
    """The model a name means, looked up afresh: a tag Ollama pulled again is a new blob under the same name.
    Raises UnknownModel, whose message lists the names found."""
    wanted = canonical(name).lower()
    folders, found = scan()
    for candidate in found:
        if candidate.name.lower() == wanted:
            return candidate  # the first folder's, when two have it
    raise UnknownModel(unknown_message(name, found, folders))


def unknown_message(name: str, found: list[Candidate], folders: list[Folder]) -> str:
    names = [c.name for c in found if not c.problem]
    if names:
        listed = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
        return f"no model is called {name!r}; found: {listed} (`ownrec models list` says which can chat)"
    searched = ", ".join(str(f.path) for f in folders)
    return f"no model is called {name!r}, and none was found in {searched} (see `ownrec models list`)"
