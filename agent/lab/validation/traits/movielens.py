"""(b) Real users: each MovieLens user's personal adapter trained on their own ratings (in worker processes),
their trait values correlated with the yardsticks in `PROXIES`; and (c) measured on a sample of those adapters."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.core import paths
from agent.core.paths import Home
from agent.lab import people
from agent.lab.validation.traits.common import LIKED_STARS, LONG_TAIL_RANK, PROXIES, Context, Log, correlation, rounded
from agent.lab.validation.traits.edits import aggregate_edits, edit_effects


_SHARED: dict[str, Any] = {}  # per process: the scorer and traits `_fit_user` works with


def _fit_user(task: tuple[int, dict[int, float], bool, bool]) -> dict[str, Any]:
    from agent.core.ranker import PersonalAdapter, TrainingSettings, fit

    user, labels, edits, retest = task
    scorer, traits, epochs = _SHARED["scorer"], _SHARED["traits"], _SHARED["epochs"]
    dim, rank, model_id = scorer.catalog.dim, _SHARED["rank"], _SHARED["model_id"]
    started = time.perf_counter()
    # As the product does it: a fresh adapter (seed 0), trained with seed = number of labels.
    adapter, _ = fit(PersonalAdapter.fresh(dim, rank, model_id), scorer, labels,
                     TrainingSettings(epochs=epochs, seed=len(labels)))
    fit_s = time.perf_counter() - started
    space = traits.space(adapter)
    out: dict[str, Any] = {"user": user, "fit_s": fit_s, "values": space.values(adapter.p).astype(np.float64),
                           # for comparison: how much the score of an item changes when it moves along
                           # the axis, all else held (q . a_t), instead of Cov_i(s_i, position_i)
                           "directional": space.axes.astype(np.float64) @ scorer.effective_query(adapter)}
    if retest:  # the same ratings, another adapter initialisation and negative sampling
        again, _ = fit(PersonalAdapter.fresh(dim, rank, model_id, seed=1), scorer, labels,
                       TrainingSettings(epochs=epochs, seed=len(labels) + 1))
        out["retest"] = traits.space(again).values(again.p).astype(np.float64)
    if edits:
        out["edits"] = edit_effects(space, adapter, scorer)
    return out

def _liked_statistics(ctx: Context, liked_rows: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per user, every statistic a proxy may use, computed from the rows of their liked films."""
    log_pop = np.log1p(ctx.popularity)
    long_tail = np.zeros(len(ctx.popularity), bool)
    long_tail[np.argsort(-ctx.popularity, kind="stable")[LONG_TAIL_RANK:]] = True
    all_genres = sorted({g for gs in ctx.genres for g in gs})
    genre_matrix = np.array([[g in gs for g in all_genres] for gs in ctx.genres], np.float64)
    stats: dict[str, list[float]] = {"popularity": [], "long_tail": [], "entropy": []}
    flags = {}
    for trait_id, proxy in PROXIES.items():
        if proxy.statistic == "genres":
            flags[trait_id] = (ctx.has_genre(proxy.high), ctx.has_genre(proxy.low))
            stats[f"{trait_id}:high"] = []
            stats[f"{trait_id}:contrast"] = []
    for rows in liked_rows:
        if len(rows) == 0:
            for key in stats:
                stats[key].append(np.nan)
            continue
        stats["popularity"].append(-float(log_pop[rows].mean()))
        stats["long_tail"].append(float(long_tail[rows].mean()))
        share = genre_matrix[rows].sum(axis=0)
        share = share[share > 0] / share.sum()
        stats["entropy"].append(float(-(share * np.log(share)).sum()))
        for trait_id, (high, low) in flags.items():
            stats[f"{trait_id}:high"].append(float(high[rows].mean()))
            stats[f"{trait_id}:contrast"].append(float(high[rows].mean() - low[rows].mean()))
    return {k: np.array(v) for k, v in stats.items()}


