"""The chat models a person already has (agent.core.llm.folders and .discovery): fake Ollama and LM Studio
folders with tiny GGUF headers (no weights), found, described, named, chosen through `ownrec config set
llm.model`, listed by `ownrec models list`, and checked by `ownrec doctor`."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.core.config import Config, ConfigError
from agent.core.llm import discovery, folders
from agent.core.llm.model import LLM, LLMUnavailable, choose_model

CHAT = {"general.architecture": "llama", "general.name": "Tiny Chat", "general.size_label": "3B",
        "general.file_type": 15, "llama.context_length": 4096, "llama.block_count": 2, "llama.embedding_length": 64,
        "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
        "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}
EMBEDDING = {"general.architecture": "nomic-bert", "general.name": "nomic-embed-text", "general.file_type": 1,
             "nomic-bert.context_length": 2048, "nomic-bert.pooling_type": 1}


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def gguf_bytes(metadata: dict, tensors: tuple[tuple[str, tuple[int, ...]], ...] = (("w", (8, 8)),)) -> bytes:
    """A GGUF v3 header: the metadata (uint32, bool and string values) and the tensor table; no tensor data,
    which nothing here reads."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, value in metadata.items():
        out += _string(key)
        if isinstance(value, bool):
            out += struct.pack("<I?", 7, value)
        elif isinstance(value, int):
            out += struct.pack("<II", 4, value)
        else:
            out += struct.pack("<I", 8) + _string(value)
    for name, shape in tensors:
        out += _string(name) + struct.pack(f"<I{len(shape)}QIQ", len(shape), *shape, 0, 0)
    return out


def ollama_model(store: Path, host: str, namespace: str, model: str, tag: str, data: bytes) -> Path:
    """Ollama's layout: the manifest names the model layer's blob by digest, stored as blobs/sha256-<hex>."""
    digest = hashlib.sha256(data).hexdigest()
    blob = store / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    manifest = store / "manifests" / host / namespace / model / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}",
                    "size": len(data)},
                   {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64}]}))
    return blob


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A home folder with an Ollama store and an LM Studio folder; the system-wide Ollama store is a temp path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setattr(folders, "SYSTEM_OLLAMA", tmp_path / "system-ollama")
    store = home / ".ollama" / "models"
    ollama_model(store, "registry.ollama.ai", "library", "llama3.2", "3b", gguf_bytes(CHAT))
    ollama_model(store, "registry.ollama.ai", "library", "nomic-embed-text", "latest", gguf_bytes(EMBEDDING))
    ollama_model(store, "hf.co", "bartowski", "Tiny-GGUF", "Q4_K_M", gguf_bytes({**CHAT, "general.name": "HF"}))
    unlabelled = {k: v for k, v in CHAT.items() if k != "general.size_label"}
    ollama_model(store, "registry.ollama.ai", "someone", "tiny", "latest",
                 gguf_bytes(unlabelled, (("a", (1000, 1000)), ("b", (300_000,)))))
    repo = home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny-GGUF"
    repo.mkdir(parents=True)
    (repo / "Tiny-Q4_K_M.gguf").write_bytes(gguf_bytes(CHAT))
    (repo / "mmproj-Tiny-f16.gguf").write_bytes(gguf_bytes({"general.architecture": "clip"}))
    (repo / "Big-Q8_0-00001-of-00002.gguf").write_bytes(gguf_bytes(CHAT))
    (repo / "Big-Q8_0-00002-of-00002.gguf").write_bytes(b"\0" * 1000)
    (repo / "broken.gguf").write_bytes(b"not a model at all" * 4)
    return home


def by_name(found: discovery.ModelList) -> dict[str, discovery.FoundModel]:
    return {model.name: model for model in found.models}


