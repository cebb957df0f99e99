"""The shared parameter vector, local training of the global part, accounting and release signing."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dp_accounting import dp_event, rdp

from agent.core.sync.accounting import privacy_spent
from agent.core.sync.errors import ConfigurationError
from agent.core.sync.parameters import GlobalTrainingSettings, SharedLayout, train_global_delta
from agent.core.sync.signing import SignatureError, StaleRelease, sign_release, verify_release
from sync_harness import DIM, VOCABULARY, make_catalog, make_person


def layout() -> SharedLayout:
    return SharedLayout.create(DIM, 16, [f"test:{i}" for i in range(VOCABULARY)], np.random.default_rng(0))


def test_layout_round_trips_and_maps_the_vector_to_the_adapter():
    shared = layout()
    assert shared.size == DIM * 16 + VOCABULARY
    again = SharedLayout.from_bytes(shared.to_bytes())
    assert again.digest() == shared.digest() and again.refs == shared.refs
    assert np.allclose(shared.projection @ shared.projection.T, np.eye(16), atol=1e-5)  # orthonormal rows
    vector = np.random.default_rng(1).normal(size=shared.size)
    adapter = shared.unflatten(vector)
    assert adapter.B.shape == (DIM, 16) and adapter.item_bias["test:3"] == pytest.approx(vector[DIM * 16 + 3])
    assert np.allclose(shared.flatten(adapter), vector, atol=1e-6)
    with pytest.raises(ConfigurationError, match="values"):
        shared.unflatten(vector[:-1])


def test_local_training_moves_only_the_shared_part_and_raises_the_margins():
    shared, catalog = layout(), make_catalog()
    person = make_person(catalog, 4)
    start = shared.zeros()
    delta = train_global_delta(shared, start, person.personal, catalog, person.labels,
                               GlobalTrainingSettings(epochs=20))
    assert delta.shape == (shared.size,) and np.linalg.norm(delta) > 0

    def margin(vector: np.ndarray, win: int, lose: int) -> float:
        adapter = shared.unflatten(vector)
        p = person.personal.p.astype(np.float64)
        score = [catalog.X[r] @ p + (catalog.X[r] @ adapter.A.T) @ (adapter.B.T @ p)
                 + adapter.item_bias.get(catalog.refs[r], 0.0) for r in (win, lose)]
        return float(score[0] - score[1])

    liked = [catalog.row(i) for i, v in person.labels.items() if v > 0]
    disliked = [catalog.row(i) for i, v in person.labels.items() if v < 0]
    before = np.mean([margin(start, w, d) for w in liked for d in disliked])
    after = np.mean([margin(start + delta, w, d) for w in liked for d in disliked])
    assert after > before + 0.1
    # A person with no feedback sends a zero delta.
    assert not np.any(train_global_delta(shared, start, person.personal, catalog, {}))


def test_accounting_matches_dp_accounting_and_adds_the_clamp_term():
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_event.GaussianDpEvent(1.2), 5)
    spent = privacy_spent([1.2] * 5, 1e-5, [1e-20] * 5)
    assert spent.epsilon == pytest.approx(accountant.get_epsilon(1e-5))
    assert spent.delta == pytest.approx(1e-5 + (1 + np.exp(spent.epsilon)) * 5e-20)
    assert privacy_spent([], 1e-5).epsilon == 0.0


def test_a_release_verifies_only_unaltered_newer_and_under_the_pinned_key():
    key, shared = Ed25519PrivateKey.generate(), layout()
    vector = np.random.default_rng(2).normal(size=shared.size)
    body = sign_release(key, 3, {"epsilon": 1.5}, shared, vector)
    release = verify_release(body, key.public_key().public_bytes_raw(), newer_than=2)
    assert release.version == 3 and np.array_equal(release.vector, vector) and release.metadata["epsilon"] == 1.5
    with pytest.raises(StaleRelease):
        verify_release(body, key.public_key().public_bytes_raw(), newer_than=3)
    for position in (10, len(body) // 2, len(body) - 70):
        altered = bytearray(body)
        altered[position] ^= 1
        with pytest.raises(SignatureError):
            verify_release(bytes(altered), key.public_key().public_bytes_raw())
