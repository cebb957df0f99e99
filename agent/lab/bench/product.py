"""The core's speed figures for `ownrec bench`, measured side by side in one run.

`run_benchmarks` measures them; `summary_rows` puts each beside its target and its peer. The whole
suite (these and federated sync) and BENCHMARKS.md are assembled by `agent.lab.bench.runner`: the core may
not import the coordinating server.

Machines here are noisy, so every comparison with a peer is a ratio of runs interleaved in the
same process (A B A B ...), and latencies are reported as percentiles of many repetitions.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core import paths
from agent.core.encoder import Encoder
from agent.core.ranker import Catalog, GlobalAdapter, PersonalAdapter, Scorer, build_slate
from agent.lab.bench.history import TARGET_EVENTS, bench_history_on_copy
from agent.lab.bench.imports import LARGE_IMPORT_ROWS, TARGET_PEAK_MB, bench_large_import
from agent.lab.reports import measured_where

Log = Callable[[str], None]

QUICK_IMPORT_ROWS = 5_000  # --quick: the memory target is judged on the 50 MB file only

TARGETS = {
    "llm_overhead": "generation tokens/s within 5% of bare llama-cpp-python",
    "encode_speedup": ">= 2x sentence-transformers at mean cosine >= 0.99",
    "rank_100k_p50_ms": "<= 15 ms",
    "feedback_p50_ms": "<= 20 ms",
    "history_feedback_p50_ms": "<= 10 ms p50 with 10,000 events",
    "history_feed_p50_ms": "<= 10 ms p50 with 10,000 events",
    "first_feed_s": "<= 2 s",
    "rerank_20_s": "<= 1.5 s for 20 candidates",
    "large_import_peak_mb": "<= 300 MB peak for a 50 MB CSV, encoding included",
}


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(float(np.percentile(ordered, 50)), 3),
        "p95_ms": round(float(np.percentile(ordered, 95)), 3),
        "n": len(ordered),
    }


def _demo_texts() -> list[str]:
    from agent.core.importers.demo import dataset_file, parse_items

    return [row.item.text for row in parse_items(dataset_file("item"))]


def bench_encoder(texts: list[str], repeats: int, log: Log) -> dict[str, Any]:
    encoder = Encoder.load(paths.models_dir())
    result: dict[str, Any] = {"texts": len(texts), "batch_size": 32}
    try:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        from agent.core.model_prep import source_model_dir

        reference = SentenceTransformer(str(source_model_dir()), device="cpu")
    except ImportError as error:  # the `models` extra is not installed
        reference = None
        result["reference_error"] = f"sentence-transformers unavailable: {error}"
    # Warm both up first: the first batches of each allocate buffers and spin up thread pools.
    encoder.encode(texts[:128], batch_size=32)
    if reference is not None:
        reference.encode(texts[:128], batch_size=32)
    ours_s, theirs_s = [], []
    for repeat in range(repeats):
        log(f"encoding {len(texts)} texts, round {repeat + 1}/{repeats}")
        started = time.perf_counter()
        ours = encoder.encode(texts, batch_size=32)
        ours_s.append(time.perf_counter() - started)
        if reference is not None:
            started = time.perf_counter()
            theirs = reference.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
            theirs_s.append(time.perf_counter() - started)
    result["ownrec_texts_per_s"] = round(len(texts) / statistics.median(ours_s), 1)
    if reference is not None:
        cosine = np.sum(ours * theirs, axis=1)
        result["sentence_transformers_texts_per_s"] = round(len(texts) / statistics.median(theirs_s), 1)
        result["speedup"] = round(statistics.median(theirs_s) / statistics.median(ours_s), 2)
        result["mean_cosine"] = round(float(cosine.mean()), 4)
        result["min_cosine"] = round(float(cosine.min()), 4)
    return result


def _synthetic_catalog(n: int, dim: int, seed: int = 0) -> Catalog:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return Catalog(np.arange(1, n + 1, dtype=np.int64), [f"synthetic:{i}" for i in range(n)], X)


def bench_ranking(catalog: Catalog, repeats: int, size: int = 20) -> dict[str, Any]:
    """One full slate: score every item (steered by the latest likes), mask rated ones, MMR over the pool,
    explanations."""
    rng = np.random.default_rng(1)
    personal = PersonalAdapter.fresh(catalog.dim, 8, seed=1)
    personal.p = rng.standard_normal(catalog.dim).astype(np.float32)
    personal.B = (0.05 * rng.standard_normal(personal.B.shape)).astype(np.float32)
    scorer = Scorer(catalog, GlobalAdapter.identity(catalog.dim))
    rated = rng.choice(len(catalog), size=min(200, len(catalog) // 2), replace=False)
    liked = rated[:100]
    samples = []
    for repeat in range(repeats + 3):
        started = time.perf_counter()
        build_slate(scorer, scorer.steer(personal, liked), size, rated, liked, diversity=0.3, exploration=0.1,
                    seed=repeat)
        if repeat >= 3:  # the first runs warm caches and the BLAS thread pool
            samples.append((time.perf_counter() - started) * 1000)
    return {"items": len(catalog), "slate": size, **_percentiles(samples)}


def bench_feedback(agent, repeats: int) -> dict[str, Any]:
    """End to end: store the event, online update of the adapter, atomic save of the new version."""
    ids = [int(i) for i in agent.catalog().ids[: repeats * 2]]
    samples = []
    for index, item_id in enumerate(ids[:repeats]):
        kind = "like" if index % 3 else "dislike"
        result = agent.feedback(item_id, kind, origin="bench")
        if not result.retrained:  # full retraining is periodic and reported on its own
            samples.append(result.update_ms)
    started = time.perf_counter()
    stats = agent.retrain()
    return {**_percentiles(samples), "full_retrain_s": round(time.perf_counter() - started, 3),
            "full_retrain_labels": stats["labels"]}


def bench_llm(agent, repeats: int) -> dict[str, Any]:
    """Generation through ownrec's path (prompt, streaming, grounding gate) against bare
    llama-cpp-python on the same prompt, alternating in one process."""
    from agent.lab.bench.llm import speed_report
    from agent.core.llm.model import LLMUnavailable

    try:
        return speed_report(agent, repeats=repeats, log=lambda message: None)
    except LLMUnavailable as error:
        return {"error": str(error)}


def bench_rerank(agent, repeats: int) -> dict[str, Any]:
    """The LLM's yes/no judgement of 20 candidates: prefix cached (warm), evaluated once (cold),
    and every prompt from scratch (uncached), in one run."""
    from agent.core.llm.model import LLMUnavailable
    from agent.lab.bench.llm import rerank_speed

    try:
        return rerank_speed(agent.llm, repeats=repeats)
    except LLMUnavailable as error:
        return {"error": str(error)}


def bench_lora(steps: int) -> dict[str, Any]:
    """Personal LoRA training: median step time and peak memory, in a child process."""
    from agent.lab.bench.lora import bench_training

    try:
        return bench_training(steps=steps)
    except RuntimeError as error:
        return {"error": str(error)}


def bench_first_feed(home: Path, repeats: int) -> dict[str, Any]:
    """A fresh process per run: interpreter start, imports, database, encoder, first slate."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "agent.tui.first_feed"], capture_output=True, text=True,
                              env={**os.environ, "OWNREC_HOME": str(home)}, timeout=120)
        total = time.perf_counter() - started
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "probe failed"}
        samples.append(total)
    return {"median_s": round(statistics.median(samples), 3), "max_s": round(max(samples), 3), "n": len(samples)}


