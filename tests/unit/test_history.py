"""The ranker's feedback state kept event by event (`ranker.history`) equals what `ranker.feedback`'s functions
derive from the whole history."""

import numpy as np
import pytest

from agent.core.ranker import (
    Catalog,
    FeedbackHistory,
    FeedbackRows,
    GlobalAdapter,
    LabelledRows,
    Scorer,
    latest_judgements,
    preference_labels,
    recent_likes,
)
from agent.core.ranker.training import sample_pairs
from agent.core.store import Interaction

KINDS = ("like", "dislike", "rating", "open", "skip")


def random_history(rng, count, items=25):
    """Events with ids in recording order and times that repeat and go backwards (imports keep their dates)."""
    events = []
    for index in range(count):
        kind = KINDS[rng.integers(len(KINDS))]
        value = None
        if kind == "rating":  # now and then a rating without stars, which labels nothing
            value = None if rng.random() < 0.05 else float(rng.integers(1, 11) / 2)
        at = float(rng.integers(0, count // 2 + 1))
        events.append(Interaction(index + 1, int(rng.integers(1, items + 1)), kind, value, at, "test"))
    return events


def batches(rng, events):
    """Single judgements and imports of many, in recording order."""
    position = 0
    while position < len(events):
        size = 1 if rng.random() < 0.7 else int(rng.integers(2, 60))
        yield events[position:position + size]
        position += size


def assert_agrees(history, events):
    assert history.labels == preference_labels(events)
    assert history.recent_likes() == recent_likes(events)
    assert list(history.latest_judgements().items()) == list(latest_judgements(events).items())
    assert history.judged == {e.item_id for e in events if e.kind != "open"}
    assert (history.count, history.last_id) == (len(events), max((e.id for e in events), default=0))
    likes = recent_likes(events)
    assert history.latest_likes(3) == likes[-3:]
    assert history.latest_likes(2, keep=lambda item: item % 2 == 1) == [i for i in likes if i % 2 == 1][-2:]


@pytest.mark.parametrize("seed", range(30))
def test_the_history_kept_event_by_event_equals_the_rules_over_the_whole_history(seed):
    rng = np.random.default_rng(seed)
    events = random_history(rng, int(rng.integers(1, 250)))
    history, seen = FeedbackHistory(), []
    for batch in batches(rng, events):
        history.add(batch)
        seen += batch
        assert_agrees(history, seen)
    assert_agrees(FeedbackHistory(events), events)  # as built when the agent is opened again
    assert_agrees(FeedbackHistory(events[::-1]), events)  # in whatever order the events come


def test_weak_signals_are_added_up_again_in_time_order_when_an_older_one_arrives():
    opens = [Interaction(i, 7, "open", None, float(t), "test") for i, t in ((1, 10), (2, 11), (3, 12))]
    history = FeedbackHistory(opens)
    assert history.labels == {7: 0.6}  # three opens, capped
    older = [Interaction(4, 7, "skip", None, 1.0, "import"), Interaction(5, 7, "skip", None, 2.0, "import")]
    history.add(older)
    # by time: skip, skip (-0.6), then the opens: -0.3, 0, +0.3; in arrival order it would have been 0.0
    assert history.labels == preference_labels(opens + older) == {7: pytest.approx(0.3)}
    history.add([Interaction(6, 7, "rating", 3.0, 20.0, "test")])  # 3 stars is neutral: the weak signals stand
    assert history.labels == preference_labels(opens + older + [Interaction(6, 7, "rating", 3.0, 20.0, "test")])


def _catalog(ids, dim=8, seed=0):
    X = np.random.default_rng(seed).standard_normal((len(ids), dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return Catalog(np.array(ids, np.int64), [f"t:{i}" for i in ids], X)


@pytest.mark.parametrize("seed", range(10))
def test_the_rows_the_feed_and_training_read_follow_the_history(seed):
    rng = np.random.default_rng(seed)
    catalog = _catalog([2, 3, 5, 6, 7, 9, 11, 12, 13])  # the history's other items are not encoded
    twins = {3: (13,), 13: (3,), 6: (12,), 12: (6,)}
    events = random_history(rng, 150, items=14)
    history, rows, seen = FeedbackHistory(), None, []
    for batch in batches(rng, events):
        touched = history.add(batch)
        seen += batch
        if rows is None:
            rows = FeedbackRows(catalog, history, twins)
        else:
            rows.update(touched)
        judged = {e.item_id for e in seen if e.kind != "open"}
        judged |= {twin for item in judged for twin in twins.get(item, ())}
        assert rows.excluded_rows().tolist() == catalog.rows(sorted(judged)).tolist()
        assert rows.liked_rows().tolist() == catalog.rows(sorted(recent_likes(seen))).tolist()
        labels = preference_labels(seen)
        assert dict(rows.labels) == labels and len(rows.labels) == len(labels)
        expected = np.zeros(len(catalog))
        for item, label in labels.items():
            if catalog.row(item) is not None:
                expected[catalog.row(item)] = label
        assert rows.labels.value.tolist() == expected.tolist()
        assert rows.labels.rows().tolist() == np.flatnonzero(expected).tolist()
    frozen = rows.labels.snapshot()
    history.add([Interaction(10_000, 2, "like", None, 1e9, "test")])
    rows.update([2])
    assert rows.labels[2] == 1.0 and frozen.get(2) == labels.get(2)
    assert frozen.value[catalog.row(2)] == labels.get(2, 0.0)


def test_sample_pairs_reads_labels_with_their_rows_as_it_reads_a_dict_and_bounds_an_epoch():
    catalog = _catalog(list(range(1, 61)), dim=16)
    scorer = Scorer(catalog, GlobalAdapter.identity(catalog.dim))
    rng = np.random.default_rng(5)
    labels = {int(item): float(rng.choice([-1.0, -0.5, 0.5, 1.0])) for item in rng.choice(60, 30, replace=False) + 1}
    labels[999] = 1.0  # not in the catalog: never a pair
    plain = sample_pairs(labels, scorer, np.random.default_rng(3), 4)
    rowed = sample_pairs(LabelledRows(catalog, labels), scorer, np.random.default_rng(3), 4)
    for a, b in zip((plain.win, plain.lose, plain.weight), (rowed.win, rowed.lose, rowed.weight)):
        assert np.array_equal(a, b)
    labelled = {catalog.row(item) for item in labels if catalog.row(item) is not None}
    first_block = set(plain.win[:120]) | set(plain.lose[:120])  # 30 items x 4 unlabelled rows each
    assert first_block & labelled == labelled
    bounded_rng, seen = np.random.default_rng(3), set()
    for _ in range(40):
        pairs = sample_pairs(labels, scorer, bounded_rng, 4, items_per_epoch=5)
        subjects = (set(pairs.win[:20]) | set(pairs.lose[:20])) & labelled
        assert len(subjects) == 5 and 20 <= len(pairs.win) <= 40
        seen |= subjects
    assert seen == labelled  # drawn afresh each epoch: every label is trained on
