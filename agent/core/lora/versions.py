"""The personal LoRA's versions and switches. No torch (the facade imports this module).

Each finished training writes `adapters/lora-<ns>.gguf` in the person's data folder (their `Home`)
and records it in their store's adapter table as kind "llm-lora" (path, sha256, training figures).
The state key `llm_lora.enabled` says whether the chat LLM uses it. What the LLM loads is the
newest version whose file still matches its recorded sha256 and that fits the running base model;
anything else is skipped and the event log says why. A publish, a switch or a reset then calls
`on_change`, which swaps what the LLM should use into a loaded LLM.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import __version__
from agent.core.atomic import sha256_file, write_text_atomic
from agent.core.llm.adapter import AdapterRefused, BaseModel, LoraWeights, read_header, write_adapter
from agent.core.paths import Home
from agent.core.store import Store

KIND = "llm-lora"
ENABLED_KEY = "llm_lora.enabled"
VERSIONS_KEPT = 5
CHECKPOINT_NAME = "lora-checkpoint.pt"
CHECKPOINT_NOTE = "lora-checkpoint.json"  # its step, readable without torch


class LoraError(ValueError):
    """A switch or an export cannot be done as asked; nothing was changed."""


def checkpoint_path(home: Home) -> Path:
    return home.adapters() / CHECKPOINT_NAME


def checkpoint_note_path(home: Home) -> Path:
    return home.adapters() / CHECKPOINT_NOTE


def checkpoint_note(home: Home) -> dict[str, Any] | None:
    """{step, steps, base_model_id} of the resumable run, if there is one."""
    if not checkpoint_path(home).is_file():
        return None
    try:
        return json.loads(checkpoint_note_path(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def versions(store: Store) -> list[dict[str, Any]]:
    """Every recorded version, newest first, with its meta decoded."""
    return [{**row, "meta": json.loads(row["meta"] or "{}")} for row in store.adapter_versions(KIND)]


def is_enabled(store: Store) -> bool:
    return bool(store.get_state(ENABLED_KEY, False))


def publish(store: Store, home: Home, weights: LoraWeights, base: BaseModel, meta: dict[str, Any],
            on_change: Callable[[], None]) -> tuple[int, Path, str]:
    """Write `weights` as the next version and switch the LoRA on; then `on_change()`.
    Keeps the newest VERSIONS_KEPT versions."""
    relative = f"adapters/lora-{time.time_ns()}.gguf"
    path = home.folder() / relative
    home.adapters()
    header = {"app_version": __version__, "created_at": time.time(),
              **{k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}}
    sha256 = write_adapter(path, weights, base, header)
    with store.lock:  # one block: the store's connection is shared with the app's threads
        version = store.record_adapter(KIND, relative, sha256, {**meta, "base_model_id": base.model_id})
        store.set_state(ENABLED_KEY, True)
        store.log_event("llm_lora_trained", {"version": version, **{k: meta[k] for k in sorted(meta)}})
        dropped = store.adapter_versions(KIND)[VERSIONS_KEPT:]
        for old in dropped:
            store.forget_adapter_version(old["id"])
    on_change()  # before the old files go: the LLM may still hold one of them
    for old in dropped:
        (home.folder() / old["path"]).unlink(missing_ok=True)
    return version, path, sha256


@dataclass(frozen=True)
class Active:
    version: int
    path: Path
    meta: dict[str, Any]


def active_adapter(store: Store, home: Home, base: BaseModel | None = None, log: bool = True) -> Active | None:
    """The version the LLM should use: None when switched off or there is none; else the newest
    whose file matches its sha256 (and, given `base`, whose header names that base)."""
    if not is_enabled(store):
        return None
    for row in versions(store):
        path = home.folder() / row["path"]
        problem = _problem(path, row["sha256"], base)
        if problem is None:
            return Active(row["version"], path, row["meta"])
        if log:
            store.log_event("llm_lora_skipped", {"version": row["version"], "problem": problem})
    return None


def _problem(path: Path, sha256: str, base: BaseModel | None) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    if sha256_file(path) != sha256:
        return f"{path.name} does not match its recorded sha256 (damaged or replaced)"
    if base is not None:
        try:
            trained_on = read_header(path).metadata.get("ownrec.base.model_id")
        except AdapterRefused as error:
            return str(error)
        if trained_on != base.model_id:
            return f"{path.name} was trained on {trained_on}; the model is now {base.model_id}"
    return None


def switch(store: Store, home: Home, on: bool, on_change: Callable[[], None]) -> Active | None:
    """Turn the personal LoRA on or off; then `on_change()`. Turning it on needs a usable
    version: LoraError otherwise, and the switch stays as it was."""
    with store.lock:
        if on:
            if not versions(store):
                raise LoraError("there is no personal LoRA yet: train one with `ownrec lora train`")
            was = is_enabled(store)
            store.set_state(ENABLED_KEY, True)
            found = active_adapter(store, home)
            if found is None:
                store.set_state(ENABLED_KEY, was)
                raise LoraError("no stored version of the personal LoRA is intact (see `ownrec lora status`): "
                                "train a new one with `ownrec lora train --fresh`")
        else:
            store.set_state(ENABLED_KEY, False)
            found = None
        store.log_event("llm_lora_switched", {"on": on})
    on_change()
    return found


def reset(store: Store, home: Home, on_change: Callable[[], None]) -> int:
    """Delete every version and the training checkpoint; switch off (then `on_change()`, before
    the files go). Returns how many versions."""
    with store.lock:
        rows = store.adapter_versions(KIND)
        store.set_state(ENABLED_KEY, False)
    on_change()  # the LLM lets go of the file first
    with store.lock:
        with store.transaction():
            for row in rows:
                store.forget_adapter_version(row["id"])
        store.log_event("llm_lora_reset", {"versions": len(rows)})
    for row in rows:
        (home.folder() / row["path"]).unlink(missing_ok=True)
    checkpoint_path(home).unlink(missing_ok=True)
    checkpoint_note_path(home).unlink(missing_ok=True)
    return len(rows)


def export(store: Store, home: Home, destination: Path, base_path: Path | None = None) -> dict[str, Path]:
    """Copy the newest intact version into the folder `destination` (made if missing) as
    `ownrec-lora-v<N>.gguf`, with an Ollama `Modelfile` (FROM the base, ADAPTER the file) and the
    llama.cpp command line in a README. Refuses to overwrite files; nothing is written then."""
    destination = Path(destination).expanduser()
    if destination.exists() and not destination.is_dir():
        raise LoraError(f"{destination} is a file: give a folder to export into")
    rows = versions(store)
    if not rows:
        raise LoraError("there is no personal LoRA to export: train one with `ownrec lora train`")
    chosen = next((r for r in rows if _problem(home.folder() / r["path"], r["sha256"], None) is None), None)
    if chosen is None:
        raise LoraError("no stored version of the personal LoRA is intact: train a new one with `ownrec lora train --fresh`")
    adapter_name = f"ownrec-lora-v{chosen['version']}.gguf"
    targets = {"adapter": destination / adapter_name, "modelfile": destination / "Modelfile",
               "readme": destination / "README-ownrec-lora.txt"}
    taken = [str(p) for p in targets.values() if p.exists()]
    if taken:
        raise LoraError(f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}: "
                        "choose an empty folder or move them away")
    base_file = str(base_path) if base_path else "/path/to/the/base-model.gguf"
    base_id = chosen["meta"].get("base_model_id", "the base model")
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(home.folder() / chosen["path"], targets["adapter"])
    write_text_atomic(targets["modelfile"],
                      f"# ownrec personal LoRA v{chosen['version']}, trained on {base_id}.\n"
                      f"# Create the model with: ollama create my-ownrec -f Modelfile\n"
                      f"FROM {base_file}\nADAPTER ./{adapter_name}\n")
    write_text_atomic(targets["readme"],
                      f"ownrec personal LoRA, version {chosen['version']} (rank {chosen['meta'].get('rank')}, "
                      f"{chosen['meta'].get('steps')} steps on {chosen['meta'].get('examples')} of your judgements).\n"
                      f"It fits only its base model: {base_id}\n  ({base_file})\n\n"
                      f"llama.cpp:  llama-cli -m {base_file} --lora {adapter_name}\n"
                      f"Ollama:     ollama create my-ownrec -f Modelfile\n\n"
                      "It answers ownrec's question \"would this person enjoy this item?\" with Yes or No;\n"
                      "it was trained on your feedback only, and it is personal data: share it with care.\n")
    return targets


def status(store: Store, home: Home) -> dict[str, Any]:
    """Plain data for `ownrec lora status` and the TUI."""
    rows = versions(store)
    found = active_adapter(store, home, log=False) if rows else None
    return {
        "enabled": is_enabled(store),
        "active_version": found.version if found else None,
        "versions": [{"version": r["version"], "path": r["path"], "sha256": r["sha256"],
                      "created_at": r["created_at"],
                      "intact": _problem(home.folder() / r["path"], r["sha256"], None) is None, **r["meta"]}
                     for r in rows],
        "checkpoint": checkpoint_note(home),  # a run that `ownrec lora train` resumes, or None
    }
