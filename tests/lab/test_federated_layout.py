"""What a lab row's federation shares (`federated.shared_layout`): every number, no residual rows, or only the
rows of items with enough raters; and where each shared number sits in the full layout."""

from types import SimpleNamespace

import numpy as np

from agent.federation.layout import SharedLayout
from agent.lab.evaluation.federated import Plan, shared_layout


def _setting() -> SimpleNamespace:
    # dim 4, rank 2 (B_g: 8 numbers), items a, b, c with 2-d residuals: 8 + 3 + 6 = 17 numbers
    layout = SharedLayout.create(4, 2, ["a", "b", "c"], np.random.default_rng(0), residual_rank=2)
    # raters among the training interactions: a 2, b 1, c 3
    return SimpleNamespace(layout=layout, protocol=SimpleNamespace(train_item=np.array([0, 0, 2, 2, 2, 1])))


def test_every_number_by_default_and_b_g_with_the_biases_when_dense():
    setting = _setting()
    layout, index = shared_layout(setting, Plan("all", 1.0, 1.0, 3))
    assert layout.size == 17 and index.tolist() == list(range(17))
    layout, index = shared_layout(setting, Plan("dense", 1.0, 1.0, 3, dense=True))
    assert layout.size == 11 and layout.residual_rank == 0 and index.tolist() == list(range(11))


def test_only_the_items_with_enough_raters_keep_their_bias_and_residual():
    setting = _setting()
    layout, index = shared_layout(setting, Plan("rated", 1.0, 1.0, 3, min_raters=2))
    assert layout.refs == ("a", "c") and layout.size == 8 + 2 + 4
    # B_g; the biases of a (8) and c (10); the residuals of a (11, 12) and c (15, 16)
    assert index.tolist() == [*range(8), 8, 10, 11, 12, 15, 16]
    # A shared vector scattered into the full layout lands on the same items' numbers.
    full = np.arange(17, dtype=float)
    assert np.array_equal(full[index][layout.size - 4:], [11, 12, 15, 16])
    layout, index = shared_layout(setting, Plan("dense rated", 1.0, 1.0, 3, dense=True, min_raters=3))
    assert layout.refs == ("c",) and index.tolist() == [*range(8), 10]
