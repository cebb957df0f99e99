"""Training the personal LoRA: the judge's question, answered by the person's own feedback.

Loss: binary cross-entropy on logit("Yes") - logit("No") at the answer position, weighted per
example (weak negatives count half). AdamW on the LoRA parameters only; the base is frozen.

Deterministic: the LoRA starts from `seed`, and the examples of step s are a pure function of
(seed, s) (each epoch a fresh permutation), so a run that is cancelled and resumed from its
checkpoint takes exactly the steps an uninterrupted run takes. The checkpoint (LoRA weights,
optimizer state, step, the tokenized examples themselves) is written atomically every few steps
and when cancelled; a finished run exports a GGUF adapter (versions.publish) and drops it.
"""

from __future__ import annotations

import io
import json
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_bytes_atomic, write_text_atomic
from agent.core.lora import versions
from agent.core.lora.base import LoraBase, _torch, load_base
from agent.core.lora.examples import ExampleSet
from agent.core.lora.job import Outcome, Progress, TrainingError, TrainingResult, TrainingSettings
from agent.core.paths import Home, models_dir
from agent.core.store import Store

CHECKPOINT_FORMAT = 1


def batch_indices(count: int, batch: int, seed: int, step: int) -> list[int]:
    """The examples of step `step`: consecutive slots of per-epoch permutations of range(count)."""
    chosen = []
    for slot in range(step * batch, (step + 1) * batch):
        epoch, position = divmod(slot, count)
        chosen.append(int(np.random.default_rng([seed, epoch]).permutation(count)[position]))
    return chosen


@dataclass
class Tokenized:
    ids: list[list[int]]
    labels: list[float]
    weights: list[float]
    fingerprint: str
    counts: dict[str, int]

    @classmethod
    def of(cls, base: LoraBase, examples: ExampleSet) -> "Tokenized":
        return cls([base.judge_ids(e.profile, e.item_text) for e in examples.examples],
                   [1.0 if e.enjoyed else 0.0 for e in examples.examples],
                   [float(e.weight) for e in examples.examples], examples.fingerprint(), examples.counts())


def _loss(base: LoraBase, data: Tokenized, rows: list[int]):
    torch = _torch()
    margins = base.answer_margins(base.batch([data.ids[i] for i in rows]))
    labels = torch.tensor([data.labels[i] for i in rows])
    weights = torch.tensor([data.weights[i] for i in rows])
    losses = torch.nn.functional.binary_cross_entropy_with_logits(margins, labels, reduction="none")
    return (losses * weights).sum() / weights.sum()


EVALUATED_EXAMPLES = 64  # loss before/after is measured on at most this many (evenly spaced)


def evaluate(base: LoraBase, data: Tokenized, batch: int = 8, limit: int = EVALUATED_EXAMPLES) -> float:
    """The weighted mean loss over the examples, or `limit` of them evenly spaced (no gradient):
    a forward pass per example costs about a third of a training step's."""
    torch = _torch()
    chosen = sorted({int(i) for i in np.linspace(0, len(data.ids) - 1, min(limit, len(data.ids)))})
    total = weight = 0.0
    with torch.no_grad():
        for start in range(0, len(chosen), batch):
            rows = chosen[start : start + batch]
            w = sum(data.weights[i] for i in rows)
            total += float(_loss(base, data, rows)) * w
            weight += w
    return total / weight


def p_yes(base: LoraBase, profile, item_texts: list[str]) -> np.ndarray:
    """P("Yes") against P("No") for each item, by the torch model as it stands."""
    torch = _torch()
    with torch.no_grad():
        margins = base.answer_margins(base.batch([base.judge_ids(profile, text) for text in item_texts]))
    return 1 / (1 + np.exp(-margins.numpy().astype(np.float64)))