def test_models_in_ollama_and_lm_studio_are_found_and_described_from_their_headers(home):
    found = discovery.list_models("", context=2048, available=2**40)
    models = by_name(found)
    assert set(models) == {
        "default", "ollama:llama3.2:3b", "ollama:nomic-embed-text:latest", "ollama:hf.co/bartowski/Tiny-GGUF:Q4_K_M",
        "ollama:someone/tiny:latest", "lmstudio:lmstudio-community/Tiny-GGUF/Tiny-Q4_K_M.gguf",
        "lmstudio:lmstudio-community/Tiny-GGUF/Big-Q8_0-00001-of-00002.gguf",
        "lmstudio:lmstudio-community/Tiny-GGUF/broken.gguf"}  # no projector, no second shard
    llama = models["ollama:llama3.2:3b"]
    assert (llama.source, llama.architecture, llama.parameters, llama.quantization, llama.context_length) == (
        "ollama", "llama", "3B", "Q4_K_M", 4096)
    assert llama.chat_template and llama.usable and llama.fits and not llama.problem
    assert Path(llama.path).name.startswith("sha256-") and llama.size == Path(llama.path).stat().st_size
    assert models["ollama:someone/tiny:latest"].parameters == "1.3M"  # counted from the tensors: 1e6 + 3e5
    embedding = models["ollama:nomic-embed-text:latest"]
    assert not embedding.usable and "embedding model (nomic-bert)" in embedding.problem
    shards = models["lmstudio:lmstudio-community/Tiny-GGUF/Big-Q8_0-00001-of-00002.gguf"]
    assert shards.usable and shards.size == len(gguf_bytes(CHAT)) + 1000
    broken = models["lmstudio:lmstudio-community/Tiny-GGUF/broken.gguf"]
    assert not broken.usable and "is not a GGUF model" in broken.problem and broken.architecture == ""
    assert models["default"].in_use and sum(m.in_use for m in found.models) == 1
    searched = {(f.source, Path(f.path)): (f.exists, f.found) for f in found.folders}
    assert searched[("ollama", home / ".ollama" / "models")] == (True, 4)
    assert searched[("ollama", folders.SYSTEM_OLLAMA)] == (False, 0)
    assert searched[("lmstudio", home / ".lmstudio" / "models")] == (True, 3)
    assert searched[("lmstudio", home / ".cache" / "lm-studio" / "models")] == (False, 0)


def test_memory_fit_uses_the_context_and_the_memory_available(home):
    small = by_name(discovery.list_models("", context=2048, available=1000))["ollama:llama3.2:3b"]
    assert small.fits is False and small.memory_needed > 1000
    longer = by_name(discovery.list_models("", context=8192, available=2**40))["ollama:llama3.2:3b"]
    assert longer.fits is True and longer.memory_needed > small.memory_needed


def test_ollama_models_env_the_system_store_and_lm_studios_pointer_are_searched(home, tmp_path, monkeypatch):
    custom, system, lmhome = tmp_path / "custom-ollama", tmp_path / "system-ollama", tmp_path / "lm-home"
    ollama_model(custom, "registry.ollama.ai", "library", "qwen2.5", "0.5b", gguf_bytes(CHAT))
    ollama_model(system, "registry.ollama.ai", "library", "llama3.2", "3b", gguf_bytes({**CHAT, "general.name": "x"}))
    (lmhome / "models" / "pub" / "repo").mkdir(parents=True)
    (lmhome / "models" / "pub" / "repo" / "m.gguf").write_bytes(gguf_bytes(CHAT))
    (home / folders.LMSTUDIO_POINTER).write_text(f"{lmhome}\n")
    monkeypatch.setenv("OLLAMA_MODELS", str(custom))
    found = discovery.list_models("", context=2048, available=2**40)
    assert [(f.source, f.why) for f in found.folders][:3] == [
        ("ollama", "$OLLAMA_MODELS"), ("ollama", "Ollama's default store"),
        ("ollama", "the store of Ollama's Linux service")]
    models = by_name(found)
    assert models["ollama:qwen2.5:0.5b"].usable and models["lmstudio:pub/repo/m.gguf"].usable
    # llama3.2:3b is in the home store and the system one: the name means the first, the other is marked
    same = [m for m in found.models if m.name == "ollama:llama3.2:3b"]
    assert len(same) == 2 and same[0].usable and "already means" in same[1].problem
    assert choose_model("ollama:llama3.2:3b").path == Path(same[0].path)


