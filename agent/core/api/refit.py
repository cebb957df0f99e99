"""The facade's part for the periodic full refit of the personal adapter (every `ranker.retrain_every`
judgements), when the agent runs it in the background (`Agent.open(background_refit=True)`, as the TUI does):
the judgement that makes a refit due returns as fast as any other, and the refit trains outside the lock on a
copy of the labels. A part of the facade which `Agent` (agent.core.api) is built from: the state it uses is
the agent's own.

Judgements made while a refit trains keep their online updates: the refit's change is added to the adapter
they left (`rebase`). A refit that finishes after any other change to the adapter (a trait edit, a retrain, a
taste sentence) is dropped rather than written over it, and the next judgement starts another. Without the background
(the CLI's one-shot commands, the lab's simulated people) the refit runs inside `Agent.feedback`, as before,
so that the same history always gives the same adapter.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from agent.core.ranker import PersonalAdapter, TrainingSettings, fit
from agent.core.ranker.training import bound_adapter


_BLAS_LIMIT = None


def one_blas_thread() -> None:
    """Keep the numeric library (BLAS, for every thread of this process) to one thread. With a refit in the
    background, a multi-threaded BLAS lets it take every core and the person's feedback and feed wait behind it
    (`ownrec bench`, with a history); the ranker's products are small enough that one thread costs them
    nothing. Process-wide, kept for the process's life; the encoder and the chat model
    run their own thread pools."""
    global _BLAS_LIMIT
    if _BLAS_LIMIT is None:
        from threadpoolctl import threadpool_limits

        _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")


def rebase(fitted: PersonalAdapter, start: PersonalAdapter, current: PersonalAdapter) -> PersonalAdapter:
    """A refit from `start` laid over `current` (`start` plus online updates since): current's changes added
    to the refit's, within the adapter's bound."""
    rebased = fitted.copy()
    rebased.p = (fitted.p + (current.p - start.p)).astype(np.float32)
    rebased.B = (fitted.B + (current.B - start.B)).astype(np.float32)
    rebased.signal_weights = (fitted.signal_weights + (current.signal_weights - start.signal_weights)).astype(np.float32)
    rebased.trained_on = current.trained_on
    bound_adapter(rebased)
    return rebased


class RefitPart:
    _refit_thread: threading.Thread | None = None
    _refit_due = False  # a refit was due but did not land: the next judgement starts one
    _adapter_rewrites = 0  # saves of the personal adapter other than a judgement's online update

    def wait_for_refit(self, timeout: float | None = None) -> bool:
        """Wait for a background refit in progress, if any (at most `timeout` seconds); whether none is left."""
        thread = self._refit_thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _start_refit(self, start: PersonalAdapter, settings: TrainingSettings, held: np.ndarray | None,
                     pinned: bool, meta: dict[str, Any]) -> bool:
        """Refit from `start` (the adapter just saved) in a thread; False if one is still running (that one
        lands, and the next judgement starts another). Under the lock."""
        if self._refit_thread is not None and self._refit_thread.is_alive():
            self._refit_due = True
            return False
        self._refit_due = False
        # Counted now, not in the thread: any rewrite after this judgement must drop the refit.
        rewrites = self._adapter_rewrites
        self._refit_thread = threading.Thread(target=self._refit, args=(start, rewrites, settings, held, pinned, meta),
                                              name="ownrec-refit", daemon=True)
        self._refit_thread.start()
        return True

    def _refit(self, start: PersonalAdapter, rewrites: int, settings: TrainingSettings, held: np.ndarray | None,
               pinned: bool, meta: dict[str, Any]) -> None:
        try:
            with self._lock:
                scorer = self.scorer()
                labels = self._feedback_rows().labels.snapshot()
            fitted, _ = fit(start, scorer, labels, settings, fixed=held)
            with self._lock:
                if self._adapter_rewrites != rewrites or self._scorer is not scorer:
                    self._refit_due = True
                    return
                if self._personal is not start:
                    fitted = rebase(fitted, start, self._personal)
                if pinned:
                    fitted = self.traits.enforce_pins(fitted)
                self._save_personal(fitted, "retrain", meta)
                self.traits.snapshot()
        except Exception as error:  # a thread's error would go nowhere: keep it in the event log
            with self._lock:
                self._refit_due = True
                self.store.log_event("refit_failed", {"error": f"{type(error).__name__}: {error}"})
