"""The evaluation foundation (agent.lab.protocol): the PFedRec leave-one-out split, HR@10 /
NDCG@10 with ties counted against the held-out item, and the popularity and BPR-MF baselines on
the real MovieLens-100K (quick settings)."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import pytest

from agent.lab.protocol import baselines, metrics
from agent.lab.protocol.movielens import Item, MovieLens, User, leave_one_out, load_movielens

ITEMS = 120


@pytest.fixture(scope="module")
def movielens():
    """The real MovieLens-100K split (seed 0), once per module."""
    return leave_one_out(load_movielens())


def tiny() -> MovieLens:
    """Three users over 120 items. User 1's latest two ratings share a timestamp (the one listed
    later is the test item); user 3 has two ratings only and is left out."""
    items = tuple(Item(str(i), f"movielens-100k:{i}", f"film {i}", f"film {i}.") for i in range(1, ITEMS + 1))
    users = (User(1, 30, "F", "writer"), User(2, 40, "M", "other"), User(3, 50, "F", "other"))
    ratings = (
        (1, "5", 4.0, 100.0), (1, "9", 3.0, 400.0), (1, "2", 5.0, 200.0), (1, "7", 1.0, 400.0), (1, "3", 2.0, 300.0),
        (2, "50", 5.0, 10.0), (2, "1", 4.0, 30.0), (2, "60", 2.0, 20.0), (2, "70", 3.0, 40.0),
        (3, "1", 5.0, 1.0), (3, "2", 5.0, 2.0),
    )
    return MovieLens(users, items, ratings)


def rows(*ids: int) -> list[int]:
    return [i - 1 for i in ids]  # item "k" is row k - 1


# -- the split ------------------------------------------------------------------------------------


def test_latest_is_test_the_one_before_validation_the_rest_training():
    p = leave_one_out(tiny(), seed=3)
    assert p.user_ids.tolist() == [1, 2]  # user 3 has too few ratings
    # user 1 by time: 5 (100), 2 (200), 3 (300), then 9 and 7 both at 400, in that order
    assert p.test.tolist() == rows(7, 70) and p.validation.tolist() == rows(9, 1)
    assert p.train_items(0).tolist() == rows(5, 2, 3)  # oldest first
    assert p.train_items(1).tolist() == rows(50, 60)
    assert p.train_rating.tolist() == [4.0, 5.0, 2.0, 5.0, 2.0]
    assert p.train_matrix().sum() == 5 and p.train_matrix()[0, rows(5, 2, 3)].all()


def test_negatives_are_never_interacted_distinct_and_reproducible():
    data = tiny()
    p = leave_one_out(data, seed=3)
    interacted = [set(rows(5, 2, 3, 9, 7)), set(rows(50, 60, 1, 70))]
    for split in ("validation", "test"):
        negatives = p.negatives(split)
        assert negatives.shape == (2, 99)
        for u in range(2):
            assert len(set(negatives[u].tolist())) == 99
            assert not set(negatives[u].tolist()) & interacted[u]
        assert (p.sampled_candidates(split)[:, -1] == p.target(split)).all()
    assert not np.array_equal(p.validation_negatives, p.test_negatives)  # drawn separately
    again = leave_one_out(data, seed=3)
    assert np.array_equal(again.test_negatives, p.test_negatives)
    assert np.array_equal(again.validation_negatives, p.validation_negatives)
    assert not np.array_equal(leave_one_out(data, seed=4).test_negatives, p.test_negatives)


def test_full_ranking_candidates_leave_out_training_and_for_test_the_validation_item():
    p = leave_one_out(tiny())
    validation, test = p.full_candidates("validation"), p.full_candidates("test")
    assert validation.shape == test.shape == (2, ITEMS)
    assert validation[0].sum() == ITEMS - 3 and test[0].sum() == ITEMS - 4
    assert not validation[0, rows(5, 2, 3)].any() and validation[0, rows(9, 7)].all()
    assert not test[0, rows(5, 2, 3, 9)].any() and test[0, rows(7)].all()


def test_the_real_dataset_is_the_federations_vocabulary(movielens):
    data = load_movielens()
    assert len(data.users) == 943 and len(data.items) == 1682 and len(data.ratings) == 100_000
    assert list(data.refs) == [f"movielens-100k:{i}" for i in range(1, 1683)]  # agent.server's default layout
    assert data.users[0] == User(1, 24, "M", "technician")
    assert movielens.user_count == 943 and len(movielens.train_item) == 100_000 - 2 * 943


# -- metrics --------------------------------------------------------------------------------------


def test_hit_rate_and_ndcg_by_hand():
    assert metrics.ndcg(1) == 1.0
    assert metrics.ndcg(3) == pytest.approx(0.5)
    assert metrics.ndcg(10) == pytest.approx(1 / math.log2(11))
    assert metrics.ndcg(11) == 0.0
    assert metrics.hit_rate(1) == metrics.hit_rate(10) == 1.0 and metrics.hit_rate(11) == 0.0
    assert metrics.ndcg(np.array([1, 3, 11])).tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_ranks_count_ties_against_the_held_out_item():
    scores = np.zeros((4, 6))
    scores[0] = [9, 1, 2, 3, 4, 5]  # target 0 is the best: rank 1
    scores[1] = [5, 7, 6, 1, 1, 1]  # two above it: rank 3
    scores[2] = [5, 5, 1, 1, 1, 1]  # one tie: rank 2, not 1
    scores[3] = [1, 1, 1, 1, 1, 1]  # all tied: last of 6
    targets = np.zeros(4, dtype=np.int64)
    everything = np.ones((4, 6), dtype=bool)
    assert metrics.rank_among(scores, targets, everything).tolist() == [1, 3, 2, 6]
    negatives = np.tile(np.arange(1, 6), (4, 1))  # the same candidates as row indices
    assert metrics.rank_among(scores, targets, negatives).tolist() == [1, 3, 2, 6]
    mask = everything.copy()
    mask[1, 1] = False  # not a candidate: does not count
    assert metrics.rank_among(scores, targets, mask).tolist() == [1, 2, 2, 6]
    with_nan = scores.copy()
    with_nan[0, 0] = np.nan  # a NaN target is the lowest score there is
    assert metrics.rank_among(with_nan, targets, everything)[0] == 6


def test_evaluate_a_hand_made_ranking():
    p = leave_one_out(tiny(), seed=1)
    scores = np.zeros((2, ITEMS))
    scores[0, p.test[0]] = 3.0  # user 1's test item first everywhere
    scores[1, p.test[1]] = 1.0
    others = [i for i in np.flatnonzero(p.full_candidates("test")[1]) if i != p.test[1]][:2]
    scores[1, others] = 2.0  # two candidates above user 2's test item: rank 3 in full ranking
    result = metrics.evaluate_split(scores, p, "test")
    sampled_above = int(np.isin(others, p.test_negatives[1]).sum())
    assert result.hr10_full == 1.0 and result.ndcg10_full == pytest.approx((1.0 + 0.5) / 2)
    assert result.ndcg10_sampled == pytest.approx((1.0 + 1 / math.log2(2 + sampled_above)) / 2)
    # the validation items score 0 like nearly everything: ties put them last
    assert metrics.evaluate_split(scores, p, "validation").hr10_full == 0.0
    # a function of the user row gives the same figures as the matrix
    assert metrics.evaluate(lambda u: scores[u], p) == metrics.evaluate(scores, p)
    subset = metrics.evaluate_split(scores[[1]], p, "test", users=np.array([1]))
    assert subset.ndcg10_full == pytest.approx(0.5)


def test_scoring_every_user_and_item_takes_well_under_a_second(movielens):
    scores = np.random.default_rng(0).standard_normal((movielens.user_count, movielens.item_count))
    started = time.perf_counter()
    metrics.evaluate(scores, movielens)
    assert time.perf_counter() - started < 0.5


# -- baselines on the real data -------------------------------------------------------------------


def test_popularity_beats_random_and_matches_the_reference(movielens):
    random = metrics.evaluate(np.random.default_rng(0).random((movielens.user_count, movielens.item_count)), movielens)
    popular = metrics.evaluate(baselines.popularity_scores(movielens), movielens)
    assert random.test.hr10_sampled == pytest.approx(0.10, abs=0.04)  # 10 of 100 candidates
    assert popular.test.hr10_sampled > random.test.hr10_sampled + 0.2
    assert popular.test.hr10_full > random.test.hr10_full + 0.03
    # The reference runs measured popularity at 0.418 / 0.230 / full 0.085 with PFedRec's split
    assert popular.test.hr10_sampled == pytest.approx(0.418, abs=0.03)
    assert popular.test.ndcg10_sampled == pytest.approx(0.230, abs=0.02)
    assert popular.test.hr10_full == pytest.approx(0.085, abs=0.02)


def test_quick_bpr_beats_popularity_and_is_selected_on_validation(movielens):
    config = replace(baselines.QUICK_BPR, eval_every=1)
    mf = baselines.train_bpr(movielens, config)
    assert mf.cpu_seconds < 15  # about 3 s on one core
    popular = metrics.evaluate(baselines.popularity_scores(movielens), movielens)
    assert mf.evaluation.test.hr10_sampled > popular.test.hr10_sampled + 0.1
    assert mf.evaluation.test.ndcg10_sampled > popular.test.ndcg10_sampled + 0.05
    assert mf.evaluation.test.hr10_full > popular.test.hr10_full
    best = max(mf.history, key=lambda h: (h[1], -h[0]))
    assert mf.epoch == best[0]  # the epoch with the best validation HR@10, the earliest of equals
    assert [h[0] for h in mf.history] == list(range(1, config.epochs + 1))
    assert mf.epoch < config.epochs  # (with seed 0 it peaks before the end: the selection matters here)
    assert metrics.evaluate(mf.scores(), movielens) == mf.evaluation  # the kept factors are that epoch's
