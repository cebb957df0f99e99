"""`ownrec eval rerank`: does the LLM's judgement improve the ranker's top 20? Figures for EVALUATION.md.

MovieLens-100K (read from the installed recbole package), the PFedRec protocol: per user,
by time, the last rating is the test item and the one before it the validation item; the rest is
training. For a fixed random subset of users, each one gets what the product would give them,
in a temporary data directory (never the person's own): their training ratings in a store, the
personal adapter fitted by `Agent.retrain`, and the judge's profile from `judge.profile_of`.
Then, for the validation and for the test item, two rankings by the ranker's score:

- sampled: the item among 99 negatives the user never rated (fixed seed), and
- full: the item among every item not in the training ratings (for the test item, nor the
  validation item).

The ranker's top 20 is rescored by the LLM (`rerank.judge_scores`, one cached prefix per user)
and reordered by z(ranker) + w * z(judge); HR@10 and NDCG@10 (1/log2(1 + rank)) of the ranker
alone and reranked. The weight w is chosen on the validation items only (pooled over both
rankings); the test items are looked at once, with that w.

A per-user hook (`lora_for_user(user, agent)`, the agent holding that user's training ratings)
may supply a personal LoRA adapter path; the same cases are then scored again with that adapter
applied (`apply_adapter`, by default `LLM.set_adapter`) and reported as a second row. Training
takes minutes per user, so `lora_users` limits that row to the first N users of the (shuffled)
subset; the base model is then also summarised on exactly those N users ("base, LoRA users"), so
the personal-LoRA row is compared with the ranker and the base reranker on the same users, each
with its own bootstrap interval, and a paired interval of personal LoRA - base reranker.

`run_rerank_evaluation` returns plain JSON-able data; `write_report` replaces only its own section
of EVALUATION.md (between the `rerank` markers).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.core import paths
from agent.lab import people
from agent.core.atomic import write_text_atomic
from agent.lab.protocol.metrics import CUTOFF, hit_rate, ndcg
from agent.lab.protocol.movielens import NEGATIVES, EvalUser, choose_users, sample_negatives, split_by_time
from agent.lab.reports import measured_where, write_section
from agent.core.llm import judge, rerank

if TYPE_CHECKING:
    from agent.core.llm.model import LLM
    from agent.core.api import Agent

Log = Callable[[str], None]
LoraHook = Callable[["EvalUser", "Agent"], "Path | None"]  # the user's adapter file, or None: the base model
ApplyAdapter = Callable[["LLM", "Path | None"], None]  # make the LLM use that adapter (None: none)

BEGIN = "<!-- rerank:begin -->"
END = "<!-- rerank:end -->"
HEADER = (
    "# Evaluation\n\n"
    "Figures measured by ownrec's own commands on this repository's code. Each section is written by\n"
    "the command named in it, and only that section is replaced when the command runs again.\n"
)
DEFAULT_USERS = 100
TOP = 20  # the candidates the LLM rescores
WEIGHTS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
JUDGE_ONLY = math.inf  # the top 20 ordered by the judge alone (a reference, never chosen as w)
SHOWN_WEIGHTS = (0.5, 1.0, 2.0)  # test figures at fixed weights, beside the chosen one
BOOTSTRAP = 2000
PROTOCOLS = ("sampled", "full")
SPLITS = ("validation", "test")
SOURCE = "movielens-100k"
BASE, BASE_ON_LORA_USERS, LORA = "base", "base, LoRA users", "personal LoRA"


# -- metrics --------------------------------------------------------------------------------------


def reranked_rank(case: "Case", weight: float) -> int:
    """The held-out item's rank after the top `len(case.top_scores)` is reordered with `weight`
    (JUDGE_ONLY: by the judge alone). Below the top, the ranker's order stands."""
    if case.target_in_top is None:
        return case.ranker_rank
    if weight == JUDGE_ONLY:
        order = [int(i) for i in np.argsort(-np.asarray(case.top_judge), kind="stable")]
    else:
        order = rerank.rerank_order(case.top_scores, case.top_judge, weight)
    return order.index(case.target_in_top) + 1


# -- data -----------------------------------------------------------------------------------------


@dataclass
class Case:
    """One held-out item in one ranking: the ranker's top with its scores, the judge's scores of
    the top (per LLM variant), and where the held-out item is."""

    user_id: int
    split: str  # validation, test
    protocol: str  # sampled, full
    ranker_rank: int
    candidates: int
    top_rows: list[int]
    top_scores: list[float]
    target_in_top: int | None
    top_judge: list[float]


