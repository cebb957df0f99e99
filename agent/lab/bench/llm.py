"""Measurements of the chat LLM, for the report now and `ownrec bench` later:

- `extraction_report(agent)`: on sample requests with hand-written answers, how often the
  model's schema-constrained reading is valid JSON, how many of its fields pass validation,
  their precision and recall against the answers beside the keyword reader's, and whether the
  shortlists get better (the share of shortlisted items that really have the asked-for genre
  and year) with no filters, keyword filters, validated model filters, or both.
- `speed_report(agent)`: the same prompt through bare llama-cpp-python and through ownrec's
  `LLM.stream_chat` + the sentence gate, alternating, in one process: load time, time to first
  token, time to first released text, tokens per second.

Run: `python -m agent.lab.bench.llm` (uses the data directory in OWNREC_HOME; import the demo
catalog first).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.core.importers.demo import dataset_file, parse_items
from agent.core.llm.judge import DISLIKED_SHOWN, LIKED_SHOWN, Profile
from agent.core.llm.rerank import judge_scores, judge_scores_uncached
from agent.core.llm.understand import Filters, apply_filters, keyword_filters, merge, model_filters, words_of

if TYPE_CHECKING:
    from agent.core.llm.model import LLM
    from agent.core.api import Agent

# (request, genres asked for, year_min, year_max): what a careful reader takes from each.
SAMPLE_REQUESTS: list[tuple[str, tuple[str, ...], int | None, int | None]] = [
    ("something funny from the 80s", ("Comedy",), 1980, 1989),
    ("a scary movie for tonight", ("Horror",), None, None),
    ("a romantic comedy for date night", ("Romance", "Comedy"), None, None),
    ("war films made before 1970", ("War",), None, 1969),
    ("a slow, thoughtful science fiction film", ("Sci-Fi",), None, None),
    ("an animated movie my kids will love", ("Animation", "Children's"), None, None),
    ("classic film noir", ("Film-Noir",), None, None),
    ("a western with a good shootout", ("Western",), None, None),
    ("something light and cheerful", (), None, None),
    ("a documentary about music", ("Documentary",), None, None),
    ("a crime thriller from the 90s", ("Crime", "Thriller"), 1990, 1999),
    ("a musical I can sing along to", ("Musical",), None, None),
    ("an epic fantasy adventure", ("Fantasy", "Adventure"), None, None),
    ("a mystery with a twist ending", ("Mystery",), None, None),
    ("a sad drama that will make me cry", ("Drama",), None, None),
    ("action movies from after 1995", ("Action",), 1996, None),
    ("a dark psychological thriller", ("Thriller",), None, None),
    ("old black and white comedies from the 1930s or 1940s", ("Comedy",), 1930, 1949),
    ("a tense horror film from the seventies", ("Horror",), 1970, 1979),
    ("surprise me with something from the 1960s", (), 1960, 1969),
    ("something like Star Wars", (), None, None),
    ("a feel-good film for a rainy Sunday", (), None, None),
]


def _prf(got: set[str], gold: set[str]) -> tuple[int, int, int]:
    return len(got & gold), len(got - gold), len(gold - got)


def _years_right(filters: Filters, low: int | None, high: int | None) -> bool:
    return (filters.year_min, filters.year_max) == (low, high)


def _fits(item, genres: tuple[str, ...], low: int | None, high: int | None) -> bool:
    have = set(item.metadata.get("genres") or [])
    if genres and not have & set(genres):
        return False
    year = item.year
    if low is not None and (year is None or year < low):
        return False
    if high is not None and (year is None or year > high):
        return False
    return True


def extraction_report(agent: "Agent", size: int = 5, log=print) -> dict[str, Any]:
    from agent.core.llm.chat import POOL_WITH_FILTERS, catalog_views

    llm = agent.llm
    _, vocabulary = catalog_views(agent.store)
    counts: dict[str, list[int]] = {name: [0, 0, 0] for name in ("model_raw", "model_valid", "keywords", "both")}
    years = {name: 0 for name in counts}
    years_asked = sum(1 for _, _, low, high in SAMPLE_REQUESTS if low is not None or high is not None)
    valid_json = 0
    fields_valid = {"genres": 0, "years": 0, "mood": 0}
    fields_given = {"genres": 0, "years": 0, "mood": 0}
    mood_in_request = 0
    fit = {name: [] for name in ("none", "keywords", "model_valid", "both")}
    seconds = []
    rows = []
    for text, gold_genres, low, high in SAMPLE_REQUESTS:
        started = time.perf_counter()
        validated, raw, checks = model_filters(llm, text, vocabulary)
        seconds.append(time.perf_counter() - started)
        valid_json += isinstance(raw, dict)
        raw = raw if isinstance(raw, dict) else {}
        raw_filters = Filters(tuple(g for g in raw.get("genres") or [] if isinstance(g, str)), (),
                              raw.get("year_min") if isinstance(raw.get("year_min"), int) else None,
                              raw.get("year_max") if isinstance(raw.get("year_max"), int) else None)
        for name in fields_given:
            given = bool(raw.get(name)) if name != "years" else (raw.get("year_min") is not None
                                                                 or raw.get("year_max") is not None)
            fields_given[name] += given
            fields_valid[name] += checks[name]
        request_words = set(words_of(text))
        mood_in_request += sum(1 for m in raw.get("mood") or [] if isinstance(m, str) and set(words_of(m)) <= request_words
                               and words_of(m))
        keywords = keyword_filters(text, vocabulary)
        both = merge(keywords, validated)
        for name, filters in (("model_raw", raw_filters), ("model_valid", validated), ("keywords", keywords),
                              ("both", both)):
            tp, fp, fn = _prf(set(filters.genres), set(gold_genres))
            counts[name][0] += tp
            counts[name][1] += fp
            counts[name][2] += fn
            if low is not None or high is not None:
                years[name] += _years_right(filters, low, high)
        candidates = agent.recommend(POOL_WITH_FILTERS, query=text)
        for name, filters in (("none", Filters()), ("keywords", keywords), ("model_valid", validated), ("both", both)):
            shortlist, _ = apply_filters(candidates, filters, size)
            if gold_genres or low is not None or high is not None:
                fit[name].append(sum(_fits(r.item, gold_genres, low, high) for r in shortlist) / max(len(shortlist), 1))
        rows.append({"request": text, "gold": {"genres": list(gold_genres), "year_min": low, "year_max": high},
                     "model_raw": raw, "model_valid": validated.as_dict(), "keywords": keywords.as_dict()})
        log(f"{text!r}: model {json.dumps(raw)} -> valid {validated.describe() or '-'}; "
            f"keywords {keywords.describe() or '-'}")

    def scores(tp: int, fp: int, fn: int) -> dict[str, float]:
        return {"precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
                "recall": round(tp / (tp + fn), 3) if tp + fn else 0.0}

    n = len(SAMPLE_REQUESTS)
    return {
        "requests": n,
        "model_seconds_median": round(statistics.median(seconds), 3),
        "model_valid_json": valid_json,
        "model_fields_given": fields_given,
        "model_fields_validated": fields_valid,
        "model_mood_words_from_request": mood_in_request,
        "genres": {name: scores(*c) for name, c in counts.items()},
        "years_exact": {name: f"{v}/{years_asked}" for name, v in years.items()},
        "shortlist_fit": {name: round(statistics.mean(v), 3) for name, v in fit.items()},
        "rows": rows,
    }


def speed_report(agent: "Agent", request: str = "something funny from the 80s", repeats: int = 3,
                 log=print) -> dict[str, Any]:
    """Bare llama-cpp-python against ownrec's path, same prompt and sampling, alternating."""
    from agent.core.llm.chat import REPEAT_PENALTY
    from agent.core.llm.grounding import SentenceGate
    from agent.core.llm.model import cpu_has_amx, import_llama_cpp, model_params_without_extra_buffers

    started = time.perf_counter()
    llm = agent.llm
    ours_load = time.perf_counter() - started
    prepared = agent.stream(request)  # the real prompt and grounder, not a toy one
    messages = prepared.messages
    config = agent.config
    settings = dict(max_tokens=int(config.get("llm.max_tokens")), temperature=float(config.get("llm.temperature")),
                    seed=int(config.get("llm.seed")), repeat_penalty=REPEAT_PENALTY)

    llama_cpp = import_llama_cpp()
    started = time.perf_counter()
    with model_params_without_extra_buffers(cpu_has_amx()):
        bare = llama_cpp.Llama(model_path=str(llm.path), n_ctx=llm.context, n_threads=llm.threads,
                               n_threads_batch=llm.threads, seed=llm.seed, verbose=False)
    bare_load = time.perf_counter() - started

    # Each run starts from an empty context (no prompt prefix reused from the run before), so the
    # time to first token includes reading the whole prompt, as for a new conversation.
    def run_bare() -> dict[str, float]:
        bare.reset()
        t0 = time.perf_counter()
        first = None
        tokens = 0
        for chunk in bare.create_chat_completion(messages=messages, stream=True, **settings):
            if chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter() - t0
                tokens += 1
        total = time.perf_counter() - t0
        return {"first_token": first or total, "tokens": tokens, "seconds": total,
                "tokens_per_second": (tokens - 1) / (total - first) if first and tokens > 1 else 0.0}

    def run_ours() -> dict[str, float]:
        llm.llama.reset()
        t0 = time.perf_counter()
        gate = SentenceGate(prepared.grounder)
        first_release = None
        for token in llm.stream_chat(messages, **settings):
            if gate.feed(token):
                first_release = first_release or time.perf_counter() - t0
        gate.close()
        total = time.perf_counter() - t0
        stats = llm.last_stats
        return {"first_token": stats.first_token_seconds or total, "first_release": first_release or total,
                "tokens": stats.completion_tokens, "seconds": total, "tokens_per_second": stats.tokens_per_second}

    runs: dict[str, list[dict[str, float]]] = {"bare": [], "ownrec": []}
    run_bare()  # warm both (page cache, first-call allocations)
    run_ours()
    for _ in range(repeats):
        runs["bare"].append(run_bare())
        runs["ownrec"].append(run_ours())
    bare = None  # free the second copy of the model

    def median(name: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[name]), 3)

    result = {
        "threads": llm.threads, "context": llm.context, "repeats": repeats,
        "load_seconds": {"ownrec (first load, incl. verification)": round(ours_load, 3), "bare": round(bare_load, 3)},
        "verification": llm.verification,
        "prompt_tokens": llm.last_stats.prompt_tokens,
        "bare": {k: median("bare", k) for k in ("first_token", "tokens", "seconds", "tokens_per_second")},
        "ownrec": {k: median("ownrec", k) for k in ("first_token", "first_release", "tokens", "seconds",
                                                    "tokens_per_second")},
    }
    log(json.dumps(result, indent=1))
    return result


