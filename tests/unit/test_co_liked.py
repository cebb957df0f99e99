"""What people went on to like: the public item-to-item table, its storage, and what it does to the feed."""

import re

import numpy as np
import pytest

from agent.core.ranker import co_liked as module
from agent.core.ranker.co_liked import CONFIDENCE, STEP_DECAY, CoLiked, build_co_liked
from agent.core.api import Agent
from helpers import catalog, onboarded_agent
from import_helpers import write


def _confidence(raters):
    return raters / (raters + CONFIDENCE)


def test_a_pair_counts_who_liked_the_second_soon_after_the_first_and_only_in_that_order():
    # Person 0: 0, 1, 2; person 1: 0, 2; person 2: 3, 0, 1 (their rows interleaved: only each one's order counts).
    person = np.array([0, 1, 2, 0, 2, 1, 0, 2])
    row = np.array([0, 0, 3, 1, 0, 2, 2, 1])
    table = build_co_liked(person, row, 5)
    raters = np.bincount(row, minlength=5)
    weight, people = table.pair(0, 1)  # person 0 (next), person 2 (next)
    assert people == 2 and weight == pytest.approx(2 / np.sqrt(raters[0] * raters[1]) * _confidence(raters[0]))
    weight, people = table.pair(0, 2)  # person 0 (two later), person 1 (next)
    assert people == 2 and weight == pytest.approx((STEP_DECAY + 1) / np.sqrt(raters[0] * raters[2]) * _confidence(3))
    assert table.pair(1, 0) == (0.0, 0) and table.pair(2, 0) == (0.0, 0)  # nobody liked 0 after 1 or 2
    assert table.pair(3, 1)[1] == 1 and table.pair(4, 0) == (0.0, 0)  # item 4: nobody's
    followers, weights, _ = table.of(0)
    assert list(weights) == sorted(weights, reverse=True) and set(followers.tolist()) == {1, 2}
    assert table.followed_items == 3  # 0, 1 and 3 are followed by something; 2 is always last


def test_only_likes_within_the_window_follow_and_each_item_keeps_its_strongest(monkeypatch):
    table = build_co_liked(np.zeros(8, np.int64), np.arange(8), 8)
    assert table.pair(0, module.WINDOW)[1] == 1 and table.pair(0, module.WINDOW + 1) == (0.0, 0)
    monkeypatch.setattr(module, "NEIGHBOURS", 2)
    kept = build_co_liked(np.zeros(8, np.int64), np.arange(8), 8)
    assert kept.of(0)[0].tolist() == [1, 2]  # the nearest two: the strongest
    assert build_co_liked(np.zeros(0, np.int64), np.zeros(0, np.int64), 3).followed_items == 0


def test_the_term_sums_the_latest_likes_followers_newest_weighing_most():
    person = np.repeat(np.arange(6), 3)
    row = np.array([0, 1, 2, 0, 1, 3, 4, 2, 3, 4, 1, 0, 0, 2, 3, 4, 3, 1])
    table = build_co_liked(person, row, 5)
    term = table.term(np.array([4, 0]))  # 0 is the newest
    mix = np.array([module.CO_LIKED_DECAY, 1.0]) / (1 + module.CO_LIKED_DECAY)
    expected = np.zeros(5)
    for like, share in zip([4, 0], mix):
        for follower in range(5):
            expected[follower] += share * table.pair(like, follower)[0]
    np.testing.assert_allclose(term.values, expected, rtol=1e-6)
    assert term.latest.tolist() == [4, 0] and np.allclose(term.mix, mix)
    assert len(table.term(np.arange(20) % 5).latest) == module.CO_LIKED_ITEMS


