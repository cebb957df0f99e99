"""The chat LLM in torch, for training its personal LoRA: the same GGUF llama.cpp runs, loaded by
transformers and dequantized to float32 on the CPU, with a LoRA on the attention projections.

The LoRA is a small wrapper around each of q, k, v, o of every layer (`LoraLinear`), shaped like
PEFT's (A (r, in), B (out, r), update alpha / r * B @ A), so its weights go straight into a GGUF
adapter (agent.core.llm.adapter). The base stays frozen. No peft: the wrapper is twenty lines
and the GGUF export needs exactly this layout.

The loss reads only two rows of the output layer (the "Yes" and "No" tokens) at each example's
last position, instead of the whole 49,152-token vocabulary at every position.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.llm import judge
from agent.core.llm.adapter import TARGETS, BaseModel, LoraWeights, describe_base
from agent.core.llm.model import LLM, LLMUnavailable, choose_model, read_gguf_info, verify_default
from agent.core.lora.job import DEFAULT_ALPHA, DEFAULT_RANK


class TrainingUnavailable(RuntimeError):
    """torch or transformers cannot run here; the message names the fix."""


def _torch():
    try:
        import torch
        import transformers  # noqa: F401  (checked here: the error names the fix once)
    except ImportError as error:
        raise TrainingUnavailable(
            f"training the personal LoRA needs torch and transformers ({error}); fix: "
            "`.venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e '.[models]'`") from None
    return torch


def lora_linear_class():
    """`LoraLinear`, defined on first use so that importing this module does not import torch."""
    global _LoraLinear
    if _LoraLinear is None:
        torch = _torch()

        class LoraLinear(torch.nn.Module):
            """base(x) + alpha / r * (x A^T) B^T, with the base frozen."""

            def __init__(self, base: Any, rank: int, alpha: float):
                super().__init__()
                self.base = base
                self.rank = rank
                self.scaling = alpha / rank
                self.lora_A = torch.nn.Parameter(torch.zeros(rank, base.in_features))
                self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, rank))
                self.enabled = True

            def forward(self, x):
                out = self.base(x)
                if self.enabled:
                    out = out + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling
                return out

        _LoraLinear = LoraLinear
    return _LoraLinear


_LoraLinear = None


@dataclass
class Batch:
    """Token ids of several examples, right-padded: each example's answer is read at `last`."""

    ids: Any  # LongTensor (n, length)
    mask: Any  # LongTensor (n, length)
    last: Any  # LongTensor (n,)


class LoraBase:
    """The base model with LoRA layers attached (zero update until trained). One training at a
    time: hold `lock` while using it."""

    def __init__(self, model: Any, tokenizer: Any, base: BaseModel, path: Path, rank: int, alpha: float,
                 load_seconds: float):
        self.model = model
        self.tokenizer = tokenizer
        self.base = base
        self.path = path
        self.rank = rank
        self.alpha = alpha
        self.load_seconds = load_seconds
        self.lock = threading.Lock()
        self.yes_id, self.no_id = self._answer_ids()

    # -- the LoRA layers --------------------------------------------------------------------

    def lora_layers(self) -> dict[tuple[int, str], Any]:
        """(layer, GGUF target name) -> its LoraLinear."""
        found = {}
        for index, layer in enumerate(self.model.model.layers):
            for module_name, target in TARGETS.items():
                found[(index, target)] = getattr(layer.self_attn, module_name)
        return found

    def parameters(self) -> list[Any]:
        return [p for layer in self.lora_layers().values() for p in (layer.lora_A, layer.lora_B)]

    def reset_lora(self, seed: int) -> None:
        """A fresh LoRA as PEFT starts one: A Kaiming-uniform (from `seed`), B zero."""
        torch = _torch()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in self.lora_layers().values():
                bound = 1 / np.sqrt(layer.lora_A.shape[1])  # kaiming_uniform_(a=sqrt(5)), as PEFT
                layer.lora_A.copy_(torch.rand(layer.lora_A.shape, generator=generator) * 2 * bound - bound)
                layer.lora_B.zero_()

    def weights(self) -> LoraWeights:
        pairs = {key: (layer.lora_A.detach().numpy().copy(), layer.lora_B.detach().numpy().copy())
                 for key, layer in self.lora_layers().items()}
        return LoraWeights(self.rank, self.alpha, pairs)

    def load_weights(self, weights: LoraWeights) -> None:
        torch = _torch()
        if weights.rank != self.rank or weights.alpha != self.alpha:
            raise ValueError(f"rank/alpha {weights.rank}/{weights.alpha} differ from the model's {self.rank}/{self.alpha}")
        with torch.no_grad():
            for key, layer in self.lora_layers().items():
                A, B = weights.pairs[key]
                layer.lora_A.copy_(torch.from_numpy(np.asarray(A, np.float32)))
                layer.lora_B.copy_(torch.from_numpy(np.asarray(B, np.float32)))

    def lora_enabled(self, enabled: bool) -> None:
        for layer in self.lora_layers().values():
            layer.enabled = enabled

    # -- tokens and the answer ----------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """As llama.cpp tokenizes for the judge: no BOS, special tokens parsed."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def judge_ids(self, profile: judge.Profile, item_text: str) -> list[int]:
        prefix_ids, suffix_ids = judge.tokens(self.tokenize, profile, item_text)
        return prefix_ids + suffix_ids

    def _answer_ids(self) -> tuple[int, int]:
        yes, no = self.tokenize(judge.YES), self.tokenize(judge.NO)
        if len(yes) != 1 or len(no) != 1 or yes == no:
            raise ValueError(f"{self.base.model_id}: {judge.YES!r} and {judge.NO!r} are not single, distinct tokens")
        return yes[0], no[0]

    def batch(self, sequences: Sequence[Sequence[int]]) -> Batch:
        torch = _torch()
        length = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), length), 0, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(list(sequence), dtype=torch.long)
            mask[row, : len(sequence)] = 1
        return Batch(ids, mask, torch.tensor([len(s) - 1 for s in sequences], dtype=torch.long))

    def answer_margins(self, batch: Batch):
        """logit(Yes) - logit(No) at each example's last token (a tensor, differentiable).
        Right padding with a causal mask: the padding never reaches a real position."""
        hidden = self.model.model(input_ids=batch.ids, attention_mask=batch.mask).last_hidden_state
        last = hidden[range(len(batch.last)), batch.last]
        rows = self.model.lm_head.weight[[self.yes_id, self.no_id]]
        logits = last @ rows.T
        return logits[:, 0] - logits[:, 1]

    def last_logits(self, ids: Sequence[int]) -> np.ndarray:
        """The full next-token logits after `ids` (for comparing with llama.cpp)."""
        torch = _torch()
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([list(ids)], dtype=torch.long))
        return out.logits[0, -1].numpy().astype(np.float32)


