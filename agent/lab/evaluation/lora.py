"""A personal LoRA per simulated user, for `ownrec eval rerank --lora-steps N`: the reranking
evaluation's "with the personal LoRA" row (agent.lab.evaluation.rerank calls the hook with an
agent that holds only that user's training ratings)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.lab.evaluation.rerank import EvalUser
    from agent.core.api import Agent


def per_user_lora(steps: int, folder: Path, threads: int = 1, seed: int = 0) -> Callable[["EvalUser", "Agent"], Path | None]:
    """A hook that trains a fresh LoRA (the product's examples and settings, `steps` steps) on
    each user's own feedback and returns its GGUF; None (the base model) when the user's
    feedback is not enough to train on. The torch model loads once, on first use."""
    from agent.core.llm.adapter import write_adapter
    from agent.core.lora.base import load_base
    from agent.core.lora.examples import NotEnoughFeedback
    from agent.core.lora.job import TrainingSettings
    from agent.core.lora.train import train_examples

    folder.mkdir(parents=True, exist_ok=True)
    loaded = {}

    def hook(user: "EvalUser", agent: "Agent") -> Path | None:
        try:
            examples = agent.lora_examples(seed=seed)
        except NotEnoughFeedback:
            return None
        if "base" not in loaded:
            loaded["base"] = load_base(threads=threads)
        base = loaded["base"]
        base.reset_lora(seed)
        result = train_examples(base, examples, TrainingSettings(steps=steps, threads=threads, seed=seed),
                                evaluate_loss=False)
        path = folder / f"user-{user.user_id}.gguf"
        write_adapter(path, result.weights, base.base, {"steps": result.step, "user": user.user_id})
        return path

    return hook