def main() -> None:
    from agent.core.api import Agent

    agent = Agent.open()
    speed = speed_report(agent)
    extraction = extraction_report(agent)
    print(json.dumps({"speed": speed, "extraction": {k: v for k, v in extraction.items() if k != "rows"}}, indent=1))


if __name__ == "__main__":
    main()


def rerank_speed(llm: "LLM", repeats: int = 5, candidates: int = 20, uncached_repeats: int = 2) -> dict[str, Any]:
    """Rerank latency for `candidates` MovieLens items and a typical profile: cold (empty
    context: the prefix is evaluated too), warm (the prefix already in the context, as for a
    person's next feed) and without prefix caching (every prompt from scratch). Seconds."""
    rows = [row.item for row in parse_items(dataset_file("item"))]
    profile = Profile(liked=tuple(r.metadata["display_title"] for r in rows[:LIKED_SHOWN]),
                            disliked=tuple(r.metadata["display_title"] for r in rows[100:100 + DISLIKED_SHOWN]),
                            traits=(("Dark", 0.7), ("Fast-paced", 0.6), ("Cerebral", 0.4)))
    texts = [r.text for r in rows[200:200 + candidates]]
    judge_scores(llm, profile, texts[:2], reuse_prefix=False)  # warm-up: page in the weights

    def timed(run) -> float:
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    cold = [timed(lambda: judge_scores(llm, profile, texts, reuse_prefix=False)) for _ in range(repeats)]
    warm_results = [judge_scores(llm, profile, texts) for _ in range(repeats)]
    uncached = [timed(lambda: judge_scores_uncached(llm, profile, texts)) for _ in range(uncached_repeats)]
    last = warm_results[-1]

    def summary(samples: list[float]) -> dict[str, float]:
        return {"median_s": round(statistics.median(samples), 3),
                "p95_s": round(float(np.percentile(samples, 95)), 3), "n": len(samples)}

    return {"candidates": candidates, "threads": llm.threads, "model": llm.name,
            "prefix_tokens": last.prefix_tokens, "suffix_tokens_per_candidate": round(last.suffix_tokens / candidates, 1),
            "cold": summary(cold), "warm": summary([r.seconds for r in warm_results]),
            "warm_prefix_reused": all(r.prefix_reused for r in warm_results),
            "uncached": summary(uncached), "target_s": 1.5}