def test_a_name_is_resolved_at_every_load_so_a_tag_pulled_again_still_works(home):
    first = choose_model("ollama:llama3.2:3b")
    assert first.name == "ollama:llama3.2:3b" and not first.is_default and first.path.name.startswith("sha256-")
    assert choose_model("ollama:nomic-embed-text").path == choose_model("ollama:nomic-embed-text:latest").path
    assert choose_model("OLLAMA:Llama3.2:3B").path == first.path  # Ollama compares names without case
    pulled = ollama_model(home / ".ollama" / "models", "registry.ollama.ai", "library", "llama3.2", "3b",
                          gguf_bytes({**CHAT, "general.name": "newer"}))
    first.path.unlink()  # Ollama prunes the old blob
    assert choose_model("ollama:llama3.2:3b").path == pulled
    lm = choose_model("lmstudio:lmstudio-community/Tiny-GGUF/Tiny-Q4_K_M.gguf")
    assert lm.path == home / ".lmstudio" / "models" / "lmstudio-community" / "Tiny-GGUF" / "Tiny-Q4_K_M.gguf"
    assert choose_model("default").is_default and choose_model("").is_default


def test_an_unknown_or_broken_name_is_refused_with_what_there_is(home):
    with pytest.raises(LLMUnavailable) as error:
        choose_model("ollama:mistral:7b")
    assert "no model is called 'ollama:mistral:7b'" in error.value.problem
    assert "ollama:llama3.2:3b" in error.value.problem and "ownrec models list" in error.value.fix
    (home / ".ollama" / "models" / "manifests" / "registry.ollama.ai" / "library" / "llama3.2" / "3b").write_text("{")
    with pytest.raises(LLMUnavailable, match="cannot be used: its manifest .* cannot be read"):
        choose_model("ollama:llama3.2:3b")


def test_config_set_stores_names_paths_and_default(home, tmp_path, monkeypatch):
    runner = CliRunner()

    def set_model(value: str):
        return runner.invoke(cli, ["config", "set", "llm.model", value])

    done = set_model("ollama:llama3.2:3b")
    assert done.exit_code == 0 and "llm.model = 'ollama:llama3.2:3b'" in done.output and "Tiny Chat" in done.output
    assert Config().get("llm.model") == "ollama:llama3.2:3b"
    assert set_model("someone/tiny").exit_code == 0 and Config().get("llm.model") == "ollama:someone/tiny:latest"
    lm = "lmstudio:lmstudio-community/Tiny-GGUF/Tiny-Q4_K_M.gguf"
    assert set_model(lm).exit_code == 0 and Config().get("llm.model") == lm
    own = tmp_path / "own.gguf"
    own.write_bytes(gguf_bytes(CHAT))
    monkeypatch.chdir(tmp_path)
    assert set_model("own.gguf").exit_code == 0 and Config().get("llm.model") == str(own.resolve())  # absolute
    monkeypatch.chdir(home)
    assert set_model(str(own)).exit_code == 0 and Config().get("llm.model") == str(own.resolve())
    assert set_model("default").exit_code == 0 and Config().get("llm.model") == ""


@pytest.mark.parametrize("value, message", [
    ("ollama:mistral:7b", "no model is called 'ollama:mistral:7b'; the ones that can chat: ollama:hf.co/bartowski/"),
    ("mistral", "no model is called 'mistral'; the ones that can chat: "),
    ("ollama:nomic-embed-text", "cannot be the chat model: it is an embedding model (nomic-bert)"),
    ("lmstudio:lmstudio-community/Tiny-GGUF/broken.gguf", "cannot be the chat model: "),
    ("/nowhere/model.gguf", "/nowhere/model.gguf is not a file"),
])
def test_config_set_refuses_what_cannot_chat_in_one_line(home, value, message):
    Config().set("llm.model", "ollama:llama3.2:3b")
    done = CliRunner().invoke(cli, ["config", "set", "llm.model", value])
    assert done.exit_code == 1 and message in done.output, done.output
    assert "nomic-embed-text" not in done.output or "embedding" in done.output  # never offered as a choice
    assert "Traceback" not in done.output and len(done.output.strip().splitlines()) == 1
    assert Config().get("llm.model") == "ollama:llama3.2:3b"  # unchanged
    with pytest.raises(ConfigError):
        discovery.setting_for(value, 2048)


