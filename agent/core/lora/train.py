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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.core.atomic import write_bytes_atomic, write_text_atomic
from agent.core.lora import versions
from agent.core.lora.base import DEFAULT_ALPHA, DEFAULT_RANK, LoraBase, _torch, load_base
from agent.core.lora.examples import ExampleSet, examples_from_agent

if TYPE_CHECKING:
    from agent.core.api import Agent

Progress = Callable[[int, int, float], None]  # (step done, total steps, loss of that step)
CHECKPOINT_FORMAT = 1


class TrainingError(RuntimeError):
    """Training cannot start or resume as asked; nothing was changed."""


@dataclass(frozen=True)
class TrainingSettings:
    steps: int = 60
    batch: int = 4
    learning_rate: float = 1e-3
    rank: int = DEFAULT_RANK
    alpha: float = DEFAULT_ALPHA
    seed: int = 0
    checkpoint_every: int = 5
    max_grad_norm: float = 1.0
    # torch threads; 0: the llm.threads setting (else OWNREC_THREADS, else all cores). On cores
    # that other work keeps busy, 1 is much faster than 2: torch's thread pool waits at a
    # barrier after every operation, and a descheduled thread stalls all of them (measured: a
    # forward pass 0.4 s on 1 thread, 2-12 s on 2, with the machine's load at 5 on 2 cores).
    threads: int = 0

    def resuming(self, saved: dict[str, Any]) -> "TrainingSettings":
        """A resumed run continues the saved run: its settings, with this call's number of steps,
        checkpoint interval and threads (which do not change the result)."""
        return TrainingSettings(**(saved | {"steps": self.steps, "checkpoint_every": self.checkpoint_every,
                                            "threads": self.threads}))


@dataclass
class TrainingResult:
    step: int  # steps done in all, across resumes
    steps: int  # the target
    cancelled: bool
    losses: list[float]  # per step of this run (not of earlier runs before a resume)
    loss_before: float | None  # mean weighted loss over the examples (`evaluate`), before the first step
    loss_after: float | None  # ... and after the last (None when cancelled)
    step_seconds: float | None  # median of this run
    resumed_from: int
    step_times: list[float] = field(default_factory=list)  # seconds, per step of this run
    counts: dict[str, int] = field(default_factory=dict)
    weights: Any = None  # LoraWeights when finished
    settings: Any = None  # the TrainingSettings in effect (a resumed run's are the checkpoint's)


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
                     data: Tokenized, loss_before: float | None) -> None:
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
    if path == versions.checkpoint_path():
        write_text_atomic(versions.checkpoint_note_path(), json.dumps(
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
                   checkpoint: Path | None = None, resume: bool = True, progress: Progress | None = None,
                   cancel: threading.Event | None = None, evaluate_loss: bool = True) -> TrainingResult:
    """Train `base`'s LoRA on `examples`. With `checkpoint`, save there every
    `settings.checkpoint_every` steps and on cancel, and (with `resume`) continue from it: its own
    examples, step and settings (but this call's number of steps), when it was made with the
    same base model (else TrainingError)."""
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
                _save_checkpoint(checkpoint, base, optimizer, settings, step, data, loss_before)
            if progress is not None:
                progress(step, settings.steps, losses[-1])
        if cancelled and checkpoint is not None:
            _save_checkpoint(checkpoint, base, optimizer, settings, step, data, loss_before)
        loss_after = None if cancelled or not evaluate_loss else evaluate(base, data)
        return TrainingResult(step, settings.steps, cancelled, losses, loss_before, loss_after,
                              statistics.median(durations) if durations else None, resumed_from, durations,
                              data.counts, None if cancelled else base.weights(), settings)


@dataclass
class Outcome:
    """What `train` did: a new adapter version, or a cancelled run that can be resumed."""

    result: TrainingResult
    version: int | None = None
    path: Path | None = None
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"version": self.version, "path": str(self.path) if self.path else None, "cancelled": r.cancelled,
                "step": r.step, "steps": r.steps, "resumed_from": r.resumed_from,
                "loss_before": r.loss_before, "loss_after": r.loss_after,
                "step_seconds": None if r.step_seconds is None else round(r.step_seconds, 3), **r.counts}


