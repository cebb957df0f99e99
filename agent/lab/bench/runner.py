"""`ownrec bench`: every benchmark of the project in one run, written as the whole of BENCHMARKS.md.

The suite is the core's figures (`agent.lab.bench.product`: encoding, ranking, feedback, feedback and feed
with a long history, chat, LLM rerank, personal LoRA, launch to first feed, a 50 MB catalog CSV imported end
to end) and federated sync (`agent.lab.bench.coordinator`: one real round over
loopback HTTPS with 100 and 1,000 clients, `--quick` 100 only, and one client's secure-aggregation
work up to 100,000). The report puts every figure beside its target (from the issues) with a met /
missed verdict, and beside the peer measured in the same run where one exists (sentence-transformers,
bare llama-cpp-python; Flower's SecAgg+ bytes per parameter is its published figure). The raw figures
go at the end, as JSON.

`ownrec bench sync` measures sync alone: in a report this suite wrote it replaces the sync figures
and renders the whole report again (so the summary table and the sync section agree, and the report
says the sync figures come from a later run); in any other file it replaces only its marked section.

This module sits above the core and the server because the core may not import the server.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.core.atomic import write_text_atomic
from agent.lab.bench.product import run_benchmarks, summary_rows, summary_table
from agent.lab.bench.coordinator import (COST_COHORTS, SyncBenchFailed, run_sync_bench, sync_markdown, sync_summary_rows,
                                write_sync_section)
from agent.lab.bench.sync_day import day_markdown, day_summary_rows
from agent.lab.bench.throughput import throughput_markdown, throughput_summary_rows

Log = Callable[[str], None]

SYNC_CLIENTS = (100, 1_000)
SYNC_CLIENTS_QUICK = (100,)
RAW_JSON = re.compile(r"Raw figures:\n\n```json\n(.*?)\n```", re.DOTALL)


def run_suite(quick: bool = False, log: Log = print, *, sync_clients: Sequence[int] | None = None,
              sync_cost_cohorts: Sequence[int] = COST_COHORTS) -> dict[str, Any]:
    """Every figure of the suite. A sync round that fails is reported as such (like an unavailable chat
    model), not left out and not replaced by older figures."""
    results = run_benchmarks(quick=quick, log=log)
    clients = tuple(sync_clients) if sync_clients else (SYNC_CLIENTS_QUICK if quick else SYNC_CLIENTS)
    log(f"federated sync: one round with {', '.join(f'{n:,}' for n in clients)} clients on loopback")
    try:
        results["sync"] = run_sync_bench(clients, log=log, cost_cohorts=sync_cost_cohorts)
    except SyncBenchFailed as error:
        results["sync"] = {"error": str(error)}
    results["sync"]["measured"] = time.time()
    return results


def suite_markdown(results: dict[str, Any]) -> str:
    """The whole of BENCHMARKS.md for `results`."""
    machine = results["machine"]
    sync = results.get("sync")
    throughput = results.get("sync_throughput")
    day = results.get("sync_day")
    rows = summary_rows(results) + (sync_summary_rows(sync) if sync is not None else []) \
        + (throughput_summary_rows(throughput) if throughput is not None else []) \
        + (day_summary_rows(day) if day else [])
    verdicts = [row.verdict for row in rows if row.verdict]
    lines = [
        "# Benchmarks",
        "",
        "Written by `ownrec bench`" + (" --quick" if results.get("quick") else "") + ": every benchmark of the "
        "project in one run on one machine, each figure beside its target and, where a peer exists, beside the peer "
        "measured in the same run (side by side in the same process). Targets come from the issues that set them.",
        "",
        f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}, numpy {machine['numpy']}.",
        "",
        f"Targets: {verdicts.count('met')} met, {verdicts.count('missed')} missed"
        + (f", {verdicts.count('not measured')} not measured" if "not measured" in verdicts else "") + ".",
        "",
        *summary_table(rows),
        "",
    ]
    if sync is not None and sync.get("separate_run"):
        lines += ["The federated-sync figures come from a later `ownrec bench sync`, not from the run of the others.",
                  ""]
    if sync is not None and "error" not in sync:
        lines += [sync_markdown(sync), ""]
    if throughput is not None:
        lines += ["The cohorts-at-once figures come from a separate `ownrec bench sync --throughput`.", "",
                  throughput_markdown(throughput), ""]
    if day:
        lines += ["The simulated-day figures come from separate runs of `ownrec bench sync --day`.", "",
                  day_markdown(day), ""]
    lines += ["Raw figures:", "", "```json", json.dumps(results, indent=2), "```", ""]
    return "\n".join(lines)


def write_suite_report(path: Path, results: dict[str, Any]) -> None:
    write_text_atomic(Path(path), suite_markdown(results))


def suite_results_in(path: Path) -> dict[str, Any] | None:
    """The raw figures of a report this suite wrote at `path`, or None (no such file, or another kind)."""
    path = Path(path)
    if not path.exists():
        return None
    match = RAW_JSON.search(path.read_text(encoding="utf-8"))
    if match is None:
        return None
    try:
        results = json.loads(match.group(1))
    except ValueError:
        return None
    required = ("machine", "encoder", "ranking_demo", "ranking_100k", "feedback", "first_feed")
    return results if isinstance(results, dict) and all(key in results for key in required) else None


def write_throughput_report(path: Path, throughput: dict[str, Any]) -> None:
    """After `ownrec bench sync --throughput`: re-render a suite report with these figures beside the rest, or
    write them alone where there is none."""
    results = suite_results_in(path)
    if results is None:
        write_text_atomic(Path(path), "# Benchmarks\n\n" + throughput_markdown(throughput) + "\n")
        return
    results["sync_throughput"] = {**throughput, "measured": time.time()}
    write_suite_report(path, results)


def write_day_report(path: Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """After `ownrec bench sync --day`: this run beside the earlier ones of other scenarios (one of the same
    scenario, devices and hours of the day is replaced) in a suite report, or alone in any other file; the runs shown."""
    results = suite_results_in(path)
    def key(r: dict[str, Any]) -> tuple:
        return json.dumps(r["changed_settings"], sort_keys=True), r["devices"], r["hours"], r.get("from_hour", 0)

    earlier = [] if results is None else [r for r in results.get("sync_day", []) if key(r) != key(run)]
    runs = earlier + [{**run, "measured": time.time()}]
    if results is None:
        write_text_atomic(Path(path), "# Benchmarks\n\n" + day_markdown(runs) + "\n")
    else:
        results["sync_day"] = runs
        write_suite_report(path, results)
    return runs


def write_sync_report(path: Path, sync: dict[str, Any]) -> None:
    """After `ownrec bench sync`: re-render a suite report with these sync figures, or replace only the sync
    section of any other file."""
    results = suite_results_in(path)
    if results is None:
        write_sync_section(path, sync_markdown(sync))
        return
    results["sync"] = {**sync, "measured": time.time(), "separate_run": True}
    write_suite_report(path, results)
