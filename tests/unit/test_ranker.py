import numpy as np
import pytest

from agent.core import paths
from agent.core.config import Config
from agent.core.ranker import (
    Catalog,
    GlobalAdapter,
    PersonalAdapter,
    Scorer,
    TrainingSettings,
    build_slate,
    fit,
    mmr,
    online_update,
    preference_labels,
    rating_signal,
    recent_likes,
)
from agent.core.ranker.model import RECENT_DECAY, RECENT_ITEMS, RECENT_WEIGHT
from agent.core.api import Agent
from agent.core.store import Interaction, Store
from helpers import agent_from_template


def _genre_share(agent, genre, recommendations):
    return np.mean([genre in r.item.metadata.get("genres", []) for r in recommendations])


@pytest.mark.parametrize("genre", ["Horror", "Children's", "Documentary"])
def test_a_simulated_user_who_likes_one_genre_gets_more_of_it(demo_database, encoder, genre):
    agent = agent_from_template(demo_database, encoder, seed=0)  # unseeded, Children's sat on the threshold
    agent.config.set("feed.exploration", 0.0)
    items = agent.store.items()
    in_genre = [i.id for i in items if genre in i.metadata["genres"]]
    others = [i.id for i in items if genre not in i.metadata["genres"]]
    catalog_share = len(in_genre) / len(items)
    before = _genre_share(agent, genre, agent.recommend(10))
    rng = np.random.default_rng(42)
    for item_id in rng.choice(in_genre, 8, replace=False):
        agent.feedback(int(item_id), "like")
    for item_id in rng.choice(others, 8, replace=False):
        agent.feedback(int(item_id), "dislike")
    after = _genre_share(agent, genre, agent.recommend(10))
    # Stated margin: at least 40 points more of the genre. Not always a majority of the top 10: what people went
    # on to like after these films (agent.core.ranker.co_liked) takes its share of the ranking, and after a
    # niche genre that is often something else (EVALUATION.md weighs the two).
    assert after >= before + 0.4, (genre, catalog_share, before, after)
    assert after >= 0.4


def test_the_feed_leans_towards_what_was_liked_last(demo_database, encoder):
    # The same six likes in two orders, each followed by a full retrain from all six: the feed leans towards
    # the genre liked last. The demo's feed starts from release 0 (what the public ratings chose), so six likes
    # move the top 50 more than the top 10: children's films 9 of 50 when liked last and 5 when horror was,
    # horror films 3 and 5.
    counts = {}
    for last in ("Children's", "Horror"):
        first = "Horror" if last == "Children's" else "Children's"
        agent = agent_from_template(demo_database, encoder)
        agent.config.set("feed.exploration", 0.0)
        items = agent.store.items()
        liked = {genre: [i.id for i in items if genre in i.metadata["genres"] and
                         not {"Horror", "Children's"} <= set(i.metadata["genres"])][:3] for genre in (first, last)}
        for item_id in liked[first] + liked[last]:
            agent.feedback(item_id, "like")
        agent.retrain()
        top = agent.recommend(50)
        counts[last] = (round(50 * _genre_share(agent, "Children's", top)), round(50 * _genre_share(agent, "Horror", top)))
        agent.close()
    assert counts["Children's"][0] >= counts["Horror"][0] + 2, counts  # children's films in the top 50
    assert counts["Horror"][1] >= counts["Children's"][1] + 2, counts  # horror films in the top 50