def test_models_list_marks_the_model_in_use_and_shows_every_folder(home):
    Config().set("llm.model", "ollama:llama3.2:3b")
    done = CliRunner().invoke(cli, ["models", "list"])
    assert done.exit_code == 0 and "Traceback" not in done.output
    lines = done.output.splitlines()
    in_use = [line for line in lines if line.startswith("*")]
    assert len(in_use) == 1 and "ollama:llama3.2:3b" in in_use[0] and "Q4_K_M" in in_use[0]
    assert any(line.startswith("   default ") and "built-in" in line for line in lines)
    assert "cannot be used: it is an embedding model (nomic-bert)" in done.output
    assert "cannot be used: " in done.output and "broken.gguf is not a GGUF model" in done.output
    assert "mmproj" not in done.output and "00002-of-00002" not in done.output
    assert f"{home / '.ollama' / 'models'}  (Ollama's default store): 4 models" in done.output
    assert f"{folders.SYSTEM_OLLAMA}  (the store of Ollama's Linux service): not there" in done.output
    data = json.loads(CliRunner().invoke(cli, ["models", "list", "--json"]).output)
    assert data["setting"] == "ollama:llama3.2:3b" and data["setting_problem"] == ""
    assert [m["name"] for m in data["models"] if m["in_use"]] == ["ollama:llama3.2:3b"]
    assert {f["why"] for f in data["folders"]} >= {"Ollama's default store", "LM Studio's default folder"}


def test_models_list_says_when_nothing_is_there_and_when_the_chosen_model_is_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setattr(folders, "SYSTEM_OLLAMA", tmp_path / "none")
    Config().set("llm.model", "ollama:llama3.2:3b")  # chosen earlier, since removed from Ollama
    done = CliRunner().invoke(cli, ["models", "list"])
    assert done.exit_code == 0 and done.output.count(": not there") == 4
    assert "llm.model is 'ollama:llama3.2:3b', which is not among these models" in done.output
    assert "fix: `ownrec config set llm.model NAME`" in done.output


def test_doctor_names_a_missing_or_unusable_chosen_model_and_the_fix(home):
    runner = CliRunner()
    Config().set("llm.model", "ollama:nomic-embed-text:latest")  # the file was written by hand, or changed since
    doctor = runner.invoke(cli, ["doctor"])
    assert doctor.exit_code == 1
    assert "[FIX] chat model: llm.model chooses ollama:nomic-embed-text:latest, which cannot chat: it is an " \
           "embedding model" in doctor.output and "fix: choose a model from `ownrec models list`" in doctor.output
    Config().set("llm.model", "ollama:gone:1b")
    doctor = runner.invoke(cli, ["doctor"])
    assert "[FIX] chat model: llm.model is 'ollama:gone:1b', and no model is called" in doctor.output
    assert "fix: choose a model from `ownrec models list`" in doctor.output


def test_loading_an_embedding_model_is_refused_before_llama_cpp_sees_it(home):
    with pytest.raises(LLMUnavailable, match="cannot be a chat model: it is an embedding model"):
        LLM.load("ollama:nomic-embed-text")


def test_when_no_model_found_can_chat_an_unknown_name_says_so(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setattr(folders, "SYSTEM_OLLAMA", tmp_path / "none")
    ollama_model(home / ".ollama" / "models", "registry.ollama.ai", "library", "nomic-embed-text", "latest",
                 gguf_bytes(EMBEDDING))
    with pytest.raises(ConfigError, match="no model is called 'llama3', and none of the models found can chat"):
        discovery.setting_for("llama3", 2048)
    (home / ".ollama").rename(tmp_path / "moved")
    with pytest.raises(ConfigError, match="no model is called 'llama3', and none was found in "):
        discovery.setting_for("llama3", 2048)