def test_the_stored_table_is_keyed_by_refs_and_refuses_what_is_not_one():
    table = build_co_liked(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 0, 2]), 3)
    data = table.to_bytes(["a:0", "a:1", "a:2"])
    # The same items in another order, one gone and one new: pairs follow their refs.
    again = CoLiked.from_bytes(data, ["a:2", "b:9", "a:0"])
    assert again.size == 3 and again.pair(2, 0) == pytest.approx(table.pair(0, 2))
    assert again.pair(2, 1) == (0.0, 0)
    for bad in (b"", b"not a table", data[: len(data) // 2]):
        with pytest.raises(ValueError):
            CoLiked.from_bytes(bad, ["a:0"])
    broken = CoLiked(table.indptr[:-1], table.followers, table.weights, table.people)  # one row short
    with pytest.raises(ValueError, match="inconsistent"):
        CoLiked.from_bytes(broken.to_bytes(["a:0", "a:1", "a:2"]), ["a:0"])


def _sequences_file(path, people=30):
    """Everyone rates sci-0 and then, right after, mys-5 (then films of their own genre), each row with its time."""
    rng = np.random.default_rng(3)
    lines = ["user,item,at"]
    for person in range(people):
        at = 1_600_000_000 + person * 10_000
        genre = ("sci", "rom", "hor")[person % 3]
        films = ["test:sci-0", "test:mys-5", *(f"test:{genre}-{i}" for i in rng.choice(np.arange(1, 24), 6, False))]
        for k, ref in enumerate(dict.fromkeys(films)):
            lines.append(f"u{person},{ref},{at + k}")
    return write(path, "\n".join([lines[0], *reversed(lines[1:])]) + "\n")  # newest first: `at` gives the order


def test_the_feed_follows_what_people_went_on_to_like_and_says_so_truly(encoder, tmp_path):
    agent = onboarded_agent(encoder, catalog())
    agent.config.set("feed.exploration", 0.0)
    report = agent.build_prior(_sequences_file(tmp_path / "public.csv"))
    assert report.followed_items > 0 and "what people went on to like after" in report.summary()
    table = agent.catalog().co_liked
    first, then = agent.catalog().row_of_ref("test:sci-0"), agent.catalog().row_of_ref("test:mys-5")
    assert table.pair(first, then)[1] == 30 and table.pair(then, first) == (0.0, 0)  # ordered by `at`
    agent.feedback("test:sci-0", "like")

    scorer = agent.scorer()
    steered = agent._feed_adapter(scorer)
    assert steered.co_liked is not None
    with_it = scorer.scores(steered)
    steered.co_liked = None
    without = scorer.scores(steered)
    lift = with_it - without
    assert lift[then] == lift.max() > 0  # the film everyone rated right after it gains most
    entry = next(r for r in agent.recommend(20) if r.item.external_id == "mys-5")
    feed = agent.recommend(20)
    assert feed[0].item.external_id == "mys-5"
    said = 0
    for entry in feed:  # each such reason names a like and the public data's own count for the pair
        match = re.match(r"^people who rated (.+) \(you liked it\) rated this soon after: (\d+) in the public ratings$",
                         entry.reason)
        if match:
            said += 1
            assert entry.because is not None and entry.because.external_id == "sci-0"
            assert match.group(1) == entry.because.display_title
            pair = table.pair(first, agent.catalog().row(entry.item.id))
            assert int(match.group(2)) == pair[1] > 0
    assert said >= 1

    # A hidden trait: the feed ranks without what people went on to like (it would bring the trait back).
    agent.traits.hide("Dark")
    hidden = agent._feed_adapter(agent.scorer())
    assert hidden.co_liked is None
    assert all("in the public ratings" not in r.reason for r in agent.recommend(20))
    agent.traits.show("Dark")
    assert agent._feed_adapter(agent.scorer()).co_liked is not None

    # A damaged table is refused and logged; the feed ranks without it and says nothing of it.
    agent.store.db.execute("update priors set co_liked = ?", [b"damaged"])
    agent.close()
    agent = Agent.open(encoder=encoder)
    agent.config.set("feed.exploration", 0.0)
    assert agent.catalog().co_liked is None
    assert any(e["kind"] == "co_liked_rejected" for e in agent.store.events())
    assert all("in the public ratings" not in r.reason for r in agent.recommend(20))
    agent.close()
