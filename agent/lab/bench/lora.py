"""How fast the personal LoRA trains and how much memory it takes: figures for `ownrec bench`.

The measurement runs in a child process, so its peak resident memory is the training's own
(the child reports its `ru_maxrss`, and the parent reads RUSAGE_CHILDREN as a cross-check), not
whatever the calling app already holds. Examples are real judge prompts with a short profile,
about 64 tokens each, trained in batches as `ownrec lora train` does.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

SHORT_ITEMS = [
    ("Star Voyage", "Star Voyage (1979). Sci-Fi. A crew explores a distant galaxy.", True),
    ("Robot Dawn", "Robot Dawn (1984). Sci-Fi, Action. Androids rise on Mars.", True),
    ("Orbit", "Orbit (1995). Sci-Fi, Thriller. Stranded on a space station.", True),
    ("Paris Kisses", "Paris Kisses (1992). Romance, Comedy. Love in Paris.", False),
    ("Wedding Season", "Wedding Season (1997). Romance. A bridesmaid in love.", False),
    ("Love Letters", "Love Letters (1994). Romance. Old letters, old lovers.", False),
]


def bench_training(steps: int = 4, batch: int = 4, threads: int = 0, warmup: int = 1,
                   timeout: float = 1200.0) -> dict[str, Any]:
    """Train `warmup + steps` steps in a child process; return the median step time (after the
    warm-up), the load time and the peak memory, as plain data. threads 0: OWNREC_THREADS, else
    all cores."""
    params = {"steps": steps, "batch": batch, "threads": threads, "warmup": warmup}
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "agent.lab.bench.lora", json.dumps(params)],
                               capture_output=True, text=True, timeout=timeout)
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"the LoRA training benchmark failed: {' | '.join(tail)}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["peak_rss_mb_children"] = round(children / 1024, 1)  # Linux: KiB (the largest child so far)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def _child(params: dict[str, Any]) -> dict[str, Any]:
    from agent.core.llm import judge
    from agent.core.llm.model import resolve_threads
    from agent.core.lora.base import load_base
    from agent.core.lora.examples import synthetic_examples
    from agent.core.lora.job import TrainingSettings
    from agent.core.lora.train import Tokenized, train_examples

    threads = resolve_threads(int(params["threads"]))
    started = time.perf_counter()
    base = load_base(threads=threads, keep=False)
    load_seconds = time.perf_counter() - started
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    profile = judge.Profile(("Star Voyage", "Robot Dawn"), ("Paris Kisses",))
    examples = synthetic_examples([(t, x) for t, x, yes in SHORT_ITEMS if yes],
                                  [(t, x) for t, x, yes in SHORT_ITEMS if not yes], profile)
    data = Tokenized.of(base, examples)
    warmup, steps = int(params["warmup"]), int(params["steps"])
    result = train_examples(base, data, TrainingSettings(steps=warmup + steps, batch=int(params["batch"]),
                                                         threads=threads), evaluate_loss=False)
    timed = result.step_times[warmup:]
    return {
        "step_seconds_median": round(statistics.median(timed), 3),
        "step_seconds": [round(t, 3) for t in timed],
        "batch": int(params["batch"]),
        "tokens_per_example": round(statistics.mean(len(ids) for ids in data.ids), 1),
        "threads": threads,
        "rank": base.rank,
        "trainable_parameters": sum(int(p.numel()) for p in base.parameters()),
        "load_seconds": round(load_seconds, 1),
        "peak_rss_mb_after_load": round(rss_loaded / 1024, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "model": base.base.model_id,
    }


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
