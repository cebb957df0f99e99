"""Training the personal LoRA: the judge's question, answered by the person's own feedback.

Loss: binary cross-entropy on logit("Yes") - logit("No") at the answer position, weighted per
example (weak negatives count half). AdamW on the LoRA parameters only; the base is frozen.

Held out: a share of the examples (`TrainingSettings.held_out_share` of each answer's, chosen by `seed`) is never trained on; its loss is
measured at every checkpoint, the LoRA that did best on it is the one published, and a run whose held-out
loss has not improved for PATIENCE checkpoints stops early. With fewer than FEW_EXAMPLES examples the
result says that they are too few to learn a taste from (the training loss alone would fall to zero on
a handful and say nothing).

Deterministic: the LoRA starts from `seed`, and the examples of step s are a pure function of
(seed, s) (each epoch a fresh permutation of the training examples), so a run that is cancelled and
resumed from its checkpoint takes exactly the steps an uninterrupted run takes. The checkpoint (LoRA weights,
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

CHECKPOINT_FORMAT = 2  # 2: with the held-out state
MIN_TO_HOLD_OUT = 5   # fewer examples: none is held out
FEW_EXAMPLES = 20     # fewer: the result warns that they are too few to learn from
PATIENCE = 3          # checkpoints without a better held-out loss before the run stops
MIN_IMPROVEMENT = 1e-4


def split_rows(labels: list[float], seed: int, share: float = 0.2) -> tuple[list[int], list[int]]:
    """(training rows, held-out rows) of examples with these labels: `share` of each label's examples held
    out (so that both answers are on each side), chosen by `seed`; none when there are fewer than
    MIN_TO_HOLD_OUT examples in all, or `share` is 0."""
    count = len(labels)
    if count < MIN_TO_HOLD_OUT or share <= 0:
        return list(range(count)), []
    held: list[int] = []
    rng = np.random.default_rng([seed, 1_000_003])
    for label in sorted(set(labels)):
        rows = [row for row, value in enumerate(labels) if value == label]
        take = round(len(rows) * share)
        held += [rows[int(i)] for i in rng.permutation(len(rows))[:take]]
    if not held:
        held = [int(rng.integers(count))]
    chosen = set(held)
    return [row for row in range(count) if row not in chosen], sorted(held)


def few_examples_warning(count: int, held: int) -> str | None:
    """What to tell the person when there are too few examples to learn from (None: enough)."""
    if count >= FEW_EXAMPLES:
        return None
    figure = (f"the held-out figure rests on {held} of them" if held else
              "none could be held out, so there is no figure that tells learning from memorising")
    return (f"only {count} examples: too few to learn a taste from ({figure}); like or rate more items, "
            "then train again")


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


def evaluate(base: LoraBase, data: Tokenized, batch: int = 8, limit: int = EVALUATED_EXAMPLES,
             rows: list[int] | None = None) -> float:
    """The weighted mean loss over the examples (or `rows` of them), or `limit` of them evenly spaced (no
    gradient): a forward pass per example costs about a third of a training step's."""
    torch = _torch()
    rows_of = list(range(len(data.ids))) if rows is None else list(rows)
    chosen = sorted({rows_of[int(i)] for i in np.linspace(0, len(rows_of) - 1, min(limit, len(rows_of)))})
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


def _lora_state(base: LoraBase) -> dict[str, Any]:
    return {f"{layer}.{target}": (module.lora_A.detach().clone(), module.lora_B.detach().clone())
            for (layer, target), module in base.lora_layers().items()}


def _load_lora_state(base: LoraBase, lora: dict[str, Any]) -> None:
    torch = _torch()
    with torch.no_grad():
        for (layer, target), module in base.lora_layers().items():
            A, B = lora[f"{layer}.{target}"]
            module.lora_A.copy_(A)
            module.lora_B.copy_(B)


