"""The facade's part that imports files: the rows written (agent.core.importers), the new items encoded a page
at a time (`Agent.ensure_embeddings`), the model retrained on the feedback; and an import stopped after its rows
were written (`UnfinishedImports`) finished by the next run, which says so. A part of the facade which `Agent`
(agent.core.api) is built from: the state it uses is the agent's own."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.core.store import UnfinishedImports

Progress = Callable[[int, int], None]
Say = Callable[[str], None]


class ImportPart:
    def import_file(self, path: Path, format: str | None = None, progress: Progress | None = None,
                    scale: int | None = None, say: Say | None = None):
        """Import one file, encode its new items and retrain on its feedback; an import stopped earlier is
        finished with it, and `say` is told so first."""
        from agent.core.importers import import_file

        with self._lock:
            earlier = UnfinishedImports(self.store).entries()
        if earlier and say:
            say(self._finishing_sentence(earlier))
        with self._lock:
            report = import_file(self.store, Path(path), format, scale)
            self._catalog = self._scorer = None
            unfinished = UnfinishedImports(self.store).entries()  # the earlier ones, and this one if it wrote
        self._finish(unfinished, progress)
        return report

    def import_demo(self, progress: Progress | None = None, prior_progress: Progress | None = None,
                    say: Say | None = None):
        """The demo catalog, encoded, and release 0 learned from its public ratings (the first time, and again
        after the encoder changed: `ensure_demo_prior`)."""
        from agent.core.importers import import_demo

        with self._lock:
            report = import_demo(self.store)
            self._catalog = self._scorer = None
            unfinished = UnfinishedImports(self.store).entries()
        self.ensure_embeddings(progress)
        self.ensure_demo_prior(prior_progress, say)
        self._finish(unfinished, progress)
        return report

    def finish_interrupted_imports(self, progress: Progress | None = None, say: Say | None = None) -> bool:
        """Finish the imports whose rows were written but whose items were not all encoded, or whose feedback
        the model has not learned from (the process was killed, the machine stopped): encode what is missing
        and retrain, saying so first through `say`. False when there was nothing to finish."""
        with self._lock:
            unfinished = UnfinishedImports(self.store).entries()
        if not unfinished:
            return False
        if say:
            say(self._finishing_sentence(unfinished))
        self._finish(unfinished, progress)
        return True

    def _finish(self, unfinished: list[dict[str, Any]], progress: Progress | None) -> None:
        """Encode what is missing, retrain when the imports added feedback, and strike them off."""
        self.ensure_embeddings(progress)
        if any(entry["feedback"] for entry in unfinished):
            self.retrain()
        UnfinishedImports(self.store).finished(unfinished)

    def _finishing_sentence(self, unfinished: list[dict[str, Any]]) -> str:
        names = ", ".join(Path(entry["path"]).name for entry in unfinished)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(min(entry["at"] for entry in unfinished)))
        missing = self.store.count_without_embedding(self.encoder.model_id)
        work = [f"encoding {missing:,} item{'' if missing == 1 else 's'}"] if missing else []
        if any(entry["feedback"] for entry in unfinished):
            work.append("retraining your model on its feedback")
        return (f"finishing the import of {names}, interrupted after its rows were saved at {when}: "
                f"{', '.join(work) or 'nothing left to do'}")