def run_benchmarks(quick: bool = False, log: Log = print) -> dict[str, Any]:
    from agent.core.api import Agent

    repeats = 3 if quick else 7
    results: dict[str, Any] = {
        "machine": measured_where(),
        "quick": quick,
        "targets": TARGETS,
    }
    texts = _demo_texts()
    results["encoder"] = bench_encoder(texts, 2 if quick else 5, log)
    with tempfile.TemporaryDirectory(prefix="ownrec-bench-") as folder:
        home = Path(folder)
        agent = Agent.open(home=home)
        log("importing the demo catalog into a temporary data directory (and building release 0)")
        marks: dict[str, float] = {}
        started = time.perf_counter()
        agent.import_demo(progress=lambda done, total: marks.__setitem__("encoded", time.perf_counter()))
        ended = time.perf_counter()
        # What a first run waits for: the import, the encoding, and release 0 learned from the public ratings
        # (everything after the last encoding step).
        results["demo_import"] = {"total_s": round(ended - started, 1),
                                  "prior_s": round(ended - marks.get("encoded", started), 1)}
        agent.store.set_state("onboarded", True)
        log("ranking")
        results["ranking_demo"] = bench_ranking(agent.catalog(), 50 if quick else 200)
        results["ranking_100k"] = bench_ranking(_synthetic_catalog(100_000, agent.encoder.dim), 20 if quick else 100)
        log("feedback and feed with a history of 100, 1,000 and 10,000 events")
        results["history"] = bench_history_on_copy(agent, home / "history", 10 if quick else 40)
        log("feedback updates")
        results["feedback"] = bench_feedback(agent, 20 if quick else 60)
        log("chat model: ownrec against bare llama-cpp-python")
        results["llm"] = bench_llm(agent, 2 if quick else 5)
        log("reranking 20 candidates with the LLM")
        results["rerank"] = bench_rerank(agent, 3 if quick else 7)
        agent.close()
        log("personal LoRA training (loads the model in torch in a child process)")
        results["lora"] = bench_lora(2 if quick else 4)
        log("launch to first feed")
        results["first_feed"] = bench_first_feed(home, repeats)
    rows = QUICK_IMPORT_ROWS if quick else LARGE_IMPORT_ROWS
    log(f"importing a catalog CSV of {rows:,} rows end to end, encoding included (a process of its own)")
    results["large_import"] = bench_large_import(rows)
    return results