def _ranking(scores: np.ndarray, candidate_rows: np.ndarray, target_row: int, top: int) -> tuple[int, np.ndarray]:
    """The target's 1-based rank among the candidates by score (ties: lower row first) and the
    top rows, best first."""
    s = scores[candidate_rows]
    order = np.lexsort((candidate_rows, -s))
    ranked = candidate_rows[order]
    rank = int(np.flatnonzero(ranked == target_row)[0]) + 1
    return rank, ranked[:top]


# -- the run --------------------------------------------------------------------------------------


@dataclass
class _Setting:
    home: Path
    template: Path
    encoder: Any
    ids: np.ndarray  # catalog row -> local item id
    row_of: dict[str, int]  # MovieLens item id -> catalog row
    texts: list[str]  # catalog row -> item text

    def person(self, user_id: int):
        """An Agent on a fresh copy of the template database, in its own folder."""
        return people.person(self.home, self.template, self.encoder, str(user_id), user_id)


def _prepare(home: Path, log: Log) -> _Setting:
    from agent.core.encoder import Encoder

    log("encoding the demo catalog in a temporary data directory")
    encoder = Encoder.load(paths.models_dir())
    template = people.demo_template(home / "template", encoder)
    with people.person(home, template, encoder, "setup", 0) as agent:
        catalog = agent.catalog()
        texts_by_id = {item.id: item.text for item in agent.store.items()}
    row_of = {ref.split(":", 1)[1]: row for row, ref in enumerate(catalog.refs) if ref.startswith(SOURCE + ":")}
    return _Setting(home, template, encoder, catalog.ids.copy(), row_of,
                    [texts_by_id[int(i)] for i in catalog.ids])


def _user_cases(setting: _Setting, agent: "Agent", user: EvalUser, seed: int, top: int) -> list[Case]:
    """Train the user's ranker the product's way and build their four cases (no judge yet)."""
    rows_train = [(setting.row_of[item], stars, at) for item, stars, at in user.train if item in setting.row_of]
    agent.store.add_interactions([(int(setting.ids[row]), "rating", stars, at, "evaluation")
                                  for row, stars, at in rows_train])
    agent.retrain()
    scores = agent.scores().astype(np.float64)
    n = len(setting.ids)
    train_rows = np.array(sorted({row for row, _, _ in rows_train}), np.int64)
    rated_rows = np.array(sorted(setting.row_of[i] for i in user.rated if i in setting.row_of), np.int64)
    never_rated = np.setdiff1d(np.arange(n), rated_rows)
    cases = []
    for split_index, split in enumerate(SPLITS):
        target = setting.row_of[user.validation if split == "validation" else user.test]
        sampled = np.append(sample_negatives(never_rated, user.user_id, split_index, seed), target)
        seen = train_rows if split == "validation" else np.append(train_rows, setting.row_of[user.validation])
        full = np.setdiff1d(np.arange(n), np.setdiff1d(seen, [target]))
        for protocol, candidates in (("sampled", sampled), ("full", full)):
            rank, top_rows = _ranking(scores, np.asarray(candidates, np.int64), target, top)
            in_top = np.flatnonzero(top_rows == target)
            cases.append(Case(user.user_id, split, protocol, rank, int(len(candidates)),
                              [int(r) for r in top_rows], [float(scores[r]) for r in top_rows],
                              int(in_top[0]) if len(in_top) else None, []))
    return cases


def _judge_cases(llm: "LLM", setting: _Setting, profile: judge.Profile, cases: list[Case]) -> dict[str, float]:
    """Fill in the judge's scores of every case's top rows: each distinct item once, one prefix."""
    rows = list(dict.fromkeys(r for case in cases for r in case.top_rows))
    result = rerank.judge_scores(llm, profile, [setting.texts[r] for r in rows], reuse_prefix=False)
    by_row = dict(zip(rows, result.scores.tolist()))
    for case in cases:
        case.top_judge = [by_row[r] for r in case.top_rows]
    return {"items": len(rows), "seconds": result.seconds, "prefix_tokens": result.prefix_tokens}


