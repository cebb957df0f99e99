"""LLM reranking (agent.core.llm.rerank), with the real SmolLM2 GGUF run by llama-cpp-python. The model is
loaded once for the module."""

from __future__ import annotations


import numpy as np
import pytest

from agent.core.llm import LLM, judge, rerank
from helpers import agent_from_template

PROFILE = judge.Profile(
    liked=("Star Wars", "The Empire Strikes Back", "Alien", "Blade Runner", "The Terminator"),
    disliked=("Sleepless in Seattle", "While You Were Sleeping"),
    traits=(("Dark", 0.8), ("Fast-paced", 0.7)),
)
ITEMS = [
    "Aliens (1986). Action, Sci-Fi, Thriller, War.",
    "Sense and Sensibility (1995). Drama, Romance.",
    "The Usual Suspects (1995). Crime, Thriller.",
    "Babe (1995). Children's, Comedy, Drama.",
    "Star Trek: First Contact (1996). Action, Adventure, Sci-Fi.",
    "The Sound of Music (1965). Musical.",
]


@pytest.fixture(scope="module")
def llm(llm_cache_dir) -> LLM:
    # One thread: on 2 busy cores two llama.cpp threads wait for each other at every barrier and
    # run up to 10x slower; one thread is at worst half as fast. The scores do not depend on it.
    return LLM.load(threads=1, cache_dir=llm_cache_dir)


@pytest.fixture
def demo_agent(demo_database, encoder, llm, ownrec_home):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    agent = agent_from_template(demo_database, encoder, llm)  # the module's model, shared
    yield agent
    agent.close()


def _like_some(agent, genre_words=("Sci-Fi", "Horror"), count=8):
    liked = [item for item in agent.store.items() if any(g in item.text for g in genre_words)][:count]
    for item in liked:
        agent.feedback(item.id, "like")
    return liked


# -- scores ---------------------------------------------------------------------------------------


def test_prefix_cached_scores_equal_scores_of_full_prompts_from_scratch(llm):
    cached = rerank.judge_scores(llm, PROFILE, ITEMS, reuse_prefix=False)
    again = rerank.judge_scores(llm, PROFILE, ITEMS)  # the prefix is still in the context
    full = rerank.judge_scores_uncached(llm, PROFILE, ITEMS)
    assert not cached.prefix_reused and again.prefix_reused
    assert cached.prefix_tokens > 50 and cached.suffix_tokens > 6 * len(ITEMS)
    np.testing.assert_allclose(cached.scores, full, atol=2e-3)
    np.testing.assert_allclose(again.scores, full, atol=2e-3)


def test_scores_are_the_yes_no_log_odds_of_the_first_answer_token(llm):
    import llama_cpp

    yes, no = rerank.answer_tokens(llm)
    assert llm.llama.detokenize([yes]).decode() == judge.YES and llm.llama.detokenize([no]).decode() == judge.NO
    prefix_ids, suffix_ids = judge.tokens(lambda t: llm.llama.tokenize(t.encode(), add_bos=False, special=True),
                                          PROFILE, ITEMS[0])
    with llm.lock:
        llm.llama.reset()
        llm.llama.eval(prefix_ids + suffix_ids)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.llama.ctx, -1),
                                       shape=(llm.llama.n_vocab(),)).astype(np.float64)
    log_probs = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
    score = rerank.judge_scores(llm, PROFILE, ITEMS[:1], reuse_prefix=False).scores[0]
    assert score == pytest.approx(log_probs[yes] - log_probs[no], abs=2e-3)


def test_scores_differ_between_candidates_and_are_deterministic(llm):
    first = rerank.judge_scores(llm, PROFILE, ITEMS, reuse_prefix=False).scores
    second = rerank.judge_scores(llm, PROFILE, list(reversed(ITEMS))).scores[::-1]
    np.testing.assert_allclose(first, second, atol=2e-3)  # order and cache state do not matter
    # distinct items get distinct scores (with the question in the prefix, two of these six land
    # within 0.001 of each other: -0.1945 and -0.1943, so one coincidence at 0.01 is allowed)
    assert len({round(float(s), 2) for s in first}) >= len(ITEMS) - 1
    assert first.max() - first.min() > 0.1
    other = rerank.judge_scores(llm, judge.Profile(liked=("Babe", "The Sound of Music")), ITEMS)
    assert not other.prefix_reused  # another profile: another prefix
    assert not np.allclose(other.scores, first, atol=0.05)


# -- blending -------------------------------------------------------------------------------------


