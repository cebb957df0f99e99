"""Reasons are true: each names a part of the score that lifts the item, an item the person likes now (never
the item itself), or the item's own public figures."""

import re

import numpy as np

from agent.core.ranker import Catalog, GlobalAdapter, PersonalAdapter, Scorer
from agent.core.ranker.co_liked import build_co_liked
from agent.core.ranker.explain import Explanation, explain, reason_text
from agent.core.store import Item
from agent.core.store.signals import PublicSignals
from helpers import agent_from_template

BECAUSE = re.compile(r"^because you liked (.+)$")
CLOSE_TO = re.compile(r"; close to (.+), which you liked$")
CO_LIKED = re.compile(r"^people who rated (.+) \(you liked it\) rated this soon after: ([\d,]+) in the public ratings$")


def _liked_titles(agent) -> set[str]:
    rows = agent._feedback_rows()
    catalog = agent.catalog()
    return {item.display_title for item in agent.store.items([int(catalog.ids[r]) for r in rows.liked_rows()])}


def _check_reasons(agent, slate) -> None:
    liked = _liked_titles(agent)
    catalog = agent.catalog()
    for r in slate:
        named = BECAUSE.match(r.reason) or CLOSE_TO.search(r.reason)
        co_liked = CO_LIKED.match(r.reason)
        if co_liked:  # the count is the public data's own, for that pair; no "close to" after it
            assert not CLOSE_TO.search(r.reason), r.reason
            assert co_liked.group(1) in liked and r.because is not None and r.because.display_title == co_liked.group(1)
            _, people = catalog.co_liked.pair(catalog.row(r.because.id), catalog.row(r.item.id))
            assert int(co_liked.group(2).replace(",", "")) == people > 0, r.reason
        elif named:
            assert named.group(1) in liked, (r.item.display_title, r.reason, liked)
            assert named.group(1) != r.item.display_title, r.reason
            assert r.because is not None and r.because.display_title == named.group(1)
        else:
            assert r.because is None, r.reason
        assert "unlike what you have rated" not in r.reason
        popular = re.match(r"^popular with ([\d,]+) people", r.reason)
        if popular:
            assert int(popular.group(1).replace(",", "")) == round(r.item.signals.popularity)
        rated = re.match(r"^well rated: ([\d.]+) of 5", r.reason)
        if rated:
            assert float(rated.group(1)) == round(r.item.signals.avg_rating, 1)


def test_the_parts_of_a_score_add_up_to_it():
    rng = np.random.default_rng(0)
    n, d = 30, 8
    X = rng.standard_normal((n, d)).astype(np.float32)
    signals = rng.standard_normal((n, 3)).astype(np.float32)
    refs = [f"t:{i}" for i in range(n)]
    # Public sequences (40 people, 12 items each) for what people went on to like.
    co_liked = build_co_liked(np.repeat(np.arange(40), 12), np.concatenate([rng.permutation(n)[:12] for _ in range(40)]), n)
    catalog = Catalog(np.arange(n), refs, X, signals, co_liked)
    personal = PersonalAdapter.fresh(d, 2, seed=1)
    personal.p = rng.standard_normal(d).astype(np.float32)
    personal.B = rng.standard_normal(personal.B.shape).astype(np.float32) * 0.1
    adapter = GlobalAdapter(A=rng.standard_normal((2, d)).astype(np.float32), B=rng.standard_normal((d, 2)).astype(np.float32),
                            item_bias={ref: float(rng.standard_normal()) for ref in refs},
                            item_residual={ref: rng.standard_normal(4).astype(np.float32) for ref in refs},
                            W_v=rng.standard_normal((d, 4)).astype(np.float32))
    scorer = Scorer(catalog, adapter)
    personal = scorer.steer(personal, np.array([3, 7, 11]))
    assert personal.co_liked is not None and personal.co_liked.values.std() > 0
    query = rng.standard_normal(d).astype(np.float32)
    rows = np.arange(n)
    parts = scorer.parts(personal, rows, query, 3.0)
    assert set(parts) == {"taste", "query", "liked_widely", "people_like_you", "popularity", "rating", "recency",
                          "co_liked"}
    np.testing.assert_allclose(sum(parts.values()), scorer.scores(personal, query=query, query_weight=3.0), rtol=1e-4,
                               atol=1e-4)
    average = scorer.average_parts(personal, query, 3.0)
    for name, values in parts.items():
        assert abs(float(values.mean()) - average[name]) < 1e-4, name
    # The reason is the part that leads the average item most.
    lead = {name: parts[name][0] - average[name] for name in parts}
    [first] = explain(scorer, personal, rows[:1], [False], np.zeros(0, np.int64), query, 3.0)
    assert first.kind == max(lead, key=lead.get)


