"""The LLM-rerank evaluation (agent.lab.evaluation.rerank): its metrics, its split, and a tiny run with the
real SmolLM2 GGUF. The model is loaded once for the module."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.core.llm import LLM
from agent.lab.evaluation import rerank as rerank_eval


@pytest.fixture(scope="module")
def llm(llm_cache_dir) -> LLM:
    # One thread: on 2 busy cores two llama.cpp threads wait for each other at every barrier and
    # run up to 10x slower; one thread is at worst half as fast. The scores do not depend on it.
    return LLM.load(threads=1, cache_dir=llm_cache_dir)


def test_metrics_on_hand_made_rankings():
    assert rerank_eval.hit_rate(1) == 1.0 and rerank_eval.hit_rate(10) == 1.0 and rerank_eval.hit_rate(11) == 0.0
    assert rerank_eval.ndcg(1) == 1.0
    assert rerank_eval.ndcg(3) == pytest.approx(0.5)
    assert rerank_eval.ndcg(10) == pytest.approx(1 / math.log2(11))
    assert rerank_eval.ndcg(11) == 0.0
    case = rerank_eval.Case(1, "test", "sampled", ranker_rank=12, candidates=100, top_rows=list(range(20)),
                            top_scores=list(np.linspace(2.0, 1.0, 20)), target_in_top=11,
                            top_judge=[0.0] * 11 + [9.0] + [0.0] * 8)
    assert rerank_eval.reranked_rank(case, 0.0) == 12
    assert rerank_eval.reranked_rank(case, rerank_eval.JUDGE_ONLY) == 1
    assert rerank_eval.reranked_rank(case, 1.0) < 12
    outside = rerank_eval.Case(1, "test", "full", 40, 1600, list(range(20)), [1.0] * 20, None, [0.0] * 20)
    assert rerank_eval.reranked_rank(outside, 5.0) == 40  # below the top 20 nothing moves
    summary = rerank_eval.summarise([
        rerank_eval.Case(1, "validation", "sampled", 12, 100, case.top_rows, case.top_scores, 11, case.top_judge),
        rerank_eval.Case(1, "validation", "full", 40, 1600, outside.top_rows, outside.top_scores, None, outside.top_judge),
        case, outside])
    assert summary["chosen_weight"] > 0  # the judge pulled the validation item up
    assert summary["test"]["sampled"]["ranker"] == {"hr": 0.0, "ndcg": 0.0}
    assert summary["test"]["sampled"]["reranked"]["hr"] == 1.0


def test_split_by_time_holds_out_the_last_two_ratings():
    ratings = [(1, "10", 4.0, 300.0), (1, "11", 5.0, 100.0), (1, "12", 3.0, 200.0), (1, "13", 2.0, 400.0),
               (2, "10", 4.0, 1.0), (2, "11", 4.0, 2.0)]
    users = rerank_eval.split_by_time(ratings)
    assert list(users) == [1]  # two ratings are not enough
    assert users[1].test == "13" and users[1].validation == "10"
    assert [r[0] for r in users[1].train] == ["11", "12"]


def test_a_tiny_evaluation_returns_its_figures(llm, prepared_models_dir, tmp_path):
    checkpoint = tmp_path / "checkpoint.jsonl"
    results = rerank_eval.run_rerank_evaluation(users=2, seed=1, log=lambda _: None, top=5, llm=llm,
                                                checkpoint=checkpoint)
    assert results["plan"]["users"] == 2 and len(results["plan"]["user_ids"]) == 2
    assert len(checkpoint.read_text(encoding="utf-8").splitlines()) == 3  # the plan, then one line per user
    messages: list[str] = []
    resumed = rerank_eval.run_rerank_evaluation(users=2, seed=1, log=messages.append, top=5, llm=llm,
                                                checkpoint=checkpoint)
    assert any("resuming: 2 users" in m for m in messages)
    assert resumed["variants"] == results["variants"] and resumed["cases"] == results["cases"]
    base = results["variants"]["base"]
    assert base["chosen_weight"] in rerank_eval.WEIGHTS
    for protocol in rerank_eval.PROTOCOLS:
        test = base["test"][protocol]
        assert test["cases"] == 2
        for key in ("ranker", "reranked", "judge_only"):
            assert 0.0 <= test[key]["hr"] <= 1.0 and 0.0 <= test[key]["ndcg"] <= test[key]["hr"]
        low, high = test["difference"]["ci95"]
        assert -1.0 <= low <= test["difference"]["mean"] <= high <= 1.0
    assert base["test"]["sampled"]["candidates_mean"] == 100.0
    assert base["test"]["full"]["candidates_mean"] > 1500
    assert 0 < base["judge_items_per_user"] <= 4 * 5
    assert len(results["cases"]["base"]) == 8 and all(len(c["top_judge"]) == 5 for c in results["cases"]["base"])
    report = tmp_path / "EVALUATION.md"
    report.write_text("# Evaluation\n\n<!-- traits:begin -->\nkept\n<!-- traits:end -->\n", encoding="utf-8")
    rerank_eval.write_report(results, report)
    rerank_eval.write_report(results, report)  # replaces its own section, once
    text = report.read_text(encoding="utf-8")
    assert text.count(rerank_eval.BEGIN) == 1 and "kept" in text and "HR@10" in text