def _proxy_columns(trait_id: str, stats: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    proxy = PROXIES[trait_id]
    if proxy.statistic == "popularity":
        return stats["popularity"], stats[proxy.second]
    return stats[f"{trait_id}:high"], stats[f"{trait_id}:contrast"]


def _item_level(ctx: Context, trait_index: int, trait_id: str) -> float:
    """How well the axis itself separates the proxy's films: correlation over the 1,682 films of
    their position on the axis with the proxy's film-level quantity."""
    proxy = PROXIES[trait_id]
    position = ctx.percentiles[:, trait_index]
    if proxy.statistic == "popularity":
        quantity = -np.log1p(ctx.popularity)
    else:
        quantity = ctx.has_genre(proxy.high).astype(float) - ctx.has_genre(proxy.low).astype(float)
    return rounded(float(np.corrcoef(position, quantity)[0, 1]))


def _share(agent, epochs: int) -> None:
    agent.traits.space()  # loads the scorer and the pole vectors once
    _SHARED.update(scorer=agent.scorer(), traits=agent.traits, epochs=epochs,
                   rank=int(agent.config.get("ranker.adapter_rank")), model_id=agent.encoder.model_id)


def _init_worker(template: str, folder: str, models: str, epochs: int) -> None:
    """A worker process: its own copy of the template database, its own Agent and encoder."""
    from agent.core.api import Agent
    from agent.core.encoder import Encoder

    home = Home(Path(folder) / f"worker-{os.getpid()}")
    home.folder()
    shutil.copy(template, home.database)
    _share(Agent.open(Encoder.load(Path(models)), home=home), epochs)


def _map(ctx: Context, agent, tasks: list, plan: dict[str, Any], log: Log) -> list[dict[str, Any]]:
    """`_fit_user` over the tasks: in `plan["workers"]` fresh processes (one BLAS thread each, so they do not
    fight over the cores), or in this one."""
    results: list[dict[str, Any]] = []

    def collect(iterator) -> None:
        for result in iterator:
            results.append(result)
            if len(results) % 100 == 0 or len(results) == len(tasks):
                log(f"  {len(results)}/{len(tasks)} users")

    try:
        if plan["workers"] > 1:
            setup = (str(ctx.template), str(ctx.home / "workers"), str(paths.models_dir()), plan["epochs"])
            with people.worker_pool(plan["workers"], initializer=_init_worker, initargs=setup,
                                    fresh_processes=True) as pool:
                collect(pool.map(_fit_user, tasks, chunksize=4))
        else:
            _share(agent, plan["epochs"])
            collect(map(_fit_user, tasks))
    finally:
        _SHARED.clear()
    return sorted(results, key=lambda r: r["user"])


def check_movielens(ctx: Context, ratings, users_info: dict[int, dict[str, Any]], plan: dict[str, Any],
                    log: Log) -> tuple[dict[str, Any], dict[str, Any]]:
    from agent.core.ranker import preference_labels
    from agent.core.store import Interaction

    row_of = {e: r for r, e in enumerate(ctx.external)}
    by_user: dict[int, list[tuple[int, float, float]]] = {}
    for user, item, stars, at in ratings:
        by_user.setdefault(user, []).append((row_of[item], stars, at))
    users = sorted(by_user)
    if plan["movielens_users"]:
        users = sorted(np.random.default_rng(ctx.seed).choice(users, plan["movielens_users"], replace=False).tolist())
    pick = np.random.default_rng(ctx.seed + 1)
    edit_users = set(pick.choice(users, min(plan["edit_users"], len(users)), replace=False).tolist())
    retest_users = set(pick.choice(users, min(plan["retest_users"], len(users)), replace=False).tolist())
    tasks = []
    for user in users:
        # The product's own labels: each rating as an Interaction through preference_labels.
        events = [Interaction(n, int(ctx.ids[row]), "rating", stars, at, "movielens")
                  for n, (row, stars, at) in enumerate(by_user[user])]
        tasks.append((user, preference_labels(events), user in edit_users, user in retest_users))

    with ctx.person("movielens", seed=ctx.seed) as agent:
        started = time.perf_counter()
        fitted = _map(ctx, agent, tasks, plan, log)
        elapsed = time.perf_counter() - started

    K = len(ctx.trait_ids)
    V = np.array([f["values"] for f in fitted])  # (users, K)
    D = np.array([f["directional"] for f in fitted])
    liked = [np.array([row for row, stars, _ in by_user[f["user"]] if stars >= LIKED_STARS], np.int64) for f in fitted]
    stats = _liked_statistics(ctx, liked)
    # What the trait would read if it only averaged the axis positions of the liked films.
    direct = np.array([ctx.percentiles[rows].mean(axis=0) if len(rows) else np.full(K, np.nan) for rows in liked])

    n_ratings = np.array([len(by_user[f["user"]]) for f in fitted], np.float64)
    per_trait: dict[str, Any] = {}
    for t, trait_id in enumerate(ctx.trait_ids):
        entry: dict[str, Any] = {"values": _distribution(V[:, t])}
        if trait_id in PROXIES:
            first, second = _proxy_columns(trait_id, stats)
            seed = ctx.seed + 100 * t
            entry["proxy"] = correlation(V[:, t], first, seed)
            entry["proxy_second"] = correlation(V[:, t], second, seed + 1)
            entry["liked_axis_mean_vs_proxy"] = correlation(direct[:, t], first, seed + 2)
            entry["item_level"] = _item_level(ctx, t, trait_id)
            entry["directional_vs_proxy"] = correlation(D[:, t], first, seed + 6)
        age = np.array([users_info[f["user"]]["age"] for f in fitted], np.float64)
        female = np.array([users_info[f["user"]]["gender"] == "F" for f in fitted], np.float64)
        entry["age"] = correlation(V[:, t], age, ctx.seed + 100 * t + 3)
        entry["female"] = correlation(V[:, t], female, ctx.seed + 100 * t + 4)
        entry["ratings"] = correlation(V[:, t], n_ratings, ctx.seed + 100 * t + 5)
        per_trait[trait_id] = entry

    between = np.corrcoef(V.T)
    between_directional = np.corrcoef(D.T)
    axes_between = np.corrcoef(ctx.percentiles.T)
    upper = np.triu_indices(K, 1)
    pairs = sorted(zip(upper[0], upper[1]), key=lambda ij: -abs(between[ij]))
    retests = [f for f in fitted if "retest" in f]
    retest = None
    if len(retests) >= 3:
        A = np.array([f["values"] for f in retests])
        B = np.array([f["retest"] for f in retests])
        retest = {"users": len(retests),
                  "per_trait": {k: rounded(np.corrcoef(A[:, t], B[:, t])[0, 1]) for t, k in enumerate(ctx.trait_ids)},
                  "mean_abs_difference": rounded(np.abs(A - B).mean())}
    fit_times = np.array([f["fit_s"] for f in fitted])
    labels_n = np.array([len(task[1]) for task in tasks])
    movielens = {
        "users": len(fitted),
        "epochs": plan["epochs"],
        "liked_threshold_stars": LIKED_STARS,
        "labels_per_user": {"mean": rounded(labels_n.mean(), 1), "median": rounded(np.median(labels_n), 1),
                            "min": int(labels_n.min()), "max": int(labels_n.max())},
        "fit_s_per_user": {"mean": rounded(fit_times.mean(), 3), "p50": rounded(np.median(fit_times), 3),
                           "p95": rounded(np.percentile(fit_times, 95), 3)},
        "wall_s": rounded(elapsed, 1),
        "workers": plan["workers"],
        "per_trait": per_trait,
        "saturation": {
            "beyond_0.2_0.8": rounded(np.mean((V < 0.2) | (V > 0.8))),
            "beyond_0.1_0.9": rounded(np.mean((V < 0.1) | (V > 0.9))),
            "within_0.4_0.6": rounded(np.mean((V >= 0.4) & (V <= 0.6))),
            "median_distance_from_half": rounded(np.median(np.abs(V - 0.5))),
        },
        "between_traits": {
            "matrix": [[rounded(v, 3) for v in row] for row in between],
            "mean_abs": rounded(np.abs(between[upper]).mean()),
            "strongest": [{"a": ctx.trait_ids[i], "b": ctx.trait_ids[j], "r": rounded(between[i, j], 3),
                           "axes_r": rounded(axes_between[i, j], 3)} for i, j in pairs[:6]],
            "axes_matrix": [[rounded(v, 3) for v in row] for row in axes_between],
            "axes_mean_abs": rounded(np.abs(axes_between[upper]).mean()),
            "users_vs_axes_r": rounded(np.corrcoef(between[upper], axes_between[upper])[0, 1]),
            "effective_number": _effective_number(between),
            "first_two_components": rounded(np.sort(np.linalg.eigvalsh(between))[::-1][:2].sum() / K),
            "directional_mean_abs": rounded(np.abs(between_directional[upper]).mean()),
            "directional_effective_number": _effective_number(between_directional),
        },
        "retest": retest,
    }
    edits = aggregate_edits([f["edits"] for f in fitted if "edits" in f], ctx.trait_ids)
    return movielens, edits


def _effective_number(correlations: np.ndarray) -> float:
    """How many independent quantities K correlated ones amount to: the participation ratio
    (sum of eigenvalues)^2 / sum of squared eigenvalues of their correlation matrix (K if
    uncorrelated, 1 if all the same)."""
    eigen = np.clip(np.linalg.eigvalsh(correlations), 0, None)
    return rounded(eigen.sum() ** 2 / (eigen ** 2).sum(), 2)


def _distribution(values: np.ndarray) -> dict[str, float]:
    q = np.percentile(values, [5, 25, 50, 75, 95])
    return {"mean": rounded(values.mean()), "sd": rounded(values.std()), "p5": rounded(q[0]), "p25": rounded(q[1]),
            "p50": rounded(q[2]), "p75": rounded(q[3]), "p95": rounded(q[4])}