def test_zscores_and_blend():
    np.testing.assert_allclose(rerank.zscores([1.0, 2.0, 3.0]), [-1.2247449, 0.0, 1.2247449], atol=1e-6)
    np.testing.assert_array_equal(rerank.zscores([2.0, 2.0]), [0.0, 0.0])
    np.testing.assert_allclose(rerank.blend([3.0, 2.0, 1.0], [1.0, 2.0, 3.0], 0.5),
                               [1.2247449 * 0.5, 0.0, -1.2247449 * 0.5], atol=1e-6)


def test_blending_only_reorders():
    rng = np.random.default_rng(3)
    ranker = np.sort(rng.normal(size=20))[::-1]
    judged = rng.normal(size=20)
    assert rerank.rerank_order(ranker, judged, 0.0) == list(range(20))  # w = 0: the ranker's order
    assert rerank.rerank_order(ranker, judged, 1e6) == [int(i) for i in np.argsort(-judged)]
    for weight in (0.3, 1.0, 3.0):
        order = rerank.rerank_order(ranker, judged, weight)
        assert sorted(order) == list(range(20))
    # A judge that agrees with the ranker changes nothing at any weight.
    assert rerank.rerank_order(ranker, ranker * 7 + 1, 2.0) == list(range(20))


# -- the product path -----------------------------------------------------------------------------


def test_recommend_reranks_when_on_and_is_identical_when_off(demo_agent, llm):
    _like_some(demo_agent)
    off = demo_agent.recommend()
    demo_agent.config.set("llm.rerank", True)
    demo_agent.config.set("llm.rerank_weight", 5.0)
    on = demo_agent.recommend()
    assert sorted(r.item.id for r in on) == sorted(r.item.id for r in off)  # only reordered
    assert [r.item.id for r in on] != [r.item.id for r in off]
    assert any(rerank.MOVED_UP in r.reason for r in on)
    # Exploration slots stay where the slate put them.
    assert [i for i, r in enumerate(on) if r.exploring] == [i for i, r in enumerate(off) if r.exploring]
    # The order is the blend of the ranker's scores and the judge's, within the reranked entries.
    positions = [i for i, r in enumerate(off) if not r.exploring][:20]
    candidates = [off[i] for i in positions]
    profile = demo_agent.judge_profile(exclude={r.item.id for r in off})
    scores = rerank.judge_scores(llm, profile, [r.item.text for r in candidates]).scores
    expected = [candidates[i].item.id for i in rerank.rerank_order([r.score for r in candidates], scores, 5.0)]
    assert [on[i].item.id for i in positions] == expected
    demo_agent.config.set("llm.rerank", False)
    again = demo_agent.recommend()
    assert [(r.item.id, r.score, r.reason, r.exploring) for r in again] == \
        [(r.item.id, r.score, r.reason, r.exploring) for r in off]


def test_query_requests_are_not_reranked(demo_agent):
    _like_some(demo_agent)
    plain = demo_agent.recommend(query="a funny film")
    demo_agent.config.set("llm.rerank", True)
    demo_agent.config.set("llm.rerank_weight", 5.0)
    assert [(r.item.id, r.reason) for r in demo_agent.recommend(query="a funny film")] == \
        [(r.item.id, r.reason) for r in plain]


def test_feed_works_and_says_why_when_the_llm_is_unavailable(demo_database, encoder, ownrec_home, tmp_path):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    agent = agent_from_template(demo_database, encoder)
    try:
        _like_some(agent)
        off = agent.recommend()
        agent.config.set("llm.rerank", True)
        agent.config.set("llm.model", str(tmp_path / "missing.gguf"))
        first, second = agent.recommend(), agent.recommend()
        for feed in (first, second):
            assert [(r.item.id, r.score, r.reason) for r in feed] == [(r.item.id, r.score, r.reason) for r in off]
        skipped = [e for e in agent.store.events(limit=50) if e["kind"] == "rerank_skipped"]
        assert len(skipped) == 1  # logged once, not at every feed
        assert "missing.gguf" in skipped[0]["payload"] and "llm.model" in skipped[0]["payload"]
    finally:
        agent.close()


def test_chat_works_after_a_rerank(llm):
    messages = [{"role": "user", "content": "Name one famous science fiction film."}]
    with llm.lock:
        llm.llama.reset()
    before = "".join(llm.stream_chat(messages, max_tokens=24, temperature=0.0))
    rerank.judge_scores(llm, PROFILE, ITEMS)
    after = "".join(llm.stream_chat(messages, max_tokens=24, temperature=0.0))
    assert before.strip() and after == before
    # ...and a rerank after the chat evaluates its prefix again and scores as before.
    result = rerank.judge_scores(llm, PROFILE, ITEMS)
    assert not result.prefix_reused
    np.testing.assert_allclose(result.scores[:3], rerank.judge_scores_uncached(llm, PROFILE, ITEMS[:3]), atol=2e-3)
