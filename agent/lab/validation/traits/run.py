"""`run_validation`: the four checks in a temporary folder, on simulated people made from one demo template."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.core import paths
from agent.lab import people
from agent.lab.reports import measured_where
from agent.lab.validation.traits.common import PROXIES, Context, Log, rounded
from agent.lab.validation.traits.feed import check_feed_edit
from agent.lab.validation.traits.movielens import check_movielens
from agent.lab.validation.traits.poles import check_pole_users


def _provenance() -> dict[str, Any]:
    info = measured_where()
    # Which trait code was measured, even from a dirty tree: a hash of the files that define it.
    digest = hashlib.sha256()
    from agent.core import traits

    folder = Path(traits.__file__).resolve().parent
    for name in ("axes.py", "book.py", "catalog.toml"):
        digest.update((folder / name).read_bytes())
    info["trait_code_sha256"] = digest.hexdigest()[:12]
    return info


def _value_definition() -> str | None:
    """The "Value." paragraph of the trait math's own documentation, so the report says what the
    measured code computes even when that code changes."""
    from agent.core.traits import axes

    found = re.search(r"^Value\.(.*?)(?:\n\s*\n|\Z)", axes.__doc__ or "", re.DOTALL | re.MULTILINE)
    return " ".join(found.group(1).split()) if found else None


def run_validation(quick: bool = False, log: Log = print, seed: int = 0, workers: int | None = None) -> dict[str, Any]:
    """Run the four checks; return their figures as JSON-able data. `quick`: a fixed sample of
    150 MovieLens users, fewer training epochs and one seed per simulated user (for tests)."""
    from agent.core.encoder import Encoder
    from agent.core.importers.demo import dataset_file, movielens_ratings, movielens_users, parse_items
    from agent.core.ranker import TrainingSettings

    started = time.perf_counter()
    workers = workers or min(2, os.cpu_count() or 1)
    plan = {
        "quick": quick,
        "seed": seed,
        "pole_seeds": 1 if quick else 3,
        "feed_seeds": 1 if quick else 3,
        "movielens_users": 150 if quick else None,  # None: all 943
        "epochs": 30 if quick else TrainingSettings().epochs,
        "edit_users": 30 if quick else 150,
        "retest_users": 20 if quick else 100,
        "workers": workers,
    }
    results: dict[str, Any] = {
        "plan": plan,
        "run": {**_provenance(), "value_definition": _value_definition()},
        "timings_s": {},
    }
    timings = results["timings_s"]
    with tempfile.TemporaryDirectory(prefix="ownrec-traits-") as folder, people.single_blas_thread():
        home = Path(folder)
        log("encoding the demo catalog in a temporary data directory")
        encoder = Encoder.load(paths.models_dir())
        template = people.demo_template(home / "template", encoder)
        with people.person(home, template, encoder, "setup", seed) as agent:
            base_space = agent.traits.space()  # a fresh person's space
            definitions = agent.traits.definitions
            catalog = agent.catalog()

        items = {row.item.external_id: row.item for row in parse_items(dataset_file("item"))}
        external = [ref.split(":", 1)[1] for ref in catalog.refs]
        ratings = movielens_ratings()
        counts: dict[str, int] = {}
        for _, item, _, _ in ratings:
            counts[item] = counts.get(item, 0) + 1
        ctx = Context(home, template, encoder, catalog.ids.copy(), external,
                      [tuple(items[e].metadata.get("genres", [])) for e in external],
                      np.array([counts.get(e, 0) for e in external], np.float64),
                      base_space.percentiles.astype(np.float64), [t.id for t in definitions], seed)
        results["traits"] = [{"id": t.id, "name": t.name, "kind": t.kind} for t in definitions]
        results["proxies"] = {k: {"statistic": p.statistic, "high": list(p.high), "low": list(p.low),
                                  "second": p.second, "why": p.why} for k, p in PROXIES.items()}
        timings["setup"] = rounded(time.perf_counter() - started, 1)

        step = time.perf_counter()
        log("(a) simulated users who like one pole")
        results["pole_users"] = check_pole_users(ctx, plan["pole_seeds"], log)
        timings["pole_users"] = rounded(time.perf_counter() - step, 1)

        step = time.perf_counter()
        log("(b) MovieLens users: each one's own adapter, traits against genre shares")
        results["movielens"], results["edits"] = check_movielens(ctx, ratings, movielens_users(), plan, log)
        timings["movielens"] = rounded(time.perf_counter() - step, 1)

        step = time.perf_counter()
        log("(c, d) edits through the product: independence, and raising dark on the feed")
        results["feed"], results["edits"]["through_agent"] = check_feed_edit(ctx, plan["feed_seeds"], log)
        timings["feed_and_product_edits"] = rounded(time.perf_counter() - step, 1)
    timings["total"] = rounded(time.perf_counter() - started, 1)
    log(f"done in {timings['total']:.0f} s")
    return results