def train(agent: "Agent", settings: TrainingSettings = TrainingSettings(), *, fresh: bool = False,
          progress: Progress | None = None, cancel: threading.Event | None = None,
          base: LoraBase | None = None, log: Callable[[str], None] | None = None) -> Outcome:
    """Train the person's LoRA from their feedback and publish it as the next version (switched
    on, and swapped into the agent's LLM if loaded). Resumes the checkpoint unless `fresh`.
    Cancelled: the checkpoint holds the progress and nothing else changed."""
    from dataclasses import replace

    from agent.core import paths
    from agent.core.llm.model import resolve_threads

    if settings.threads <= 0:
        settings = replace(settings, threads=resolve_threads(int(agent.config.get("llm.threads"))))
    checkpoint = versions.checkpoint_path()
    examples = None
    if fresh or not checkpoint.is_file():  # first: without enough feedback, say so before loading
        examples = examples_from_agent(agent, seed=settings.seed)
    if base is None:
        if log:
            log("loading the language model for training (torch, float32)...")
        base = load_base(agent.config.get("llm.model") or "", rank=settings.rank, alpha=settings.alpha,
                         cache_dir=paths.models_dir() / "llm", threads=settings.threads)
    if fresh:
        checkpoint.unlink(missing_ok=True)
        versions.checkpoint_note_path().unlink(missing_ok=True)
    result = train_examples(base, examples if examples is not None else ExampleSet((), 0, 0, 0), settings,
                            checkpoint=checkpoint, resume=not fresh, progress=progress, cancel=cancel)
    if result.cancelled:
        return Outcome(result)
    used = result.settings
    meta = {"steps": result.step, "rank": used.rank, "alpha": used.alpha, "seed": used.seed,
            "learning_rate": used.learning_rate, "batch": used.batch,
            "loss_before": result.loss_before, "loss_after": result.loss_after, **result.counts}
    version, path, sha256 = versions.publish(agent, result.weights, base.base, meta)
    checkpoint.unlink(missing_ok=True)
    versions.checkpoint_note_path().unlink(missing_ok=True)
    return Outcome(result, version, path, sha256)


class TrainingJob:
    """`train` in a background thread, for the TUI: `start()`, `cancel()`, `wait()`; progress
    is reported through the callback (from the worker thread) and kept in `status()`."""

    def __init__(self, agent: "Agent", settings: TrainingSettings = TrainingSettings(), *, fresh: bool = False,
                 progress: Progress | None = None, base: LoraBase | None = None):
        self._agent = agent
        self._settings = settings
        self._fresh = fresh
        self._progress = progress
        self._base = base
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._step, self._loss = 0, None
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None

    def start(self) -> "TrainingJob":
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("this training job has already started")
            self._thread = threading.Thread(target=self._run, name="ownrec-lora-training", daemon=True)
            self._thread.start()
        return self

    def _report(self, step: int, total: int, loss: float) -> None:
        with self._lock:
            self._step, self._loss = step, loss
        if self._progress is not None:
            self._progress(step, total, loss)

    def _run(self) -> None:
        try:
            outcome = train(self._agent, self._settings, fresh=self._fresh, progress=self._report,
                            cancel=self._cancel, base=self._base)
            with self._lock:
                self.outcome = outcome
        except BaseException as error:  # kept for the caller: a worker thread has nobody to raise to
            with self._lock:
                self.error = error

    def cancel(self) -> None:
        """Stop after the current step; the checkpoint keeps the progress."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """The outcome once finished (re-raising the worker's error), or None on timeout."""
        if self._thread is None:
            raise RuntimeError("start() the training job first")
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if self.error is not None:
            raise self.error
        return self.outcome

    def status(self) -> dict[str, Any]:
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            return {"running": running, "step": self._step, "steps": self._settings.steps, "loss": self._loss,
                    "cancelling": self._cancel.is_set() and running, "error": None if self.error is None else str(self.error)}
