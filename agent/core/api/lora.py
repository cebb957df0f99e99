"""The facade's part for the personal LoRA of the chat LLM (agent.core.lora): its versions, switch, export,
examples and training; a part of the facade which `Agent` (agent.core.api) is built from: the state it uses (`store`, `config`, `home`, `_lock`, the
ranker's state) is the agent's own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core.lora.job import Outcome as LoraOutcome
from agent.core.lora.job import TrainingJob as LoraTrainingJob
from agent.core.lora.job import TrainingSettings as LoraTrainingSettings

if TYPE_CHECKING:
    from agent.core.lora.examples import ExampleSet


class LoraPart:
    def lora_status(self) -> dict[str, Any]:
        """{enabled, active_version, versions, checkpoint}: whether the personal LoRA is on, each
        version (with whether its file is intact) and an unfinished run, if any."""
        from agent.core.lora import versions

        return versions.status(self.store, self.home)

    def switch_lora(self, on: bool) -> int | None:
        """Turn the personal LoRA on or off, in a loaded LLM too; the version now in use, if any.
        LoraError when there is no intact version to turn on (nothing changes then)."""
        from agent.core.lora import versions

        found = versions.switch(self.store, self.home, on, self.apply_llm_adapter)
        return None if found is None else found.version

    def reset_lora(self) -> int:
        """Delete every version of the personal LoRA and its checkpoint; how many versions."""
        from agent.core.lora import versions

        return versions.reset(self.store, self.home, self.apply_llm_adapter)

    def export_lora(self, destination: Path, base_path: Path | None = None) -> dict[str, Path]:
        """Copy the newest intact version into the folder `destination`, with an Ollama Modelfile
        (FROM `base_path`, when given) and a note; the files written, by role."""
        from agent.core.lora import versions

        return versions.export(self.store, self.home, destination, base_path)

    def lora_examples(self, seed: int = 0) -> "ExampleSet":
        """The personal LoRA's training examples from the person's feedback (NotEnoughFeedback
        when there is too little)."""
        from agent.core.lora.examples import examples_from_feedback

        return examples_from_feedback(self.store, lambda: self.judge_profile(extra=1), seed=seed)

    def train_lora(self, settings: LoraTrainingSettings = LoraTrainingSettings(), *, fresh: bool = False,
                   progress: Callable[[int, int, float], None] | None = None, cancel: threading.Event | None = None,
                   log: Callable[[str], None] | None = None) -> LoraOutcome:
        """Train the personal LoRA on the person's feedback and switch the new version on (a loaded
        LLM uses it at once); resumes an unfinished run unless `fresh`. Blocks: loading the model
        and training take minutes; `cancel` stops after the current step, and the checkpoint keeps
        the progress. The training module (torch) is imported only here."""
        from dataclasses import replace

        from agent.core.llm.model import resolve_threads
        from agent.core.lora.train import train

        if settings.threads <= 0:
            settings = replace(settings, threads=resolve_threads(int(self.config.get("llm.threads"))))
        return train(self.store, self.home, lambda: self.lora_examples(seed=settings.seed), settings,
                     model=self.config.get("llm.model") or "", fresh=fresh, progress=progress, cancel=cancel,
                     log=log, on_change=self.apply_llm_adapter)

    def start_lora_training(self, settings: LoraTrainingSettings = LoraTrainingSettings(), *, fresh: bool = False,
                            progress: Callable[[int, int, float], None] | None = None) -> LoraTrainingJob:
        """`train_lora` in a background thread: the job, started (cancel, wait and status on it)."""
        return LoraTrainingJob(lambda report, cancel: self.train_lora(settings, fresh=fresh, progress=report,
                                                                       cancel=cancel),
                               settings.steps, progress).start()