_CACHE: dict[tuple[str, int, float], LoraBase] = {}
_CACHE_LOCK = threading.Lock()


def base_for(model_setting: str = "", cache_dir: Path | None = None) -> tuple[Path, BaseModel]:
    """The GGUF the `llm.model` setting names (checked as `LLM.load` checks it) and its description."""
    choice = choose_model(model_setting)
    if choice.is_default:
        verify_default(choice.path, cache_dir)
    try:
        info = read_gguf_info(choice.path)
    except (OSError, ValueError) as error:
        raise LLMUnavailable(f"cannot read {choice.path} ({error})", "point llm.model at a complete GGUF file") from None
    return choice.path, describe_base(info, LLM.model_id_for(choice.path, choice.is_default))


def load_base(model_setting: str = "", *, rank: int = DEFAULT_RANK, alpha: float = DEFAULT_ALPHA,
              cache_dir: Path | None = None, threads: int = 0, keep: bool = True) -> LoraBase:
    """The base model of `llm.model` (empty: the packaged SmolLM2) in torch, float32, with a zero
    LoRA attached. Loading takes 20-30 s on 2 cores and ~1 GB, so the last one is kept in this
    process (`keep`) until `release_bases()`."""
    path, base = base_for(model_setting, cache_dir)
    key = (str(path.resolve()), rank, alpha)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    torch = _torch()
    from agent.core.llm.model import resolve_threads

    torch.set_num_threads(resolve_threads(threads))
    import transformers

    started = time.perf_counter()
    try:
        with _quiet_transformers():
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                                      dtype=torch.float32)
    except Exception as error:  # transformers raises many kinds for a GGUF it cannot convert
        raise TrainingUnavailable(f"transformers cannot load {path.name} for training ({type(error).__name__}: "
                                  f"{error}); fix: use the built-in model (`ownrec config unset llm.model`)") from None
    model.eval()  # no dropout: training is deterministic
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    lora_linear = lora_linear_class()
    for layer in model.model.layers:
        for module_name in TARGETS:
            setattr(layer.self_attn, module_name, lora_linear(getattr(layer.self_attn, module_name), rank, alpha))
    loaded = LoraBase(model, tokenizer, base, path, rank, alpha, time.perf_counter() - started)
    if keep:
        with _CACHE_LOCK:
            _CACHE.clear()  # one at a time: each is about 1 GB
            _CACHE[key] = loaded
    return loaded


@contextlib.contextmanager
def _quiet_transformers():
    """No warnings and no progress bars on the terminal while loading: the GGUF converter draws
    its own tqdm bar, which transformers' switch does not reach, so it is muted for the load."""
    import transformers
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()


def release_bases() -> None:
    """Drop the kept torch model (about 1 GB)."""
    with _CACHE_LOCK:
        _CACHE.clear()
