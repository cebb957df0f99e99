"""What `ownrec eval` and `ownrec audit` share: the data, the split, the catalog, the personal adapters.

Every simulated person is a MovieLens user whose training interactions are their feedback (implicit
positives, as in the PFedRec protocol: label 1 for every rated film). Their personal adapter is trained
the product's way (`ranker.training.fit`, the product's settings, a fresh adapter seeded per user) with
the global adapter at its starting point: that is "ownrec local-only", and the personal part that the
federated rows hold fixed while they learn the global part. Scores are the product's: steered by the
person's latest likes (`Scorer.steer`), which at a held-out item are the interactions before it (`CONTEXTS`).
Per-user work runs in worker processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.lab.protocol.metrics import Evaluation, evaluate_split
from agent.lab.protocol.movielens import SPLITS, MovieLens, Protocol, leave_one_out, load_movielens
from agent.lab.people import worker_pool
from agent.core.ranker.adapters import PersonalAdapter
from agent.core.ranker.model import Catalog, Scorer
from agent.core.ranker.training import TrainingSettings, fit
from agent.core.sync.parameters import GlobalTrainingSettings, train_global_delta, unflatten
from agent.federation.layout import SharedLayout

Log = Callable[[str], None]
PERSONAL_RANK = 8    # the product's personal adapter rank (Agent.personal_adapter)
GLOBAL_RANK = 16     # the coordinator's default layout (agent.server.app.default_layout)
RESIDUAL_RANK = 32   # ditto: k of each item's residual v_i
LAYOUT_SEED = 1234   # the published projection A_g of this experiment's coordinator
# What the scorer knows of the person's latest likes when a held-out item is ranked (`Setting.recent_rows`):
# "latest": every interaction before that item (for the test item, the validation item too: the person
# made it just before, though no model ever trains on it), as on a device; "training": the training
# items only; "none": no context, the model alone.
CONTEXTS = ("latest", "training", "none")


@dataclass
class Setting:
    data: MovieLens
    protocol: Protocol
    rows: np.ndarray            # the user rows taking part (all 943, or a fixed subset)
    catalog: Catalog
    layout: SharedLayout
    labels: list[dict[int, float]]  # per taking-part user: catalog row -> 1.0 for each training item
    encoder: Any                    # the product's text encoder (trait poles are encoded with it too)
    personal: list[PersonalAdapter] | None = None  # local-only fits, filled by `fit_personal`
    seed: int = 0

    @property
    def size(self) -> int:
        return len(self.rows)

    def recent_rows(self, k: int, split: str, context: str) -> np.ndarray | None:
        """The latest likes the scorer is given for taking-part user `k` at `split`'s held-out item
        (`CONTEXTS`), oldest first."""
        if context == "none":
            return None
        row = int(self.rows[k])
        items = self.protocol.train_items(row)
        if context == "latest" and split == "test":  # the validation item came just before the test item
            items = np.append(items, self.protocol.validation[row])
        return items

    def scores(self, personal: Sequence[PersonalAdapter], shared: np.ndarray, split: str = "validation",
               context: str = "latest") -> np.ndarray:
        """(users, items) scores of every taking-part user under the global adapter `shared`, as the
        product scores: with the person's latest likes before `split`'s held-out item (`CONTEXTS`)."""
        scorer = Scorer(self.catalog, unflatten(self.layout, shared))
        return np.stack([scorer.scores(scorer.steer(adapter, self.recent_rows(k, split, context)))
                         for k, adapter in enumerate(personal)])

    def evaluate(self, personal: Sequence[PersonalAdapter], shared: np.ndarray, context: str = "latest") -> Evaluation:
        """Both splits, each held-out item scored with its own context."""
        return Evaluation(*(evaluate_split(self.scores(personal, shared, split, context), self.protocol, split,
                                           self.rows) for split in SPLITS))


def prepare(users: int | None, seed: int, log: Log) -> Setting:
    """Load MovieLens, split it, and encode its films with the product's encoder."""
    from agent.core import paths
    from agent.core.encoder import Encoder

    data = load_movielens()
    protocol = leave_one_out(data, seed=seed)
    rows = np.arange(protocol.user_count) if users is None else protocol.choose_rows(users, seed)
    log(f"encoding {len(data.items):,} films with the product's encoder")
    encoder = Encoder.load(paths.models_dir())
    X = encoder.encode([item.text for item in data.items])
    catalog = Catalog(np.arange(len(data.items), dtype=np.int64), list(data.refs), X.astype(np.float32))
    layout = SharedLayout.create(catalog.dim, GLOBAL_RANK, data.refs, np.random.default_rng(LAYOUT_SEED),
                                 residual_rank=RESIDUAL_RANK)
    labels = [{int(i): 1.0 for i in protocol.train_items(int(row))} for row in rows]
    return Setting(data, protocol, rows, catalog, layout, labels, encoder, seed=seed)


# -- per-user work in worker processes (forked: they inherit the setting, nothing is pickled but results) --

_SETTING: Setting | None = None


def _fit_one(task: tuple[int, np.ndarray, int, PersonalAdapter | None]) -> PersonalAdapter:
    k, shared, epochs, start = task
    setting = _SETTING
    adapter = start if start is not None else PersonalAdapter.fresh(setting.catalog.dim, PERSONAL_RANK,
                                                                    seed=int(setting.rows[k]))
    scorer = Scorer(setting.catalog, unflatten(setting.layout, shared))
    return fit(adapter, scorer, setting.labels[k], TrainingSettings(epochs=epochs, seed=int(setting.rows[k])))[0]


def _delta_one(task: tuple[int, np.ndarray, PersonalAdapter, int]) -> np.ndarray:
    k, shared, personal, round_number = task
    setting = _SETTING
    return train_global_delta(setting.layout, shared, personal, setting.catalog, setting.labels[k],
                              GlobalTrainingSettings(seed=round_number * 100_003 + int(setting.rows[k])))


def workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _map(setting: Setting, function, tasks: list[Any]) -> list[Any]:
    global _SETTING
    _SETTING = setting
    if workers() == 1 or len(tasks) < 8:
        return [function(task) for task in tasks]
    with worker_pool(workers()) as pool:
        return list(pool.map(function, tasks, chunksize=max(1, len(tasks) // (8 * workers()))))


def fit_personal(setting: Setting, shared: np.ndarray, epochs: int = TrainingSettings.epochs,
                 start: Sequence[PersonalAdapter] | None = None) -> list[PersonalAdapter]:
    """Every user's personal adapter trained on their own training items under global `shared`
    (fresh, or continued from `start`)."""
    return _map(setting, _fit_one, [(k, shared, epochs, None if start is None else start[k])
                                    for k in range(setting.size)])


def local_deltas(setting: Setting, shared: np.ndarray, personal: Sequence[PersonalAdapter],
                 round_number: int) -> list[np.ndarray]:
    """Every user's Delta phi_g from `shared`, trained as the sync client does (personal part fixed)."""
    return _map(setting, _delta_one, [(k, shared, personal[k], round_number) for k in range(setting.size)])