@dataclass(frozen=True)
class SummaryRow:
    """One line of the BENCHMARKS.md summary: the figure, the peer measured in the same run (if any), the
    target (if any) and whether the figure meets it: "met", "missed", "not measured" or "" (no target)."""

    what: str
    ownrec: str
    peer: str = ""
    target: str = ""
    verdict: str = ""


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def summary_rows(results: dict[str, Any]) -> list[SummaryRow]:
    """The core figures (everything but federated sync), each beside its target and peer."""
    enc, r_demo, r_big = results["encoder"], results["ranking_demo"], results["ranking_100k"]
    fb, ff = results["feedback"], results["first_feed"]
    rows = []
    if "speedup" in enc:
        rows.append(SummaryRow(
            f"encoding, {enc['texts']} catalog texts, batch 32", f"{enc['ownrec_texts_per_s']} texts/s (int8 ONNX)",
            f"{enc['sentence_transformers_texts_per_s']} texts/s (sentence-transformers, torch) → "
            f"**{enc['speedup']}x**, mean cosine {enc['mean_cosine']} (min {enc['min_cosine']})",
            TARGETS["encode_speedup"], verdict(enc["speedup"] >= 2 and enc["mean_cosine"] >= 0.99)))
    else:
        rows.append(SummaryRow("encoding", f"{enc['ownrec_texts_per_s']} texts/s", str(enc.get("reference_error")),
                               TARGETS["encode_speedup"], "not measured"))
    rows += [
        SummaryRow(f"rank the demo catalog ({r_demo['items']} items, slate {r_demo['slate']})",
                   f"p50 {r_demo['p50_ms']} ms, p95 {r_demo['p95_ms']} ms"),
        SummaryRow(f"rank {r_big['items']:,} synthetic items (slate {r_big['slate']})",
                   f"p50 **{r_big['p50_ms']} ms**, p95 {r_big['p95_ms']} ms", "", TARGETS["rank_100k_p50_ms"],
                   verdict(r_big["p50_ms"] <= 15)),
        SummaryRow("feedback → updated model, saved (end to end)", f"p50 **{fb['p50_ms']} ms**, p95 {fb['p95_ms']} ms",
                   "", TARGETS["feedback_p50_ms"], verdict(fb["p50_ms"] <= 20)),
        SummaryRow(f"full retrain ({fb['full_retrain_labels']} rated items)", f"{fb['full_retrain_s']} s"),
        *([SummaryRow("first run: import the demo catalog, encode it, build release 0 from the public ratings",
                      f"{results['demo_import']['total_s']} s, of which release 0 {results['demo_import']['prior_s']} s")]
          if "demo_import" in results else []),
    ]
    rows += history_rows(results.get("history"))
    llm = results.get("llm", {})
    if "ownrec" in llm:
        ours, bare = llm["ownrec"], llm["bare"]
        ratio = ours["tokens_per_second"] / bare["tokens_per_second"] if bare["tokens_per_second"] else float("nan")
        rows += [
            SummaryRow(f"chat generation, SmolLM2-135M (Q8_0 runtime copy), {llm['threads']} threads, {llm['prompt_tokens']}-token "
                       f"prompt", f"**{ours['tokens_per_second']:.1f} tok/s**",
                       f"{bare['tokens_per_second']:.1f} tok/s (bare llama-cpp-python) → **{ratio:.2f}x**",
                       TARGETS["llm_overhead"], verdict(ratio >= 0.95)),
            SummaryRow("chat: time to first token / first checked sentence shown",
                       f"{ours['first_token']:.2f} s / {ours['first_release']:.2f} s",
                       f"{bare['first_token']:.2f} s (first token)"),
        ]
    elif llm:
        rows.append(SummaryRow("chat generation", f"unavailable: {llm.get('error')}", "", TARGETS["llm_overhead"],
                               "not measured"))
    rr = results.get("rerank", {})
    if "warm" in rr:
        rows.append(SummaryRow(
            f"LLM rerank of {rr['candidates']} candidates, prefix cached ({rr['prefix_tokens']}-token profile "
            f"evaluated once, {rr['suffix_tokens_per_candidate']} tokens per item)",
            f"median **{rr['warm']['median_s']} s**, p95 {rr['warm']['p95_s']} s; first time for a profile "
            f"{rr['cold']['median_s']} s",
            f"no peer; ownrec without its prefix cache: {rr['uncached']['median_s']} s → "
            f"{rr['uncached']['median_s'] / max(rr['warm']['median_s'], 1e-9):.1f}x",
            TARGETS["rerank_20_s"], verdict(rr["warm"]["median_s"] <= 1.5)))
    elif rr:
        rows.append(SummaryRow("LLM rerank", f"unavailable: {rr.get('error')}", "", TARGETS["rerank_20_s"],
                               "not measured"))
    lora = results.get("lora", {})
    if "step_seconds_median" in lora:
        rows.append(SummaryRow(
            f"personal LoRA training step (rank {lora['rank']} on q/k/v/o, {lora['trainable_parameters']:,} "
            f"parameters, batch {lora['batch']} × {lora['tokens_per_example']:.0f} tokens, {lora['threads']} threads)",
            f"median **{lora['step_seconds_median']} s**; model load {lora['load_seconds']} s; peak memory "
            f"{lora['peak_rss_mb']:,.0f} MB"))
    elif lora:
        rows.append(SummaryRow("personal LoRA training", f"failed: {lora.get('error')}"))
    rows += large_import_rows(results.get("large_import"))
    if "median_s" in ff:
        rows.append(SummaryRow("launch to first feed on screen (new process, demo catalog)",
                               f"median **{ff['median_s']} s**, max {ff['max_s']} s over {ff['n']}", "",
                               TARGETS["first_feed_s"], verdict(ff["median_s"] <= 2)))
    else:
        rows.append(SummaryRow("launch to first feed", f"failed: {ff['error']}", "", TARGETS["first_feed_s"],
                               "not measured"))
    return rows


