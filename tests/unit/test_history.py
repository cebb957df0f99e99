"""The ranker's feedback state kept event by event (`ranker.history`) equals what `ranker.feedback`'s functions
derive from the whole history, and the facade keeps it in step with the store whoever writes to it; the
periodic refit can run in the background without losing a judgement or overwriting an edit."""

import numpy as np
import pytest

from agent.core.api import TASTE_PRIOR_NORM, Agent
from agent.core.api.refit import rebase
from agent.core.config import Config
from agent.core.ranker import (
    Catalog,
    FeedbackHistory,
    FeedbackRows,
    GlobalAdapter,
    LabelledRows,
    PersonalAdapter,
    Scorer,
    latest_judgements,
    preference_labels,
    recent_likes,
)
from agent.core.ranker.training import bound_adapter, sample_pairs
from agent.core.store import Interaction, NewItem, Store
from agent.core.traits import Traits

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


def test_rebase_adds_what_changed_since_the_start_to_the_refit():
    start = PersonalAdapter.fresh(16, 4, seed=1)
    fitted, current = start.copy(), start.copy()
    fitted.p = fitted.p + 0.5
    current.p = current.p - 0.25
    current.B = current.B + 0.01
    fitted.signal_weights = fitted.signal_weights + 0.2
    current.signal_weights = current.signal_weights - 0.05
    current.trained_on = 9
    rebased = rebase(fitted, start, current)
    expected = fitted.copy()
    expected.B = (current.B + 0.0).astype(np.float32)
    bound_adapter(expected)
    assert np.allclose(rebased.p, start.p + 0.25) and np.allclose(rebased.B, expected.B)
    assert np.allclose(rebased.signal_weights, start.signal_weights + 0.15)
    assert rebased.trained_on == 9 and np.array_equal(rebased.prior, fitted.prior)


# -- the facade ---------------------------------------------------------------------------------------------

def _films():
    films = [NewItem("t", str(i), f"Film {i}", f"A film about topic {i % 7}, number {i}.", {}) for i in range(40)]
    return films + [NewItem("t", "again", "Film 3 (again)", "A film about topic 3, number 3.", {})]  # a twin


@pytest.fixture
def agent(encoder):
    agent = Agent(Store.open(), Config(), encoder, seed=0)
    agent.store.upsert_items(_films())
    agent.ensure_embeddings()
    return agent


def assert_reads_the_history_as_the_rules_do(agent):
    events = agent.store.interactions()
    scorer = agent.scorer()
    catalog = scorer.catalog
    expected = scorer.scores(scorer.steer(agent.personal_adapter(), catalog.rows(recent_likes(events))))
    assert np.array_equal(agent.scores(), expected)
    assert agent.rated_count() == agent.store.judged_count()
    feed = agent.recommend(size=len(catalog))
    assert {r.item.id for r in feed} == set(catalog.ids.tolist()) - agent.store.judged_item_ids()
    assert {r.because.id for r in feed if r.because} <= set(recent_likes(events))


def test_the_feed_reads_the_history_as_the_rules_do_whoever_wrote_it(agent, encoder, tmp_path):
    ids = agent.store.item_ids()
    for index, (kind, value) in enumerate([("like", None), ("rating", 4.5), ("dislike", None), ("like", None),
                                           ("open", None), ("skip", None), ("rating", 2.0)]):
        agent.feedback(ids[index], kind, value)
    assert_reads_the_history_as_the_rules_do(agent)
    # The lab and the importers write to the store directly, with older dates.
    agent.store.add_interactions([(ids[10], "like", None, 100.0, "import:test"), (ids[0], "dislike", None, 50.0, "t"),
                                  (ids[1], "rating", 1.0, 1e12, "import:test"), (ids[11], "open", None, 5.0, "t")])
    assert_reads_the_history_as_the_rules_do(agent)
    history = tmp_path / "history.csv"
    history.write_text("Title,Feedback,Rating,At\nFilm 12,like,,2020-01-01\nA New Film,,4.5,2021-01-01\n"
                       "Film 5,dislike,,2019-01-01\n")
    agent.import_file(history)  # new items (a new catalog) and feedback
    assert_reads_the_history_as_the_rules_do(agent)
    agent.traits.forget(agent.traits.definitions[0].id)  # a trait edit moves the adapter, not the history
    assert_reads_the_history_as_the_rules_do(agent)
    again = Agent(Store.open(), Config(), encoder, seed=0)
    assert_reads_the_history_as_the_rules_do(again)
    assert np.array_equal(again.scores(), agent.scores())


def test_trait_readings_from_the_kept_labels_equal_those_from_the_store(agent):
    ids = agent.store.item_ids()
    for index in range(12):
        agent.feedback(ids[index], ("like", "dislike", "open")[index % 3])
    agent.retrain()
    plain = Traits(agent.store, agent.home.traits, embed=agent.embed, scorer=agent.scorer,
                   personal_adapter=agent.personal_adapter, save_personal_adapter=lambda adapter, reason: 0)

    def read(traits):
        return [(r.id, r.value, r.confidence, [(e.item.id, e.label) for e in r.evidence]) for r in traits.readings()]

    assert read(agent.traits) == read(plain)
    assert any(evidence for _, _, _, evidence in read(plain))


@pytest.fixture
def app_agent(encoder):
    agent = Agent(Store.open(), Config(), encoder, seed=0, background_refit=True)
    agent.store.upsert_items(_films())
    agent.ensure_embeddings()
    agent.config.set("ranker.retrain_every", 3)
    yield agent
    agent.close()


def _reasons(agent):
    return [version["meta"] for version in agent.store.adapter_versions("personal")]


def test_a_background_refit_lands_over_the_judgements_made_while_it_trained(app_agent):
    ids = app_agent.store.item_ids()
    assert not any(app_agent.feedback(ids[i], "like").refitting for i in range(2))
    with app_agent.store.lock:  # the refit cannot start before the next judgement
        third = app_agent.feedback(ids[2], "dislike")
        fourth = app_agent.feedback(ids[3], "like")
    assert (third.retrained, third.refitting, fourth.refitting) == (False, True, False)
    assert app_agent.wait_for_refit(timeout=120)
    assert '"retrain"' in _reasons(app_agent)[0] and '"feedback"' in _reasons(app_agent)[1]
    assert app_agent.personal_adapter().trained_on == 4
    assert not any(event["kind"] == "refit_failed" for event in app_agent.store.events())


def test_a_background_refit_never_overwrites_an_edit_and_is_started_again(app_agent):
    ids = app_agent.store.item_ids()
    for i in range(2):
        app_agent.feedback(ids[i], "like")
    with app_agent.store.lock:
        assert app_agent.feedback(ids[2], "like").refitting
        app_agent.describe_taste("films about topic 1")
    assert app_agent.wait_for_refit(timeout=120)
    assert '"taste description"' in _reasons(app_agent)[0]  # the refit was dropped
    taste = app_agent.encoder.encode(["films about topic 1"])[0] * TASTE_PRIOR_NORM
    assert np.allclose(app_agent.personal_adapter().prior, taste)
    assert app_agent.feedback(ids[3], "dislike").refitting  # the next judgement starts it again
    assert app_agent.wait_for_refit(timeout=120)
    assert '"retrain"' in _reasons(app_agent)[0]
    assert np.allclose(app_agent.personal_adapter().prior, taste)