def _save_checkpoint(path: Path, base: LoraBase, optimizer, settings: TrainingSettings, step: int,
                     data: Tokenized, loss_before: float | None, note: Path | None, held: dict[str, Any]) -> None:
    torch = _torch()
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "base_model_id": base.base.model_id, "settings": asdict(settings),
                "step": step, "loss_before": loss_before, "held_out": held,
                "lora": _lora_state(base),
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
    if isinstance(state, dict) and state.get("format") == 1:
        raise TrainingError(f"{path} was made by an earlier ownrec, which held no examples out; start again with "
                            "`ownrec lora train --fresh`")
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
        train_rows, held_rows = split_rows(data.labels, settings.seed, settings.held_out_share)
        # The held-out loss: before training, the best so far (at which step, with that LoRA), and how many
        # checkpoints have passed without a better one.
        held: dict[str, Any] = {"before": None, "best": None, "best_step": 0, "since": 0, "best_lora": None,
                                "stopped_early": False}
        step, loss_before = 0, None
        if state is not None:
            _load_lora_state(base, state["lora"])
            optimizer.load_state_dict(state["optimizer"])
            step, loss_before, held = int(state["step"]), state["loss_before"], state["held_out"]
        resumed_from = step
        starting = step == 0 and not (cancel is not None and cancel.is_set())
        if loss_before is None and evaluate_loss and starting:
            loss_before = evaluate(base, data, rows=train_rows)
        if held_rows and held["before"] is None and starting:
            held["before"] = held["best"] = evaluate(base, data, rows=held_rows)
            held["best_lora"] = _lora_state(base)
        losses: list[float] = []
        durations: list[float] = []
        cancelled = False
        while step < settings.steps and not held["stopped_early"]:
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            started = time.perf_counter()
            optimizer.zero_grad()
            batch = batch_indices(len(train_rows), settings.batch, settings.seed, step)
            loss = _loss(base, data, [train_rows[i] for i in batch])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
            optimizer.step()
            step += 1
            durations.append(time.perf_counter() - started)
            losses.append(float(loss.detach()))
            if not math.isfinite(losses[-1]):
                raise TrainingError(f"the loss diverged at step {step} ({losses[-1]}); nothing was saved")
            at_checkpoint = step % settings.checkpoint_every == 0 or step == settings.steps
            if held_rows and at_checkpoint:
                current = evaluate(base, data, rows=held_rows)
                if held["best"] is None or current < held["best"] - MIN_IMPROVEMENT:
                    held.update(best=current, best_step=step, since=0, best_lora=_lora_state(base))
                else:
                    held["since"] += 1
                    held["stopped_early"] = held["since"] >= PATIENCE and step < settings.steps
            if checkpoint is not None and at_checkpoint:
                _save_checkpoint(checkpoint, base, optimizer, settings, step, data, loss_before, checkpoint_note, held)
            if progress is not None:
                progress(step, settings.steps, losses[-1])
        if cancelled and checkpoint is not None:
            _save_checkpoint(checkpoint, base, optimizer, settings, step, data, loss_before, checkpoint_note, held)
        if not cancelled and held["best_lora"] is not None:  # what is published: the LoRA that did best held out
            _load_lora_state(base, held["best_lora"])
        loss_after = None if cancelled or not evaluate_loss else evaluate(base, data, rows=train_rows)
        return TrainingResult(step, settings.steps, cancelled, losses, loss_before, loss_after,
                              statistics.median(durations) if durations else None, resumed_from, durations,
                              data.counts, None if cancelled else base.weights(), settings,
                              held_out=len(held_rows), held_out_before=held["before"],
                              held_out_after=None if cancelled else held["best"],
                              best_step=held["best_step"] if held_rows else step,
                              stopped_early=bool(held["stopped_early"]),
                              warning=few_examples_warning(len(data.ids), len(held_rows)))


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
            "loss_before": result.loss_before, "loss_after": result.loss_after, "held_out": result.held_out,
            "held_out_before": result.held_out_before, "held_out_after": result.held_out_after,
            "best_step": result.best_step, "stopped_early": result.stopped_early, "warning": result.warning,
            **result.counts}
    version, path, sha256 = versions.publish(store, home, result.weights, base.base, meta, on_change)
    checkpoint.unlink(missing_ok=True)
    note.unlink(missing_ok=True)
    return Outcome(result, version, path, sha256)
