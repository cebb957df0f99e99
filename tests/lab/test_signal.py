"""`ownrec eval`'s signal table (`agent.lab.evaluation.signal`): the figures are what they say."""

from __future__ import annotations

import numpy as np
import pytest

from agent.federation.clipping import DistributedNoise, NoiseCheck
from agent.federation.layout import SharedLayout
from agent.federation.neighbourhood import plan_neighbourhood
from agent.lab.evaluation.report import signal_markdown
from agent.lab.evaluation.signal import signal_and_noise

LAYOUT = SharedLayout.create(32, 4, [f"test:{i}" for i in range(200)], np.random.default_rng(0), residual_rank=4)


def test_the_signal_is_the_clipped_average_and_the_noise_the_coordinators():
    rng = np.random.default_rng(1)
    coherent = np.zeros(LAYOUT.size)
    coherent[:LAYOUT.item_offset] = 0.05
    deltas = [coherent + rng.normal(0, 0.5, LAYOUT.size) for _ in range(200)]  # norms ~16: clipped to 2
    out = signal_and_noise(deltas, LAYOUT, 2.0, {1.0: 5.0, 8.0: 0.5})
    clipped = [d * min(1.0, 2.0 / np.linalg.norm(d)) for d in deltas]
    average = np.mean(clipped, axis=0)
    assert out["signal_norm"]["B_g"] == pytest.approx(np.linalg.norm(average[:LAYOUT.item_offset]))
    assert out["signal_norm"]["items"] == pytest.approx(np.linalg.norm(average[LAYOUT.item_offset:]))
    low, high = out["epsilons"]
    assert (low["epsilon"], high["epsilon"]) == (1.0, 8.0)
    expected = NoiseCheck.of(DistributedNoise(2.0, 5.0, plan_neighbourhood(200).min_survivors), LAYOUT.size, 200).std
    assert low["noise_std"] == pytest.approx(expected) and high["noise_std"] == pytest.approx(expected / 10)
    for e in (low, high):  # the shrinkage never makes the release further from the noise-free average
        assert e["shrunk_error"]["items"] < e["raw_error"]["items"]
    # More noise, less kept: at epsilon 1 the item part (no coherent signal) is taken to about zero.
    assert low["items_factor"] < 0.05 and low["rows_above_noise"] < high["rows_above_noise"] + 1e-12
    text = "\n".join(signal_markdown(out))
    assert "| 1 | " in text and "| 8 | " in text and "200 people's deltas" in text