def test_after_one_like_reasons_name_it_only_where_it_explains_the_score(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder, seed=0)
    agent.config.set("feed.exploration", 0.0)
    first = agent.recommend(10)
    agent.feedback(first[0].item.id, "like")
    slate = agent.recommend(20)
    _check_reasons(agent, slate)
    # The demo's feed after one like is mostly what the public ratings put first, and says so; the like is
    # named only where the taste it gave pulls the item up as well.
    assert sum(bool(BECAUSE.match(r.reason)) for r in slate) < len(slate), [r.reason for r in slate]
    assert any(r.reason.startswith("popular with ") for r in slate), [r.reason for r in slate]


def test_opening_an_item_never_makes_it_a_reason_for_itself_or_others(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder, seed=0)
    star_wars = agent.search("Star Wars")[0]
    agent.feedback(star_wars.id, "open")
    slate = agent.recommend(50)
    assert not any(star_wars.display_title in r.reason for r in slate)
    _check_reasons(agent, slate)
    # It stays in the feed (opening is not a judgement), marked as seen; nothing else is.
    assert [r.item.id for r in slate if r.seen] == [star_wars.id]


def test_a_wanted_item_stays_in_the_feed_and_its_reason_says_it_is_on_the_want_list(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder, seed=0)
    star_wars = agent.search("Star Wars")[0]
    agent.feedback(star_wars.id, "want")
    slate = agent.recommend(50)
    wanted = [r for r in slate if r.reason.endswith("; on your want list")]
    assert [r.item.id for r in wanted] == [star_wars.id] and not wanted[0].seen
    _check_reasons(agent, slate)
    agent.feedback(star_wars.id, "dislike")  # judged: it leaves the feed
    assert star_wars.id not in {r.item.id for r in agent.recommend(50)}


def test_reasons_spread_over_likes_that_explain_an_item_about_as_well(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder, seed=0)
    agent.config.set("feed.exploration", 0.0)
    for title in ("Star Wars", "Return of the Jedi", "Empire Strikes Back", "Star Trek: First Contact",
                  "Alien", "Terminator, The"):
        agent.feedback(agent.search(title)[0].id, "like")
    slate = agent.recommend(20)
    _check_reasons(agent, slate)
    named = [r.because.display_title for r in slate if r.because is not None]
    assert len(named) >= 5 and len(set(named)) >= 3, [r.reason for r in slate]


def test_with_nothing_liked_the_reasons_say_so_and_quote_public_figures(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder, seed=0)
    agent.config.set("feed.exploration", 0.2)
    slate = agent.recommend(20)
    _check_reasons(agent, slate)
    assert not any(BECAUSE.match(r.reason) for r in slate)
    for r in slate:
        if r.exploring:
            assert r.reason == "exploring: you have not liked anything yet, so ownrec tries something different"


def _item(**signals) -> Item:
    return Item(1, "t", "1", "A Film", "A Film", "h", {"year": 1950}, PublicSignals(**signals))


def test_signal_reasons_follow_the_side_of_the_average_the_item_is_on():
    item = _item(popularity=12, avg_rating=2.14, published=-631152000.0)
    common = {"query": None, "taste": None, "any_likes": True}
    assert reason_text(Explanation("popularity", above=False), item, None, **common) == \
        "little known: seen by 12 people"
    assert reason_text(Explanation("popularity"), item, None, **common) == "popular with 12 people"
    assert reason_text(Explanation("rating", above=False), item, None, **common) == \
        "rated below average: 2.1 of 5 by 12 people"
    liked = _item()
    assert reason_text(Explanation("popularity", 3, taste_too=True), item, liked, **common) == \
        "popular with 12 people; close to A Film, which you liked"
    assert reason_text(Explanation("recency", above=False), item, None, **common) == "older: from 1950"
    assert reason_text(Explanation("exploring"), item, None, **{**common, "any_likes": False}).startswith(
        "exploring: you have not liked anything yet")
    assert reason_text(Explanation("overall"), item, None, **{**common, "any_likes": False}) == \
        "a starting point: rate it to teach ownrec"


def test_a_person_who_likes_obscure_films_is_told_they_are_little_known(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder, seed=0)
    agent.config.set("feed.exploration", 0.0)
    adapter = agent.personal_adapter().copy()
    adapter.signal_weights = np.array([-3.0, 0.0, 0.0], np.float32)
    agent._save_personal(adapter, "test")
    slate = agent.recommend(20)
    reasons = [r.reason for r in slate]
    assert not any(reason.startswith("popular with") for reason in reasons), reasons
    assert any(reason.startswith("little known: seen by") for reason in reasons), reasons