def _save_checkpoint(path: Path, base: LoraBase, optimizer, settings: TrainingSettings, step: int,
                     data: Tokenized, loss_before: float | None, note: Path | None) -> None:
    torch = _torch()
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "base_model_id": base.base.model_id, "settings": asdict(settings),
                "step": step, "loss_before": loss_before,
                "lora": {f"{layer}.{target}": (module.lora_A.detach().clone(), module.lora_B.detach().clone())
                         for (layer, target), module in base.lora_layers().items()},
                "optimizer": optimizer.state_dict(),
                "data": {"ids": data.ids, "labels": data.labels, "weights": data.weights,
                         "fingerprint": data.fingerprint, "counts": data.counts}}, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    if note is not None:
        write_text_atomic(note, json.dumps(
            {"step": step, "steps": settings.steps, "base_model_id": base.base.model_id, "saved_at": time.time()}))


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, or None if there is none; TrainingError if it is unreadable."""
    if not Path(path).is_file():
        return None
    torch = _torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a torn or foreign file: torch raises several kinds
        raise TrainingError(f"the training checkpoint {path} is unreadable ({type(error).__name__}); "
                            "start again with `ownrec lora train --fresh`") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not an ownrec LoRA checkpoint; start again with `ownrec lora train --fresh`")
    return state


def train_examples(base: LoraBase, examples: ExampleSet | Tokenized, settings: TrainingSettings, *,
                   checkpoint: Path | None = None, checkpoint_note: Path | None = None, resume: bool = True,
                   progress: Progress | None = None, cancel: threading.Event | None = None,
                   evaluate_loss: bool = True) -> TrainingResult:
    """Train `base`'s LoRA on `examples`. With `checkpoint`, save there every
    `settings.checkpoint_every` steps and on cancel, and (with `resume`) continue from it: its own
    examples, step and settings (but this call's number of steps), when it was made with the
    same base model (else TrainingError). With `checkpoint_note`, each save also writes its step
    there as JSON, which status can read without torch."""
    torch = _torch()
    with base.lock:
        state = read_checkpoint(checkpoint) if checkpoint is not None and resume else None
        if state is not None:
            if state["base_model_id"] != base.base.model_id:
                raise TrainingError(f"the checkpoint was made with {state['base_model_id']}, the model is now "
                                    f"{base.base.model_id}: start again with `ownrec lora train --fresh`")
            settings = settings.resuming(state["settings"])
            data = Tokenized(**state["data"])
        else:
            data = examples if isinstance(examples, Tokenized) else Tokenized.of(base, examples)
        if settings.rank != base.rank or settings.alpha != base.alpha:
            raise TrainingError(f"the loaded model carries a rank {base.rank}, alpha {base.alpha} LoRA; "
                                f"the run needs rank {settings.rank}, alpha {settings.alpha}")
        if settings.threads > 0:
            torch.set_num_threads(settings.threads)
        torch.manual_seed(settings.seed)
        if not data.ids:
            raise TrainingError("no training examples")
        base.lora_enabled(True)
        base.reset_lora(settings.seed)
        parameters = base.parameters()
        optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=0.0)
        step, loss_before = 0, None
        if state is not None:
            with torch.no_grad():
                for (layer, target), module in base.lora_layers().items():
                    A, B = state["lora"][f"{layer}.{target}"]
                    module.lora_A.copy_(A)
                    module.lora_B.copy_(B)
            optimizer.load_state_dict(state["optimizer"])
            step, loss_before = int(state["step"]), state["loss_before"]
        resumed_from = step
        if loss_before is None and evaluate_loss and step == 0 and not (cancel is not None and cancel.is_set()):
            loss_before = evaluate(base, data)
        losses: list[float] = []
        durations: list[float] = []
        cancelled = False
        while step < settings.steps:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            started = time.perf_counter()
            optimizer.zero_grad()
            loss = _loss(base, data, batch_indices(len(data.ids), settings.batch, settings.seed, step))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
            optimizer.step()
            step += 1
            durations.append(time.perf_counter() - started)
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise TrainingError(f"the loss diverged at step {step} ({losses[-1]}); nothing was saved")
            if checkpoint is not None and (step % settings.checkpoint_every == 0 or step == settings.steps):
                _save_checkpoint(checkpoint, base, optimizer, settings, step, data, loss_before, checkpoint_note)
            if progress is not None:
                progress(step, settings.steps, losses[-1])
        if cancelled and checkpoint is not None:
            _save_checkpoint(checkpoint, base, optimizer, settings, step, data, loss_before, checkpoint_note)
        loss_after = None if cancelled or not evaluate_loss else evaluate(base, data)
        return TrainingResult(step, settings.steps, cancelled, losses, loss_before, loss_after,
                              statistics.median(durations) if durations else None, resumed_from, durations,
                              data.counts, None if cancelled else base.weights(), settings)


def train(store: Store, home: Home, examples: Callable[[], ExampleSet],
          settings: TrainingSettings = TrainingSettings(), *, model: str = "", fresh: bool = False,
          progress: Progress | None = None, cancel: threading.Event | None = None,
          log: Callable[[str], None] | None = None, on_change: Callable[[], None] = lambda: None) -> Outcome:
    """Train the person's LoRA and publish it as the next version in `home` (switched on; then
    `on_change()`, which swaps it into a loaded LLM). Resumes the checkpoint unless `fresh`.
    Cancelled: the checkpoint holds the progress and nothing else changed.

    `examples()` builds the person's examples; it is called only when a run starts afresh.
    `model` is the llm.model setting (empty: the built-in model); `settings.threads` should be
    resolved already (0 lets torch choose)."""
    checkpoint = versions.checkpoint_path(home)
    note = versions.checkpoint_note_path(home)
    data = None
    if fresh or not checkpoint.is_file():  # first: without enough feedback, say so before loading
        data = examples()
    if log:
        log("loading the language model for training (torch, float32)...")
    base = load_base(model, rank=settings.rank, alpha=settings.alpha, cache_dir=models_dir() / "llm",
                     threads=settings.threads)
    if fresh:
        checkpoint.unlink(missing_ok=True)
        note.unlink(missing_ok=True)
    result = train_examples(base, data if data is not None else ExampleSet((), 0, 0, 0), settings,
                            checkpoint=checkpoint, checkpoint_note=note, resume=not fresh, progress=progress,
                            cancel=cancel)
    if result.cancelled:
        return Outcome(result)
    used = result.settings
    meta = {"steps": result.step, "rank": used.rank, "alpha": used.alpha, "seed": used.seed,
            "learning_rate": used.learning_rate, "batch": used.batch,
            "loss_before": result.loss_before, "loss_after": result.loss_after, **result.counts}
    version, path, sha256 = versions.publish(store, home, result.weights, base.base, meta, on_change)
    checkpoint.unlink(missing_ok=True)
    note.unlink(missing_ok=True)
    return Outcome(result, version, path, sha256)
