"""`ownrec eval --adoption`: the lab's devices check releases by the product's rule, and honestly: what the check
holds out is the person's latest training likes (never the validation or test item), it is left out of every
delta they upload, and the validation and test items play no part in any decision. Tiny synthetic data."""

from dataclasses import replace

import numpy as np
import pytest

from agent.core.ranker.model import Catalog
from agent.core.sync.adoption import Candidate, InUse, held_out_likes
from agent.federation.layout import SharedLayout
from agent.lab.evaluation import setting as setting_module
from agent.lab.evaluation.federated import Plan, federated_row
from agent.lab.evaluation.setting import Setting, decide_adoption, fit_personal, upload_labels_of
from agent.lab.protocol.movielens import Protocol

USERS, ITEMS, PER_USER, DIM = 12, 160, 24, 16


def tiny_setting(seed: int = 0) -> Setting:
    rng = np.random.default_rng(seed)
    train_user, train_item, train_time = [], [], []
    held = np.empty((2, USERS), np.int64)
    negatives = np.empty((2, USERS, 99), np.int64)
    for u in range(USERS):
        chosen = rng.choice(ITEMS, PER_USER + 2, replace=False)
        train_user += [u] * PER_USER
        train_item += chosen[:PER_USER].tolist()
        train_time += (1000.0 * u + np.arange(PER_USER)).tolist()
        held[:, u] = chosen[PER_USER:]
        never = np.setdiff1d(np.arange(ITEMS), chosen)
        negatives[:, u] = [rng.choice(never, 99, replace=False) for _ in range(2)]
    protocol = Protocol(np.arange(USERS), ITEMS, np.array(train_user), np.array(train_item),
                        np.full(len(train_item), 4.0), np.array(train_time), held[0], held[1], negatives[0],
                        negatives[1], seed)
    X = rng.normal(size=(ITEMS, DIM)).astype(np.float32)
    refs = [f"test:{i}" for i in range(ITEMS)]
    catalog = Catalog(np.arange(ITEMS), refs, X / np.linalg.norm(X, axis=1, keepdims=True))
    layout = SharedLayout.create(DIM, 4, refs, np.random.default_rng(1), residual_rank=2)
    labels = [{int(i): 1.0 for i in protocol.train_items(u)} for u in range(USERS)]
    return Setting(None, protocol, np.arange(USERS), catalog, layout, labels, None, seed=seed)


@pytest.fixture
def setting(monkeypatch):
    monkeypatch.setattr(setting_module, "workers", lambda: 1)  # in this process, so the spies below see every call
    tiny = tiny_setting()
    tiny.personal = fit_personal(tiny, tiny.layout.zeros(), epochs=5)
    return tiny


def test_the_check_holds_out_latest_training_likes_and_they_are_never_uploaded(setting):
    upload = upload_labels_of(setting)
    for k in range(USERS):
        train = setting.protocol.train_items(k)
        held = held_out_likes(setting.interactions(k))
        assert held == train[-len(held):].tolist() and len(held) >= 5  # the newest training items
        assert setting.protocol.validation[k] not in held and setting.protocol.test[k] not in held
        assert not set(held) & set(upload[k]) and set(held) | set(upload[k]) == set(train.tolist())


def test_a_federated_row_with_the_check_uploads_and_judges_only_what_the_product_would(setting, monkeypatch, tmp_path):
    trained, judged = [], []
    train_global_delta, decide_on = setting_module.train_global_delta, setting_module.decide_on

    def spy_delta(layout, shared, personal, catalog, labels, settings):
        trained.append(set(labels))
        return train_global_delta(layout, shared, personal, catalog, labels, settings)

    def spy_decide(person, current, candidate):
        judged.append(person)
        return decide_on(person, current, candidate)

    monkeypatch.setattr(setting_module, "train_global_delta", spy_delta)
    monkeypatch.setattr(setting_module, "decide_on", spy_decide)
    row = federated_row(setting, Plan("tiny, device adoption check", 0.0, 1.0, rounds=2, adoption=True), 2,
                        tmp_path / "coordinator", None, lambda _: None)
    protocol = setting.protocol
    trains = [set(protocol.train_items(k).tolist()) for k in range(USERS)]
    uploads = [trains[k] - set(held_out_likes(setting.interactions(k))) for k in range(USERS)]
    # Every delta trained on exactly one person's upload labels: their training items without the held-out likes.
    assert len(trained) == 2 * USERS and all(sum(labels == upload for upload in uploads) == 1 for labels in trained)
    # Every decision saw one person's training items only, as their likes and as what they have judged.
    assert len(judged) == 2 * USERS
    for person in judged:
        [k] = [k for k in range(USERS) if person.judged == trains[k]]
        assert {event.item_id for event in person.interactions} == trains[k]
        assert not {int(protocol.validation[k]), int(protocol.test[k])} & (person.judged | set(held_out_likes(
            person.interactions)))
    assert [sorted(h["adoption"]) for h in row.history[:2]] == [["adopted", "blended", "checked", "kept", "mean_t"]] * 2


def test_the_validation_and_test_items_never_change_a_decision(setting):
    rng = np.random.default_rng(5)
    candidate = Candidate(1, setting.layout, rng.normal(scale=0.3, size=setting.layout.size), None, False)
    zero = setting.layout.zeros()

    def decisions():
        return [(d.action, d.t, d.in_use, d.candidate, d.blends) for d in decide_adoption(
            setting, [InUse("tiny")] * USERS, zero, candidate, setting.personal)]

    before = decisions()
    protocol = setting.protocol
    # Other validation and test items (and the negatives they are ranked among): nothing the check reads changes.
    setting.protocol = replace(protocol, validation=protocol.validation_negatives[:, 0], test=protocol.test_negatives[:, 0],
                               validation_negatives=protocol.test_negatives, test_negatives=protocol.validation_negatives)
    assert decisions() == before
    assert {action for action, *_ in before} - {"kept"}  # a check that decides something