def test_agent_scores_are_the_feeds_order(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    agent.config.set("feed.exploration", 0.0)
    agent.config.set("feed.diversity", 0.0)
    liked = [r.item.id for r in agent.recommend(12)[::4]]
    for item_id in liked:
        agent.feedback(item_id, "like")
    scores = agent.scores()
    ids = agent.catalog().ids
    scores[agent.catalog().rows(liked)] = -np.inf
    expected = [int(ids[row]) for row in np.argsort(-scores, kind="stable")[:10]]
    assert [r.item.id for r in agent.recommend(10)] == expected


def test_rated_items_never_come_back_and_reasons_name_liked_items(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    first = agent.recommend(10)
    agent.feedback(first[0].item.id, "like")
    agent.feedback(first[1].item.id, "dislike")
    agent.feedback(first[2].item.id, "skip")
    agent.feedback(first[3].item.id, "rating", 2.0)
    after = agent.recommend(50)
    rated = {r.item.id for r in first[:4]}
    assert rated.isdisjoint(r.item.id for r in after)
    # The one liked item is the only one a reason may name (the reasons themselves: tests/unit/test_reasons.py).
    assert all(r.because is None or r.because.id == first[0].item.id for r in after)
    assert all(r.item.display_title not in r.reason for r in after)


def test_exploration_takes_its_configured_share(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    agent.feedback(agent.recommend(1)[0].item.id, "like")
    agent.config.set("feed.exploration", 0.2)
    slate = agent.recommend(20)
    assert sum(r.exploring for r in slate) == 4 and len(slate) == 20
    assert not slate[0].exploring  # the best item always leads
    agent.config.set("feed.exploration", 0.0)
    assert not any(r.exploring for r in agent.recommend(20))


def test_diversity_spreads_the_slate(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    agent.describe_taste("scary horror films")

    def mean_similarity():
        slate = agent.recommend(10)
        rows = agent.catalog().rows([r.item.id for r in slate])
        X = agent.catalog().X[rows]
        sims = X @ X.T
        return (sims.sum() - np.trace(sims)) / (len(rows) * (len(rows) - 1))

    agent.config.set("feed.exploration", 0.0)
    agent.config.set("feed.diversity", 0.0)
    focused = mean_similarity()
    agent.config.set("feed.diversity", 0.8)
    spread = mean_similarity()
    assert spread < focused - 0.05


def test_a_taste_sentence_steers_the_cold_start(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    agent.config.set("feed.exploration", 0.0)
    before = _genre_share(agent, "Horror", agent.recommend(10))
    agent.describe_taste("terrifying horror movies with monsters and ghosts")
    slate = agent.recommend(10)
    assert _genre_share(agent, "Horror", slate) >= before + 0.5
    assert slate[0].reason.startswith("fits “terrifying horror")


def test_a_query_reranks_towards_it(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    slate = agent.recommend(10, query="animated film for children")
    assert _genre_share(agent, "Animation", slate) + _genre_share(agent, "Children's", slate) >= 0.8


def test_adapter_versions_persist_and_a_corrupt_file_falls_back(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    ids = [r.item.id for r in agent.recommend(3)]
    agent.feedback(ids[0], "like")
    p_first = agent.personal_adapter().p.copy()
    agent.feedback(ids[1], "like")
    p_second = agent.personal_adapter().p.copy()
    assert not np.allclose(p_first, p_second)

    agent.close()
    fresh = Agent(Store.open(), Config(), encoder)
    assert np.allclose(fresh.personal_adapter().p, p_second)

    latest = fresh.store.adapter_versions("personal")[0]
    (paths.data_dir() / latest["path"]).write_bytes(b"torn write")
    fresh.close()
    recovered = Agent(Store.open(), Config(), encoder)
    assert np.allclose(recovered.personal_adapter().p, p_first)
    assert any(e["kind"] == "adapter_rejected" for e in recovered.store.events())


def test_old_adapter_versions_are_pruned(demo_database, encoder):
    agent = agent_from_template(demo_database, encoder)
    for r in agent.recommend(14):
        agent.feedback(r.item.id, "skip")
    versions = agent.store.adapter_versions("personal")
    assert len(versions) == 10
    assert len(list(paths.adapters_dir().iterdir())) == 10


# -- the math, on small data the tests build ---------------------------------------------------


def _random_catalog(n=200, d=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return Catalog(np.arange(1, n + 1), [f"t:{i}" for i in range(n)], X)


def test_scores_equal_the_design_formula():
    rng = np.random.default_rng(1)
    catalog = _random_catalog()
    g = GlobalAdapter(A=rng.standard_normal((4, 16)).astype(np.float32) * 0.1,
                      B=rng.standard_normal((16, 4)).astype(np.float32) * 0.1,
                      item_bias={"t:3": 0.7, "t:9": -0.2},
                      item_residual={"t:3": rng.standard_normal(5).astype(np.float32)},
                      W_v=rng.standard_normal((16, 5)).astype(np.float32))
    u = PersonalAdapter.fresh(16, 3, seed=2)
    u.p = rng.standard_normal(16).astype(np.float32)
    u.B = rng.standard_normal((16, 3)).astype(np.float32) * 0.1
    scorer = Scorer(catalog, g)
    expected = []
    for row, x in enumerate(catalog.X):
        ref = catalog.refs[row]
        h = x + g.B @ g.A @ x + u.B @ u.A @ x
        if ref in g.item_residual:
            h = h + g.W_v @ g.item_residual[ref]
        expected.append(u.p @ h + g.item_bias.get(ref, 0.0))
    assert np.allclose(scorer.scores(u), expected, atol=1e-4)
    rows = np.array([3, 9, 17])
    assert np.allclose(scorer.item_vectors(u, rows) @ u.p + scorer.bias[rows], np.array(expected)[rows], atol=1e-4)


def test_the_latest_likes_steer_the_user_vector_and_only_the_latest_count():
    rng = np.random.default_rng(3)
    catalog = _random_catalog()
    g = GlobalAdapter(A=rng.standard_normal((4, 16)).astype(np.float32) * 0.1,
                      B=rng.standard_normal((16, 4)).astype(np.float32) * 0.1,
                      item_residual={"t:5": rng.standard_normal(5).astype(np.float32)},
                      W_v=rng.standard_normal((16, 5)).astype(np.float32))
    u = PersonalAdapter.fresh(16, 3, seed=2)
    u.p = rng.standard_normal(16).astype(np.float32) * 0.1
    u.B = rng.standard_normal((16, 3)).astype(np.float32) * 0.1
    scorer = Scorer(catalog, g)
    assert scorer.steer(u, None) is u and scorer.steer(u, np.array([], np.int64)) is u
    recent = np.array([40, 41, 5, 7, 9, 11])  # oldest first: only the last RECENT_ITEMS (4) count
    before = u.p.copy()
    steered = scorer.steer(u, recent)
    H = scorer.item_vectors(u, recent[-RECENT_ITEMS:])
    weights = np.array([RECENT_DECAY ** 3, RECENT_DECAY ** 2, RECENT_DECAY, 1.0])  # the newest weighs most
    expected = u.p + RECENT_WEIGHT * (weights / weights.sum()) @ H
    assert np.allclose(steered.p, expected, atol=1e-5)
    assert not np.allclose(steered.p, u.p + RECENT_WEIGHT * H.mean(axis=0), atol=1e-3)  # not a plain mean
    # Fewer likes than RECENT_ITEMS: the same rule over those there are.
    few = scorer.steer(u, recent[-2:]).p
    assert np.allclose(few, u.p + RECENT_WEIGHT * np.array([RECENT_DECAY, 1.0]) @ H[-2:] / (1 + RECENT_DECAY),
                       atol=1e-5)
    assert np.array_equal(steered.B, u.B) and np.array_equal(u.p, before)  # the person's own p is untouched
    # s_ui = u . h_i + b_i: the design formula with p replaced by u
    assert np.allclose(scorer.scores(steered), scorer.item_vectors(u, np.arange(len(catalog))) @ expected
                       + scorer.bias, atol=1e-4)
    assert np.allclose(scorer.steer(u, recent[2:]).p, steered.p)
    # The items nearest the latest likes climb: their mean rank among 200 goes from the middle to the top.
    plain = Scorer(catalog, GlobalAdapter.identity(16, rank=2))
    near = np.argsort(-(catalog.X @ (weights @ catalog.X[recent[-RECENT_ITEMS:]])))[4:14]
    rank = lambda s: np.argsort(np.argsort(-s))[near].mean()  # noqa: E731
    assert rank(plain.scores(plain.steer(u, recent))) < 20 < 60 < rank(plain.scores(u))


def test_recent_likes_are_the_items_liked_now_by_their_latest_event():
    events = [Interaction(1, 10, "like", None, 1.0, "t"), Interaction(2, 11, "rating", 5.0, 2.0, "t"),
              Interaction(3, 12, "dislike", None, 3.0, "t"), Interaction(4, 13, "rating", 2.0, 4.0, "t"),
              Interaction(5, 14, "open", None, 5.0, "t"), Interaction(6, 10, "open", None, 6.0, "t"),
              Interaction(7, 15, "like", None, 7.0, "t"), Interaction(8, 15, "dislike", None, 8.0, "t")]
    # 10's latest event is the open at 6; 12, 13 and 15 are disliked now; 14 was only opened, which is no like.
    assert recent_likes(events) == [11, 10]
    assert recent_likes(reversed(events)) == [11, 10]  # by time, not by the order given
    middling = [Interaction(9, 16, "rating", 3.5, 9.0, "t"), Interaction(10, 17, "rating", 4.0, 10.0, "t")]
    assert recent_likes(events + middling) == [11, 10, 17]  # 3.5 stars is neither a like nor a dislike


def test_training_lowers_the_loss_and_ranks_liked_items_first():
    catalog = _random_catalog()
    scorer = Scorer(catalog, GlobalAdapter.identity(16, rank=2))
    direction = catalog.X[:20].mean(axis=0)
    liked = [int(i) for i in catalog.ids[np.argsort(-(catalog.X @ direction))[:15]]]
    labels = {i: 1.0 for i in liked}
    trained, losses = fit(PersonalAdapter.fresh(16, 4), scorer, labels, TrainingSettings(epochs=80))
    assert losses[-1] < 0.6 * losses[0]
    scores = scorer.scores(trained)
    top = set(catalog.ids[np.argsort(-scores)[:30]].tolist())
    assert len(top & set(liked)) >= 12


def test_pinned_directions_do_not_move():
    catalog = _random_catalog()
    scorer = Scorer(catalog, GlobalAdapter.identity(16, rank=2))
    fixed = np.zeros((1, 16), np.float32)
    fixed[0, 0] = 1.0
    start = PersonalAdapter.fresh(16, 4)
    start.p[0] = 0.3
    labels = {int(i): 1.0 for i in catalog.ids[:10]} | {int(i): -1.0 for i in catalog.ids[10:20]}
    trained, _ = fit(start, scorer, labels, TrainingSettings(epochs=30), fixed=fixed)
    updated = online_update(start, scorer, labels, int(catalog.ids[0]), np.random.default_rng(0), 0.5, fixed=fixed)
    assert trained.p[0] == pytest.approx(0.3) and updated.p[0] == pytest.approx(0.3)
    assert np.linalg.norm(trained.p[1:]) > 0.1


def test_preference_labels_latest_explicit_wins_and_weak_signals_add_up():
    events = [Interaction(1, 1, "like", None, 1.0, "t"), Interaction(2, 1, "dislike", None, 2.0, "t"),
              Interaction(3, 2, "skip", None, 1.0, "t"), Interaction(4, 2, "skip", None, 2.0, "t"),
              Interaction(5, 2, "skip", None, 3.0, "t"), Interaction(6, 3, "open", None, 1.0, "t"),
              Interaction(7, 3, "rating", 5.0, 2.0, "t"), Interaction(8, 4, "rating", 3.0, 1.0, "t")]
    assert preference_labels(events) == {1: -1.0, 2: pytest.approx(-0.6), 3: 1.0}
    assert [rating_signal(s) for s in (0.5, 2, 3, 4, 5)] == [-1.0, -0.5, 0.0, 0.5, 1.0]


def test_mmr_with_no_diversity_is_plain_ranking_and_full_diversity_avoids_duplicates():
    vectors = np.array([[1, 0], [1, 0], [0, 1], [0.9, 0.1]], np.float32)
    scores = np.array([3.0, 2.9, 1.0, 2.0])
    assert mmr(scores, vectors, 4, diversity=0.0) == [0, 1, 3, 2]
    assert mmr(scores, vectors, 2, diversity=0.7) == [0, 2]


def test_slate_masks_excluded_rows_and_handles_tiny_catalogs():
    catalog = _random_catalog(n=5)
    scorer = Scorer(catalog, GlobalAdapter.identity(16, rank=2))
    u = PersonalAdapter.fresh(16, 2)
    slate = build_slate(scorer, u, 10, np.array([0, 2]), np.array([], np.int64), 0.3, 0.5, seed=0)
    assert sorted(e.row for e in slate) == [1, 3, 4]
    assert build_slate(scorer, u, 10, np.arange(5), np.array([], np.int64), 0.3, 0.1, 0) == []
