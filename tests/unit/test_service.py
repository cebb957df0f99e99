import os

import numpy as np
import pytest

from agent.core.atomic import write_bytes_atomic
from agent.core.config import Config
from agent.core.api import Agent, FeedbackError
from agent.core.store import NewItem, Store


@pytest.fixture
def agent(encoder):
    return Agent(Store.open(), Config(), encoder)


def _films(texts):
    return [NewItem("t", str(i), f"Film {i}", text, {}) for i, text in enumerate(texts)]


def test_only_new_or_changed_texts_are_encoded(agent):
    agent.store.upsert_items(_films(["A quiet drama.", "A loud action film.", "A quiet drama."]))
    progress = []
    assert agent.ensure_embeddings(lambda done, total: progress.append((done, total))) == 2  # two distinct texts
    assert progress[-1] == (2, 2)
    assert agent.ensure_embeddings() == 0
    agent.store.upsert_items([NewItem("t", "1", "Film 1", "A loud action film, remastered.", {})])
    assert agent.ensure_embeddings() == 1
    assert len(agent.catalog()) == 3


def test_catalog_embeddings_match_the_encoder(agent, encoder):
    texts = ["Space opera with a rebellion.", "A cooking documentary."]
    agent.store.upsert_items(_films(texts))
    agent.ensure_embeddings()
    assert np.allclose(agent.catalog().X, encoder.encode(texts), atol=1e-6)


def test_feedback_validation(agent):
    agent.store.upsert_items(_films(["One.", "Two."]))
    agent.ensure_embeddings()
    with pytest.raises(FeedbackError, match="unknown feedback 'love'"):
        agent.feedback(1, "love")
    with pytest.raises(FeedbackError, match="0.5 to 5"):
        agent.feedback(1, "rating", 0)
    with pytest.raises(FeedbackError, match="takes no value"):
        agent.feedback(1, "like", 3)
    assert agent.store.interaction_count() == 0


def test_periodic_full_retraining(agent):
    agent.store.upsert_items(_films([f"Film number {i} about topic {i % 4}." for i in range(30)]))
    agent.ensure_embeddings()
    agent.config.set("ranker.retrain_every", 3)
    results = [agent.feedback(i, "like" if i % 2 else "dislike") for i in range(1, 7)]
    assert [r.retrained for r in results] == [False, False, True, False, False, True]
    reasons = [v["meta"] for v in agent.store.adapter_versions("personal")]
    assert sum('"retrain"' in m for m in reasons) == 2


def test_onboarding_records_likes_and_taste(agent):
    agent.store.upsert_items(_films([f"Film about subject {i}." for i in range(40)]))
    agent.ensure_embeddings()
    assert agent.needs_onboarding()
    choices = agent.onboarding_choices(8)
    assert len(choices) == 8 and len({c.id for c in choices}) == 8
    agent.finish_onboarding([choices[0].ref, choices[1].ref], "films about subjects")
    assert not agent.needs_onboarding()
    assert [(e.item_id, e.kind, e.origin) for e in agent.store.interactions()] == [
        (choices[0].id, "like", "onboarding"), (choices[1].id, "like", "onboarding")]
    assert agent.store.get_state("taste_description") == "films about subjects"


def test_someone_who_has_rated_items_is_not_onboarded_again(agent):
    agent.store.upsert_items(_films([f"Film about subject {i}." for i in range(10)]))
    agent.ensure_embeddings()
    agent.feedback(agent.store.items()[0].ref, "open")  # opening judges nothing
    assert agent.needs_onboarding()
    agent.feedback(agent.store.items()[1].ref, "like")
    assert not agent.needs_onboarding()


def test_an_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "adapter.npz"
    write_bytes_atomic(target, b"version one")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_bytes_atomic(target, b"version two")
    assert target.read_bytes() == b"version one"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.npz"]  # no temp file left behind