def large_import_rows(figures: dict[str, Any] | None) -> list[SummaryRow]:
    """`ownrec import` of a large catalog CSV, encoding included (none in a report from before it). Its
    memory target is judged on a file of 50 MB or more only."""
    if not figures:
        return []
    full = figures["file_mb"] >= 50
    note = f" ({figures['note']})" if figures.get("note") else ""  # e.g. measured in another run than the rest
    return [SummaryRow(f"import a {figures['file_mb']:g} MB catalog CSV ({figures['rows']:,} rows) end to end, "
                       "encoding included", f"peak **{figures['peak_rss_mb']:,.0f} MB**, {figures['seconds']:,.1f} s "
                       f"({figures['items_per_s']:,.0f} items/s){note}", "", TARGETS["large_import_peak_mb"],
                       verdict(figures["peak_rss_mb"] <= TARGET_PEAK_MB) if full else "not measured")]


def history_rows(history: dict[str, Any] | None) -> list[SummaryRow]:
    """Feedback, feed and full retrain at each history size side by side (none in a report from before them)."""
    if not history:
        return []
    sizes = [str(size) for size in history["sizes"]]
    events = " / ".join(f"{int(size):,}" for size in sizes)
    where = f"a history of {events} feedback events (demo catalog, {history['items']:,} items)"

    def figures(what: str) -> str:
        return " / ".join(f"**{history[s][what]['p50_ms']}**" if int(s) == TARGET_EVENTS else
                          str(history[s][what]["p50_ms"]) for s in sizes) + " ms"

    at_target = history.get(str(TARGET_EVENTS))
    rows = []
    for what, label, key in (("feedback", "feedback → updated model, saved (wall time of `Agent.feedback`)",
                              "history_feedback_p50_ms"),
                             ("feed", "feed after it (wall time of `Agent.recommend`)", "history_feed_p50_ms")):
        ok = at_target is not None and at_target[what]["p50_ms"] <= 10
        rows.append(SummaryRow(f"{label}, with {where}", f"p50 {figures(what)}", "", TARGETS[key],
                               verdict(ok) if at_target is not None else "not measured"))
    retrains = " / ".join(f"{history[s]['full_retrain_s']} s ({history[s]['full_retrain_labels']:,} labelled)"
                          for s in sizes)
    rows.append(SummaryRow(f"full retrain with {where}", retrains))
    return rows


def summary_table(rows: list[SummaryRow]) -> list[str]:
    """The rows as a Markdown table (verdicts in bold when a target is missed)."""
    lines = ["| what | ownrec | peer (same run) | target | met? |", "|---|---|---|---|---|"]
    for row in rows:
        shown = f"**{row.verdict}**" if row.verdict == "missed" else row.verdict
        lines.append(f"| {row.what} | {row.ownrec} | {row.peer} | {row.target} | {shown} |")
    return lines


def to_markdown(results: dict[str, Any]) -> str:
    """The core figures alone as a report (the summary table and the raw figures); `agent.lab.bench.runner`
    renders the whole suite, federated sync included."""
    import json

    machine = results["machine"]
    return "\n".join([
        "# Benchmarks", "",
        f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, numpy {machine['numpy']}.",
        "", *summary_table(summary_rows(results)), "", "Raw figures:", "", "```json", json.dumps(results, indent=2),
        "```", ""])