def _evaluate_user(setting: _Setting, llm: "LLM", user: EvalUser, seed: int, top: int, variants: list[str],
                   lora_for_user: LoraHook | None, apply_adapter: ApplyAdapter) -> dict[str, Any]:
    """`variants`: "base", and "personal LoRA" for the users that row covers."""
    """One user's cases with the judge's scores, per variant (JSON-able: a checkpoint line)."""
    out: dict[str, Any] = {"user": user.user_id, "adapter": False, "variants": {}}
    with setting.person(user.user_id) as agent:
        base_cases = _user_cases(setting, agent, user, seed, top)
        profile = agent.judge_profile()
        for variant in variants:
            own = [Case(**{**c.__dict__, "top_judge": []}) for c in base_cases]
            if variant == LORA:
                path = lora_for_user(user, agent)
                out["adapter"] = path is not None
                apply_adapter(llm, path)
                llm.llama.reset()  # a cached prefix was computed without the adapter
                try:
                    stats = _judge_cases(llm, setting, profile, own)
                finally:
                    apply_adapter(llm, None)
                    llm.llama.reset()
            else:
                stats = _judge_cases(llm, setting, profile, own)
            out["variants"][variant] = {"cases": [c.__dict__ for c in own], "stats": stats}
    return out


def _read_checkpoint(checkpoint: Path | None, plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Users already done by an earlier run with the same plan (a JSON-lines file: the plan, then
    one line per user); anything else starts afresh."""
    if checkpoint is None or not checkpoint.exists():
        return {}
    lines = checkpoint.read_text(encoding="utf-8").splitlines()
    try:
        if not lines or json.loads(lines[0]) != {"plan": plan}:
            return {}
    except ValueError:
        return {}
    done: dict[int, dict[str, Any]] = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            done[int(entry["user"])] = entry
        except (ValueError, KeyError, TypeError):  # a torn last line: that user runs again
            break
    return done


def run_rerank_evaluation(users: int = DEFAULT_USERS, seed: int = 0, log: Log = print, top: int = TOP,
                          llm: "LLM | None" = None, threads: int = 1, lora_for_user: LoraHook | None = None,
                          apply_adapter: ApplyAdapter | None = None, checkpoint: Path | str | None = None,
                          max_users: int | None = None, lora_users: int | None = None) -> dict[str, Any]:
    """Run the evaluation on `users` MovieLens users (a fixed random subset for `seed`); return
    JSON-able figures, with every case's scores under "cases" (so `summarise` can be rerun).

    `llm`: the model to judge with (default: the packaged SmolLM2 on `threads` threads; one by
    default, because on a shared 2-core machine two llama.cpp threads stall each other waiting
    at every barrier, up to several times slower). `lora_for_user(user, agent)` -> an adapter
    path (or None) per user, switched to with `apply_adapter(llm, path)` (default
    `LLM.set_adapter`), adds a "personal LoRA" variant. `checkpoint`: a file each finished user
    is appended to, so an interrupted run resumes where it stopped. `max_users`: stop after that
    many users of the subset (the subset is processed in a seeded random order, so the users done
    are themselves a random subset). `lora_users`: the personal-LoRA row only for the first that
    many users of that order (default: all), compared with the base model on the same users."""
    from agent.core.importers.demo import movielens_ratings
    from agent.core.llm.model import LLM

    apply_adapter = apply_adapter or (lambda model, path: model.set_adapter(path))
    started = time.perf_counter()
    llm = llm or LLM.load(threads=threads, cache_dir=paths.models_dir() / "llm")
    variants = [BASE] + ([LORA] if lora_for_user else [])
    chosen = choose_users(split_by_time(movielens_ratings()), users, seed)
    np.random.default_rng([seed, 1]).shuffle(chosen)
    if max_users is not None:
        chosen = chosen[:max_users]
    lora_count = min(len(chosen), lora_users) if lora_for_user and lora_users is not None else (
        len(chosen) if lora_for_user else 0)
    lora_ids = {u.user_id for u in chosen[:lora_count]}
    plan = {"users": users, "seed": seed, "negatives": NEGATIVES, "top": top, "cutoff": CUTOFF,
            "variants": variants, "model": llm.model_id, "prompt": _prompt_fingerprint()}
    if lora_for_user and lora_count < len(chosen):
        plan["lora_users"] = lora_count
    checkpoint = Path(checkpoint) if checkpoint else None
    done = _read_checkpoint(checkpoint, plan)
    if checkpoint is not None and not done:
        write_text_atomic(checkpoint, json.dumps({"plan": plan}) + "\n")
    if done:
        log(f"resuming: {len(done)} users already done in {checkpoint}")
    with tempfile.TemporaryDirectory(prefix="ownrec-eval-rerank-") as folder, people.single_blas_thread():
        setting = _prepare(Path(folder), log)
        log(f"{len(chosen)} users: their ranker, then the LLM on the top {top} of four rankings each"
            + (f"; the first {lora_count} also with their own LoRA" if lora_for_user else ""))
        for number, user in enumerate(chosen, 1):
            if user.user_id not in done:
                own = variants if user.user_id in lora_ids else [BASE]
                done[user.user_id] = _evaluate_user(setting, llm, user, seed, top, own, lora_for_user,
                                                    apply_adapter)
                if checkpoint is not None:
                    with open(checkpoint, "a", encoding="utf-8") as handle:
                        handle.write(json.dumps(done[user.user_id]) + "\n")
            if number % 10 == 0 or number == len(chosen):
                log(f"  {number}/{len(chosen)} users, {time.perf_counter() - started:.0f} s")
    entries = [done[u.user_id] for u in chosen]
    results: dict[str, Any] = {
        "plan": {**plan, "users": len(chosen), "subset_of": users, "weights": list(WEIGHTS), "bootstrap": BOOTSTRAP,
                 "user_ids": sorted(u.user_id for u in chosen), "lora_user_ids": sorted(lora_ids)},
        "run": {**measured_where(), "model": llm.name, "threads": llm.threads},
        "variants": {},
        "cases": {},
    }
    lora_entries = [e for e in entries if e["user"] in lora_ids]
    rows = [(BASE, BASE, entries)]
    if lora_for_user:
        if len(lora_entries) < len(entries):
            rows.append((BASE_ON_LORA_USERS, BASE, lora_entries))
        rows.append((LORA, LORA, lora_entries))
    for name, variant, covered in rows:
        cases = [Case(**c) for e in covered for c in e["variants"][variant]["cases"]]
        stats = [e["variants"][variant]["stats"] for e in covered]
        entry = summarise(cases, seed)
        entry["users"] = len(covered)
        entry["judge_items_per_user"] = round(float(np.mean([s["items"] for s in stats])), 1)
        entry["judge_seconds_per_user"] = round(float(np.mean([s["seconds"] for s in stats])), 2)
        entry["prefix_tokens_mean"] = round(float(np.mean([s["prefix_tokens"] for s in stats])), 1)
        if variant == LORA:
            entry["users_with_adapter"] = sum(bool(e["adapter"]) for e in covered)
        results["variants"][name] = entry
        results["cases"][name] = [c.__dict__ for c in cases]
    if lora_for_user:
        base_cases = [Case(**c) for c in results["cases"][BASE_ON_LORA_USERS if len(lora_entries) < len(entries)
                                                               else BASE] if c["user_id"] in lora_ids]
        lora_cases = [Case(**c) for c in results["cases"][LORA]]
        base_w = results["variants"][BASE_ON_LORA_USERS if len(lora_entries) < len(entries) else BASE]["chosen_weight"]
        results["variants"][LORA]["against_base_reranker"] = {
            p: _bootstrap_paired([c for c in lora_cases if c.split == "test" and c.protocol == p],
                                 results["variants"][LORA]["chosen_weight"],
                                 [c for c in base_cases if c.split == "test" and c.protocol == p], base_w, seed)
            for p in PROTOCOLS}
    results["lora_hook"] = "used" if lora_for_user else "not supplied: no personal LoRA row"
    results["seconds"] = round(time.perf_counter() - started, 1)
    log(f"done in {results['seconds']:.0f} s")
    return results


def _mean_metrics(cases: list[Case], weight: float | None) -> dict[str, float]:
    ranks = [c.ranker_rank if weight is None else reranked_rank(c, weight) for c in cases]
    return {"hr": round(float(np.mean([hit_rate(r) for r in ranks])), 4),
            "ndcg": round(float(np.mean([ndcg(r) for r in ranks])), 4)}


def _judge_auc(cases: list[Case], values: str) -> float | None:
    """Within the top, how often the held-out item outscores another candidate (0.5: chance)."""
    wins = []
    for case in cases:
        if case.target_in_top is None or len(case.top_rows) < 2:
            continue
        scores = np.asarray(case.top_judge if values == "judge" else case.top_scores)
        others = np.delete(scores, case.target_in_top)
        target = scores[case.target_in_top]
        wins.append(float(((others < target).sum() + 0.5 * (others == target).sum()) / len(others)))
    return round(float(np.mean(wins)), 4) if wins else None


def _bootstrap_difference(cases: list[Case], weight: float, seed: int) -> dict[str, Any]:
    """Mean per-user NDCG@10 difference (reranked - ranker) and a percentile-bootstrap 95% interval
    over users."""
    diff = np.array([ndcg(reranked_rank(c, weight)) - ndcg(c.ranker_rank) for c in cases])
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(BOOTSTRAP, len(diff)))
    means = diff[idx].mean(axis=1)
    return {"mean": round(float(diff.mean()), 4),
            "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)],
            "better": int((diff > 0).sum()), "worse": int((diff < 0).sum())}


def _bootstrap_paired(cases: list[Case], weight: float, other: list[Case], other_weight: float,
                      seed: int) -> dict[str, Any]:
    """Mean per-user NDCG@10 difference between two rerankings of the same held-out items (`cases`
    with `weight` minus `other` with `other_weight`), with a percentile-bootstrap 95% interval."""
    key = lambda c: (c.user_id, c.split, c.protocol)  # noqa: E731
    others = {key(c): c for c in other}
    if not cases or set(others) != {key(c) for c in cases}:
        raise ValueError("a paired comparison needs the same held-out items on both sides")
    diff = np.array([ndcg(reranked_rank(c, weight)) - ndcg(reranked_rank(others[key(c)], other_weight))
                     for c in cases])
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(BOOTSTRAP, len(diff)))
    means = diff[idx].mean(axis=1)
    return {"mean": round(float(diff.mean()), 4),
            "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)],
            "better": int((diff > 0).sum()), "worse": int((diff < 0).sum())}


def _prompt_fingerprint() -> str:
    """Identifies the judge's prompt, so a checkpoint made with another prompt is not resumed."""
    import hashlib

    sample = judge.prompt(judge.Profile(("A",), ("B",), (("C", 0.5),)), "D")
    return hashlib.sha256(sample.encode("utf-8")).hexdigest()[:12]


def summarise(cases: list[Case], seed: int = 0) -> dict[str, Any]:
    """Choose w on the validation cases (pooled over both rankings; ties: the smaller w), then the
    test figures: ranker alone, reranked with that w, and a few fixed weights for reference."""
    validation = [c for c in cases if c.split == "validation"]
    by_weight = {w: _mean_metrics(validation, w)["ndcg"] for w in WEIGHTS}
    chosen = max(WEIGHTS, key=lambda w: (by_weight[w], -w))
    out: dict[str, Any] = {
        "validation_ndcg_by_weight": {str(w): v for w, v in by_weight.items()},
        "validation_ndcg_judge_only": _mean_metrics(validation, JUDGE_ONLY)["ndcg"],
        "validation_ndcg_ranker": _mean_metrics(validation, None)["ndcg"],
        "chosen_weight": chosen,
        "validation": {},
        "test": {},
    }
    for protocol in PROTOCOLS:
        held = [c for c in validation if c.protocol == protocol]
        out["validation"][protocol] = {"cases": len(held), "ranker": _mean_metrics(held, None),
                                       "reranked": _mean_metrics(held, chosen)}
    for protocol in PROTOCOLS:
        test = [c for c in cases if c.split == "test" and c.protocol == protocol]
        in_top = sum(c.target_in_top is not None for c in test)
        out["test"][protocol] = {
            "cases": len(test),
            "candidates_mean": round(float(np.mean([c.candidates for c in test])), 1),
            "target_in_top": in_top,
            "ranker": _mean_metrics(test, None),
            "reranked": _mean_metrics(test, chosen),
            "difference": _bootstrap_difference(test, chosen, seed),
            "fixed_weights": {str(w): {**_mean_metrics(test, w), "difference": _bootstrap_difference(test, w, seed)}
                              for w in SHOWN_WEIGHTS},
            "judge_only": _mean_metrics(test, JUDGE_ONLY),
            "auc_within_top": {"judge": _judge_auc(test, "judge"), "ranker": _judge_auc(test, "ranker")},
        }
    return out


# -- the report -----------------------------------------------------------------------------------


def _ci(difference: dict[str, Any]) -> str:
    low, high = difference["ci95"]
    return f"{difference['mean']:+.4f} [{low:+.4f}, {high:+.4f}]"


def _verdict(entry: dict[str, Any]) -> str:
    lows = [entry["test"][p]["difference"]["ci95"][0] for p in PROTOCOLS]
    means = [entry["test"][p]["difference"]["mean"] for p in PROTOCOLS]
    if entry["chosen_weight"] == 0.0:
        return "no: on the validation items no weight above 0 beat the ranker alone, so w = 0 (reranking changes nothing)"
    if all(low > 0 for low in lows):
        return "yes: NDCG@10 rises in both rankings and the 95% intervals exclude zero"
    if all(m <= 0 for m in means):
        return "no: NDCG@10 does not rise on the test items"
    return "not shown: the differences are within noise (the 95% intervals include zero)"


def helps(results: dict[str, Any], variant: str = "base") -> bool:
    """Whether reranking should be on by default: a positive chosen weight and a test NDCG gain
    whose 95% interval excludes zero in both rankings."""
    entry = results["variants"][variant]
    return entry["chosen_weight"] > 0 and all(entry["test"][p]["difference"]["ci95"][0] > 0 for p in PROTOCOLS)


def to_markdown(results: dict[str, Any]) -> str:
    plan, run = results["plan"], results["run"]
    commit = run.get("commit") or "unknown"
    if run.get("uncommitted_changes"):
        commit += " plus uncommitted changes"
    lines = [
        "## LLM reranking: does the LLM's judgement improve the ranker's top 20?",
        "",
        f"Written by `ownrec eval rerank` on {run['at']}: commit {commit}, {run['model']} on {run['threads']} "
        f"llama.cpp thread(s), {run['cpus']} CPUs, {plan['users']} MovieLens-100K users (a fixed random subset, seed "
        f"{plan['seed']}), wall time {results['seconds']:.0f} s.",
        "",
        "Protocol (PFedRec's): per user, by time, the last rating is the test item and the one before the "
        "validation item; the rest trains the user's own ranker the product's way (`Agent.retrain`, in a "
        "temporary data directory). Two rankings per held-out item: *sampled*, among "
        f"{plan['negatives']} items the user never rated (fixed seed), and *full*, among every item the user has "
        "not rated before it (all but the training ratings, and for the test item also the validation item). "
        f"The ranker's top {plan['top']} is rescored by the LLM: log P(Yes) - log P(No) after the person's "
        "profile (`judge.profile_of`: their latest likes and dislikes by title, their clearest traits), the "
        f"question \"{judge.QUESTION}\" and the item's text, and reordered by z(ranker score) + "
        f"w * z(judge score) within the {plan['top']}. w is chosen from {', '.join(str(w) for w in plan['weights'])} "
        "on the validation items only (mean NDCG@10 over both rankings; ties go to the smaller w); the test "
        "items are scored once with it. Intervals: percentile bootstrap over users, "
        f"{plan['bootstrap']} resamples, of the mean per-user NDCG@10 difference (reranked - ranker).",
        "",
    ]
    for variant, entry in results["variants"].items():
        w = entry["chosen_weight"]
        users = entry.get("users", plan["users"])
        title = {BASE: "Base model" + (f" (all {users} users)" if len(results["variants"]) > 2 else ""),
                 BASE_ON_LORA_USERS: f"Base model on the {users} users of the personal-LoRA row",
                 LORA: f"With the personal LoRA ({entry.get('users_with_adapter', 0)} of {users} users had an "
                       "adapter" + (f"; the first {users} of the {plan['users']}, the same users as the row above"
                                    if users < plan["users"] else "") + ")"}.get(variant, variant)
        lines += [
            f"### {title}",
            "",
            f"Chosen on validation: **w = {w}** (validation NDCG@10: ranker {entry['validation_ndcg_ranker']:.4f}; "
            + ", ".join(f"w {k}: {v:.4f}" for k, v in entry["validation_ndcg_by_weight"].items())
            + f"; judge alone {entry['validation_ndcg_judge_only']:.4f}). Per ranking, validation NDCG@10 "
            "ranker -> reranked: " + "; ".join(
                f"{p} {entry['validation'][p]['ranker']['ndcg']:.4f} -> {entry['validation'][p]['reranked']['ndcg']:.4f}"
                f" (ranker HR@10 {entry['validation'][p]['ranker']['hr']:.3f})" for p in PROTOCOLS) + ".",
            "",
            "| ranking | users | ranker HR@10 | ranker NDCG@10 | reranked HR@10 | reranked NDCG@10 | "
            "NDCG@10 difference [95% CI] | users better / worse |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for protocol in PROTOCOLS:
            t = entry["test"][protocol]
            d = t["difference"]
            lines.append(f"| {protocol} ({t['candidates_mean']:.0f} candidates) | {t['cases']} | "
                         f"{t['ranker']['hr']:.3f} | {t['ranker']['ndcg']:.4f} | {t['reranked']['hr']:.3f} | "
                         f"{t['reranked']['ndcg']:.4f} | {_ci(d)} | {d['better']} / {d['worse']} |")
        lines += ["", "For reference, not chosen on anything (test items):", "",
                  "| ranking | held-out item in the top 20 | "
                  + " | ".join(f"w = {k}: NDCG@10 (diff [95% CI])" for k in next(iter(entry["test"].values()))[
                      "fixed_weights"]) + " | judge alone: HR@10 / NDCG@10 | within the top 20, P(held-out item "
                  "outscores another): judge / ranker |",
                  "|---|---|" + "---|" * len(SHOWN_WEIGHTS) + "---|---|"]
        for protocol in PROTOCOLS:
            t = entry["test"][protocol]
            fixed = " | ".join(f"{v['ndcg']:.4f} ({_ci(v['difference'])})" for v in t["fixed_weights"].values())
            auc = t["auc_within_top"]
            lines.append(f"| {protocol} | {t['target_in_top']} of {t['cases']} | {fixed} | "
                         f"{t['judge_only']['hr']:.3f} / {t['judge_only']['ndcg']:.4f} | "
                         f"{_fmt(auc['judge'])} / {_fmt(auc['ranker'])} |")
        sampled, full = entry["test"]["sampled"], entry["test"]["full"]
        lines += ["", "How to read it: reranking can only move a held-out item that the ranker put in its top "
                  f"{plan['top']} ({sampled['target_in_top']} of {sampled['cases']} users sampled, "
                  f"{full['target_in_top']} of {full['cases']} full), so the full-ranking difference rests on those "
                  f"few users. On its own, the judge puts the held-out item above another top-{plan['top']} "
                  f"candidate {_fmt(sampled['auc_within_top']['judge'])} of the time in the sampled ranking "
                  f"(0.5 is chance; the ranker's own scores: {_fmt(sampled['auc_within_top']['ranker'])})."]
        lines += ["", f"LLM work per user: {entry['judge_items_per_user']:.0f} distinct items judged in "
                  f"{entry['judge_seconds_per_user']:.1f} s (one {entry['prefix_tokens_mean']:.0f}-token prefix).",
                  "", f"**Does reranking help? {_verdict(entry)}.**", ""]
        if "against_base_reranker" in entry:
            paired = entry["against_base_reranker"]
            lines += ["Against the base model's reranking of the same users (each with the w chosen on its own "
                      "validation items), test NDCG@10 difference, personal LoRA - base [95% CI], users better / "
                      "worse: " + "; ".join(f"{p} {_ci(paired[p])}, {paired[p]['better']} / {paired[p]['worse']}"
                                            for p in PROTOCOLS) + ".", ""]
    default = "on" if helps(results) else "off"
    lines += [f"So `llm.rerank` is **{default}** by default "
              + ("(the gain is outside the noise)." if default == "on" else
                 "(it stays available: `ownrec config set llm.rerank on`).")]
    if LORA in results["variants"]:
        lines += ["", "With the personal LoRA, reranking "
                  + ("helps: the gain over the ranker is outside the noise in both rankings." if helps(results, LORA)
                     else "is not shown to help either: the 95% intervals include zero or the gain is not there.")]
    if LORA not in results["variants"]:
        lines += ["", "No personal-LoRA row in this run: `ownrec eval rerank --lora-steps N [--lora-users M]` adds "
                  "one, training each user's own LoRA for N steps on their training ratings (minutes per user on 2 "
                  "cores), for the first M users only if asked."]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def write_report(results: dict[str, Any], path: Path | str) -> str:
    """Write (or replace) the rerank section of the Markdown report at `path`, keeping everything
    else; create the file with a short header if it is missing. Returns the section."""
    return write_section(path, BEGIN, END, to_markdown(results), HEADER)


__all__ = ["Case", "EvalUser", "choose_users", "helps", "hit_rate", "ndcg", "reranked_rank",
           "run_rerank_evaluation", "split_by_time", "summarise", "to_markdown", "write_report"]
