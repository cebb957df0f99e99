"""A training run of the personal LoRA as plain data: what it is asked (`TrainingSettings`), what
it gives back (`TrainingResult`, `Outcome`), and `TrainingJob`, which runs one in a background
thread. No torch: the facade imports this module; train.py does the torch work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_RANK = 8
DEFAULT_ALPHA = 16.0

Progress = Callable[[int, int, float], None]  # (step done, total steps, loss of that step)


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
    held_out_share: float = 0.2  # of each answer's examples, never trained on (train.split_rows; 0: none)
    # torch threads; 0: the llm.threads setting (else OWNREC_THREADS, else all cores). On cores
    # that other work keeps busy, 1 is much faster than 2: torch's thread pool waits at a
    # barrier after every operation, and a descheduled thread stalls all of them.
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
    held_out: int = 0  # examples never trained on (train.split_rows)
    held_out_before: float | None = None  # their loss before training
    held_out_after: float | None = None  # ... and with the LoRA that is kept: the best of the checkpoints
    best_step: int = 0  # the step of that LoRA
    stopped_early: bool = False  # the held-out loss stopped improving before the last step
    warning: str | None = None  # too few examples to learn from (train.few_examples_warning)


@dataclass
class Outcome:
    """What a training did: a new adapter version, or a cancelled run that can be resumed."""

    result: TrainingResult
    version: int | None = None
    path: Path | None = None
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {"version": self.version, "path": str(self.path) if self.path else None, "cancelled": r.cancelled,
                "step": r.step, "steps": r.steps, "resumed_from": r.resumed_from,
                "loss_before": r.loss_before, "loss_after": r.loss_after, "held_out": r.held_out,
                "held_out_before": r.held_out_before, "held_out_after": r.held_out_after, "best_step": r.best_step,
                "stopped_early": r.stopped_early, "warning": r.warning,
                "step_seconds": None if r.step_seconds is None else round(r.step_seconds, 3), **r.counts}


# A training to run: given where to report progress and the event that cancels it.
Run = Callable[[Progress, threading.Event], Outcome]


class TrainingJob:
    """A training (`run`, of `steps` steps) in a background thread, for the TUI: `start()`,
    `cancel()`, `wait()`; progress is reported through the callback (from the worker thread) and
    kept in `status()`."""

    def __init__(self, run: Run, steps: int, progress: Progress | None = None):
        self._run_training = run
        self._steps = steps
        self._progress = progress
        self._cancel = threading.Event()
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._step, self._loss = 0, None
        self.outcome: Outcome | None = None
        self.error: BaseException | None = None

    def start(self) -> "TrainingJob":
        with self._guard:
            if self._thread is not None:
                raise RuntimeError("this training job has already started")
            self._thread = threading.Thread(target=self._run, name="ownrec-lora-training", daemon=True)
            self._thread.start()
        return self

    def _report(self, step: int, total: int, loss: float) -> None:
        with self._guard:
            self._step, self._loss = step, loss
        if self._progress is not None:
            self._progress(step, total, loss)

    def _run(self) -> None:
        try:
            outcome = self._run_training(self._report, self._cancel)
            with self._guard:
                self.outcome = outcome
        except BaseException as error:  # kept for the caller: a worker thread has nobody to raise to
            with self._guard:
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
        with self._guard:
            running = self._thread is not None and self._thread.is_alive()
            return {"running": running, "step": self._step, "steps": self._steps, "loss": self._loss,
                    "cancelling": self._cancel.is_set() and running, "error": None if self.error is None else str(self.error)}
