"""The coordinator shrinks a noised average block by block against its known noise (`shrinkage.shrink_blocks`):
rows that carry mostly noise are pulled to zero, rows well above it kept, and without noise nothing changes.
Post-processing only: the release can be recomputed from the round's sum and the published figures."""

from __future__ import annotations

import time

import numpy as np
import pytest

from agent.federation.layout import SharedLayout
from agent.federation.quantize import dequantize_sum
from agent.federation.shrinkage import shrink_blocks

LAYOUT = SharedLayout.create(48, 4, [f"test:{i}" for i in range(400)], np.random.default_rng(0), residual_rank=8)


def rows_of(vector: np.ndarray) -> np.ndarray:
    biases, residuals = LAYOUT.split_points()
    return np.concatenate([vector[biases:residuals, None], vector[residuals:].reshape(-1, LAYOUT.residual_rank)], 1)


def test_without_noise_the_average_is_unchanged():
    average = np.random.default_rng(1).standard_normal(LAYOUT.size)
    shrunk = shrink_blocks(average, LAYOUT, 0.0)
    assert np.array_equal(shrunk.vector, average) and shrunk.items_kept == 1.0


def test_rows_of_noise_go_to_zero_and_rows_of_signal_stay():
    rng = np.random.default_rng(2)
    std = 0.1
    signal = np.zeros(LAYOUT.size)
    rows = rows_of(np.arange(LAYOUT.size, dtype=float))  # the positions of each item's row
    strong = rows[:100].astype(int)
    signal[strong.ravel()] = rng.choice([-2.0, 2.0], strong.size)  # 100 items far above the noise
    signal[:LAYOUT.item_offset] = 0.5 * rng.standard_normal(LAYOUT.item_offset)
    noisy = signal + rng.normal(0, std, LAYOUT.size)
    shrunk = shrink_blocks(noisy, LAYOUT, std)
    factors = np.linalg.norm(rows_of(shrunk.vector), axis=1) / np.linalg.norm(rows_of(noisy), axis=1)
    assert factors[:100].min() > 0.97          # a row of energy ~36 against noise ~0.09: kept
    noise_rows = rows_of(noisy)[100:], rows_of(shrunk.vector)[100:]
    assert np.sum(noise_rows[1] ** 2) < 0.2 * np.sum(noise_rows[0] ** 2)  # pure noise: most of it removed,
    assert np.mean(factors[100:] == 0) > 0.3 and factors[100:].max() < 0.8  # many rows to zero, none kept whole
    assert shrunk.adapter_factor > 0.9
    # Less error than publishing the noise as it came (James-Stein dominates for blocks of 3 or more).
    assert np.linalg.norm(shrunk.vector - signal) < 0.7 * np.linalg.norm(noisy - signal)


def test_the_shrink_factors_are_positive_part_james_stein_for_the_item_part_then_each_row():
    std = 0.2
    average = np.zeros(LAYOUT.size)
    average[LAYOUT.item_offset:] = 0.5
    shrunk = shrink_blocks(average, LAYOUT, std)
    d, count = LAYOUT.residual_rank + 1, len(LAYOUT.refs)
    whole = 1 - (count * d - 2) * std ** 2 / (count * d * 0.25)
    row = 1 - (d - 2) * std ** 2 / (d * 0.25)
    assert 0 < whole < 1 and 0 < row < 1
    assert shrunk.vector[LAYOUT.item_offset:] == pytest.approx(0.5 * whole * row)
    assert (shrunk.items_factor, shrunk.items_kept) == (pytest.approx(whole), 1.0)
    assert shrunk.vector[:LAYOUT.item_offset] == pytest.approx(0.0)  # B_g held nothing: it stays at zero


def test_an_item_part_of_noise_with_a_little_signal_in_every_row_goes_to_about_zero():
    # A federation too small for its noise: a coherent signal of norm 0.5 spread over every row, noise of
    # norm ~6 over the item part. No row stands out; each row's own factor alone would keep a share of its
    # noise, the whole item part's factor removes it.
    rng = np.random.default_rng(3)
    signal = np.zeros(LAYOUT.size)
    signal[LAYOUT.item_offset:] = rng.standard_normal(LAYOUT.size - LAYOUT.item_offset)
    signal *= 0.5 / np.linalg.norm(signal)
    std = 6 / np.sqrt(LAYOUT.size - LAYOUT.item_offset)
    noisy = signal + rng.normal(0, std, LAYOUT.size)
    shrunk = shrink_blocks(noisy, LAYOUT, std)
    assert shrunk.items_factor < 0.05
    error = np.linalg.norm(shrunk.vector[LAYOUT.item_offset:] - signal[LAYOUT.item_offset:])
    assert error < 0.6  # publishing zero would be off by 0.5; the noise as it came by about 6


def test_a_wrong_length_is_refused():
    with pytest.raises(ValueError, match="the layout holds"):
        shrink_blocks(np.zeros(LAYOUT.size - 1), LAYOUT, 0.1)


def test_without_item_blocks_only_b_g_is_shrunk():
    rng = np.random.default_rng(4)
    noisy = rng.normal(0, 0.1, LAYOUT.size)
    shrunk = shrink_blocks(noisy, LAYOUT, 0.1, item_blocks=False)
    assert np.array_equal(shrunk.vector[LAYOUT.item_offset:], noisy[LAYOUT.item_offset:])
    assert shrunk.adapter_factor < 0.1  # B_g: noise alone
    assert np.allclose(shrunk.vector[:LAYOUT.item_offset], shrunk.adapter_factor * noisy[:LAYOUT.item_offset])
    assert (shrunk.items_factor, shrunk.mean_item_factor, shrunk.items_kept) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("from_prior", [False, True])
def test_the_release_is_the_base_plus_the_shrunk_average_of_the_rounds_sum(tmp_path, from_prior):
    from test_sync_withhold import LAYOUT as SERVED, Federation

    # A release period of an hour: the cohort's sum waits for its release, which is then published early.
    # From a public prior the item rows are shrunk too; from zero only B_g (`shrinkage`'s docstring).
    initial = np.random.default_rng(5).normal(0, 0.1, SERVED.size) if from_prior else None
    federation = Federation(tmp_path, 3, initial=initial, noise_multiplier=0.02, release_period=3600.0)
    try:
        base = federation.base()
        _, status = federation.run()
        assert status["state"] == "summed" and status["release_at"] > time.time() + 3000
        ((_, _, summands, sum_vector),) = federation.rounds("summed")
        assert federation.coordinator.publish_if_due() is None  # the period is not over
        assert federation.coordinator.publish_if_due(time.time() + 3600) == 2
        release = federation.base()
        assert federation.rounds("done") == [(status["round_id"], None, summands, None)]  # the sum is dropped
        from agent.server.coordinator import RoundConfig

        config = RoundConfig(**status["config"])
        total = np.frombuffer(sum_vector, dtype="<u4").astype(np.uint32)
        average = dequantize_sum(total, config.quantization(), summands) / summands
        meta = release.metadata
        assert meta["shrink_noise"] is True and meta["noise_std"] > 0
        assert meta["prior"] is from_prior and meta["shrink_items"] is from_prior
        expected = shrink_blocks(average, release.layout, meta["noise_std"], item_blocks=from_prior).vector
        assert np.allclose(release.vector - base.vector, expected, atol=1e-5)
        items = release.layout.item_offset
        assert not np.allclose(expected[:items], average[:items], atol=1e-5)  # B_g was shrunk
        assert np.allclose(expected[items:], average[items:], atol=1e-5) is not from_prior
    finally:
        federation.storage.close()
