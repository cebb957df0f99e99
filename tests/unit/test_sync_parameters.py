"""The shared parameter vector, local training of the global part, accounting and release signing."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dp_accounting import dp_event, pld, rdp
from dp_accounting.pld.privacy_loss_mechanism import GaussianPrivacyLoss

from agent.federation.accounting import composed_noise_multiplier, privacy_spent
from agent.federation.errors import ConfigurationError
from agent.core.sync.parameters import GlobalTrainingSettings, flatten, train_global_delta, unflatten
from agent.federation.layout import SharedLayout
from agent.core.ranker.model import Scorer
from agent.federation.signing import SignatureError, StaleRelease, sign_release, verify_release
from sync_harness import DIM, VOCABULARY, make_catalog, make_person


RESIDUAL_RANK = 4


def layout(residual_rank: int = RESIDUAL_RANK) -> SharedLayout:
    return SharedLayout.create(DIM, 16, [f"test:{i}" for i in range(VOCABULARY)], np.random.default_rng(0),
                               residual_rank=residual_rank)


def test_layout_round_trips_and_maps_the_vector_to_the_adapter():
    shared = layout()
    assert shared.version == 2 and shared.size == DIM * 16 + VOCABULARY * (1 + RESIDUAL_RANK)
    again = SharedLayout.from_bytes(shared.to_bytes())
    assert again.digest() == shared.digest() and again.refs == shared.refs
    assert np.array_equal(again.residual_basis, shared.residual_basis)
    assert np.allclose(shared.projection @ shared.projection.T, np.eye(16), atol=1e-5)  # orthonormal rows
    assert np.allclose(shared.residual_basis @ shared.residual_basis.T, np.eye(RESIDUAL_RANK), atol=1e-5)
    vector = np.random.default_rng(1).normal(size=shared.size)
    adapter = unflatten(shared, vector)
    assert adapter.B.shape == (DIM, 16) and adapter.item_bias["test:3"] == pytest.approx(vector[DIM * 16 + 3])
    residuals = DIM * 16 + VOCABULARY
    assert adapter.W_v.shape == (DIM, RESIDUAL_RANK)
    assert np.allclose(adapter.item_residual["test:3"], vector[residuals + 3 * RESIDUAL_RANK:][:RESIDUAL_RANK])
    assert np.allclose(flatten(shared, adapter), vector, atol=1e-6)
    with pytest.raises(ConfigurationError, match="values"):
        unflatten(shared, vector[:-1])


def test_version_1_layouts_without_residuals_are_still_read():
    refs = [f"test:{i}" for i in range(VOCABULARY)]
    old = SharedLayout(SharedLayout.create(DIM, 16, refs, np.random.default_rng(0)).projection, tuple(refs), version=1)
    data = old.to_bytes()
    assert data[:2] == b"\x00\x01" and len(data) == 14 + 4 * DIM * 16 + len("\n".join(refs))  # version 1's format
    again = SharedLayout.from_bytes(data)
    assert again.version == 1 and again.residual_rank == 0 and again.size == DIM * 16 + VOCABULARY
    assert again.digest() == old.digest()
    adapter = unflatten(again, np.ones(again.size))
    assert adapter.W_v is None and not adapter.item_residual
    with pytest.raises(ConfigurationError, match="no item residuals"):
        SharedLayout(old.projection, old.refs, residual_basis=layout().residual_basis, version=1)
    with pytest.raises(ConfigurationError, match="version 3"):
        SharedLayout.from_bytes(b"\x00\x03" + data[2:])
    with pytest.raises(ConfigurationError, match="truncated"):
        SharedLayout.from_bytes(layout().to_bytes()[:30])


def test_local_training_moves_only_the_shared_part_and_raises_the_margins():
    shared, catalog = layout(), make_catalog()
    person = make_person(catalog, 4)
    start = shared.zeros()
    delta = train_global_delta(shared, start, person.personal, catalog, person.labels,
                               GlobalTrainingSettings(epochs=20))
    assert delta.shape == (shared.size,) and np.linalg.norm(delta) > 0

    def margin(vector: np.ndarray, win: int, lose: int) -> float:
        adapter = unflatten(shared, vector)
        p = person.personal.p.astype(np.float64)
        score = [catalog.X[r] @ p + (catalog.X[r] @ adapter.A.T) @ (adapter.B.T @ p)
                 + adapter.item_bias.get(catalog.refs[r], 0.0)
                 + adapter.item_residual.get(catalog.refs[r], np.zeros(RESIDUAL_RANK)) @ (adapter.W_v.T @ p)
                 for r in (win, lose)]
        return float(score[0] - score[1])

    liked = [catalog.row(i) for i, v in person.labels.items() if v > 0]
    disliked = [catalog.row(i) for i, v in person.labels.items() if v < 0]
    before = np.mean([margin(start, w, d) for w in liked for d in disliked])
    after = np.mean([margin(start + delta, w, d) for w in liked for d in disliked])
    assert after > before + 0.1
    # the residuals learn too, for the vocabulary's items only (the others are the device's own)
    adapter = unflatten(shared, start + delta)
    labelled = {catalog.refs[catalog.row(i)] for i in person.labels}
    assert {ref for ref in labelled if ref.startswith("test:")} <= set(adapter.item_residual)
    assert any(ref.startswith("local:") for ref in labelled)
    assert not any(ref.startswith("local:") for ref in adapter.item_residual)
    # ...and the product's scorer sees what training optimised (its scores add the personal term)
    personal = person.personal
    personal_term = personal.A.T @ (personal.B.T @ personal.p)
    scores = Scorer(catalog, adapter).scores(personal)
    assert np.mean([scores[w] - scores[d] for w in liked for d in disliked]) == pytest.approx(
        after + np.mean([(catalog.X[w] - catalog.X[d]) @ personal_term for w in liked for d in disliked]), abs=1e-3)
    # A person with no feedback sends a zero delta.
    assert not np.any(train_global_delta(shared, start, person.personal, catalog, {}))


def test_accounting_is_exact_for_composed_gaussians_and_adds_the_clamp_term():
    rounds = [1.2, 0.9, 2.5, 1.2, 1.6]
    spent = privacy_spent(rounds, 1e-5, [1e-20] * 5)
    # dp-accounting's PLD accountant, composing round by round, reaches the same epsilon...
    accountant = pld.PLDAccountant(value_discretization_interval=1e-5)
    for z in rounds:
        accountant.compose(dp_event.GaussianDpEvent(z))
    assert spent.epsilon == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-4)
    # ...which is below the RDP bound, and spends exactly the target delta.
    bound = rdp.RdpAccountant()
    for z in rounds:
        bound.compose(dp_event.GaussianDpEvent(z))
    assert spent.epsilon < 0.95 * bound.get_epsilon(1e-5)
    exact = GaussianPrivacyLoss(composed_noise_multiplier(rounds)).get_delta_for_epsilon(spent.epsilon)
    assert exact == pytest.approx(1e-5, rel=1e-6) and exact <= 1e-5
    assert spent.delta == pytest.approx(1e-5 + (1 + np.exp(spent.epsilon)) * 5e-20)
    assert privacy_spent([], 1e-5).epsilon == 0.0
    assert privacy_spent([1.0, 0.0], 1e-5).epsilon == float("inf")
    # More noise, or fewer rounds, never spends more.
    assert privacy_spent([1.3] * 5, 1e-5).epsilon < spent.epsilon < privacy_spent(rounds + [4.0], 1e-5).epsilon


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
