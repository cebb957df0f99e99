"""What `ownrec eval` and `ownrec audit` share: the data, the split, the catalog, the personal adapters.

Every simulated person is a MovieLens user whose training interactions are their feedback (implicit
positives, as in the PFedRec protocol: label 1 for every rated film). Their personal adapter is trained
the product's way (`ranker.training.fit`, the product's settings, a fresh adapter seeded per user) with
the global adapter at its starting point: that is "ownrec local-only", and the personal part that the
federated rows hold fixed while they learn the global part. Scores are the product's: steered by the
person's latest likes (`Scorer.steer`), which at a held-out item are the interactions before it (`CONTEXTS`).
Per-user work runs in worker processes.

The device's adoption check (`agent.core.sync.adoption`), when a federated row runs it, sees a person as the
device would when a release arrives: their training interactions as likes (`Setting.interactions`); the
validation and test items come later in time, so they are neither held out, nor trained on, nor "judged"
(they stay among the unrated items, like every item the person has not rated yet).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from agent.lab.protocol.metrics import Evaluation, evaluate_split, held_out_ranks, ndcg
from agent.lab.protocol.movielens import SPLITS, MovieLens, Protocol, leave_one_out, load_movielens
from agent.lab.people import worker_pool
from agent.core.ranker.adapters import DEFAULT_SIGNAL_WEIGHTS, PersonalAdapter
from agent.core.ranker.co_liked import build_co_liked
from agent.core.ranker.model import Catalog, Scorer, signal_features
from agent.core.ranker.prior import PriorSettings, PublicInteractions, build_prior
from agent.core.ranker.training import TrainingSettings, fit
from agent.core.store import Interaction
from agent.core.sync.adoption import Candidate, Current, Decision, InUse, Person, decide_on, upload_labels
from agent.core.sync.parameters import GlobalTrainingSettings, flatten, train_global_delta, unflatten
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
# The global part a person is scored with: one shared vector for everyone, or one per taking-part person
# (each person's version in use, under the adoption check). People with the same version share one array.
Shared = np.ndarray | Sequence[np.ndarray]


def shared_of(shared: Shared, k: int) -> np.ndarray:
    return shared if isinstance(shared, np.ndarray) else shared[k]


@dataclass(frozen=True)
class Foundation:
    """What a person is scored with besides their own model and the federation's refinement, cross-fitted
    (`cross_fit`): per fold of people, the catalog with the public signals counted from the other folds'
    training interactions, and release 0 learned from them (zeros: no prior). A person in fold f is
    scored with `catalogs[f]` and `priors[f]` + the federation's vector."""

    name: str
    fold: np.ndarray               # (users in the protocol,) the fold of every user row
    catalogs: tuple[Catalog, ...]  # per fold
    priors: tuple[np.ndarray, ...]  # per fold, shared vectors in the setting's layout

    def of(self, user_row: int) -> tuple[Catalog, np.ndarray]:
        f = int(self.fold[user_row])
        return self.catalogs[f], self.priors[f]


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
    foundation: Foundation | None = None  # None: the text alone (no public signals, no prior)

    @property
    def size(self) -> int:
        return len(self.rows)

    def base(self, k: int) -> tuple[Catalog, np.ndarray]:
        """The catalog and the starting shared vector taking-part user `k` is scored and trained with."""
        if self.foundation is None:
            return self.catalog, self.layout.zeros()
        return self.foundation.of(int(self.rows[k]))

    def scorer(self, k: int, shared: np.ndarray) -> Scorer:
        catalog, start = self.base(k)
        return Scorer(catalog, unflatten(self.layout, start + shared))

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

    def interactions(self, k: int) -> list[Interaction]:
        """Taking-part user `k`'s feedback as their device holds it during the rounds: a like of each training
        item at its time, oldest first. Never the validation or test item (they come later)."""
        row = int(self.rows[k])
        start, end = np.searchsorted(self.protocol.train_user, [row, row + 1])
        return [Interaction(j, int(item), "like", None, float(at), "movielens") for j, (item, at) in
                enumerate(zip(self.protocol.train_item[start:end], self.protocol.train_time[start:end]))]

    def scores(self, personal: Sequence[PersonalAdapter], shared: Shared, split: str = "validation",
               context: str = "latest") -> np.ndarray:
        """(users, items) scores of every taking-part user under the global adapter `shared` (`Shared`), as
        the product scores: with the person's latest likes before `split`'s held-out item (`CONTEXTS`)."""
        scorers: dict[tuple[int, int], Scorer] = {}
        out = []
        for k, adapter in enumerate(personal):
            group = -1 if self.foundation is None else int(self.foundation.fold[int(self.rows[k])])
            vector = shared_of(shared, k)
            key = (group, id(vector))  # one scorer per fold and version in use
            if key not in scorers:
                scorers[key] = self.scorer(k, vector)
            scorer = scorers[key]
            out.append(scorer.scores(scorer.steer(adapter, self.recent_rows(k, split, context))))
        return np.stack(out)

    def evaluate(self, personal: Sequence[PersonalAdapter], shared: Shared, context: str = "latest") -> Evaluation:
        """Both splits, each held-out item scored with its own context."""
        return Evaluation(*(evaluate_split(self.scores(personal, shared, split, context), self.protocol, split,
                                           self.rows) for split in SPLITS))

    def test_ndcg(self, personal: Sequence[PersonalAdapter], shared: Shared) -> tuple[np.ndarray, np.ndarray]:
        """Per taking-part user, the test item's NDCG@10, sampled and full: who a row helps and who it hurts."""
        sampled, full = held_out_ranks(self.scores(personal, shared, "test"), self.protocol, "test", self.rows)
        return ndcg(sampled), ndcg(full)


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
    return fit(adapter, setting.scorer(k, shared), setting.labels[k],
               TrainingSettings(epochs=epochs, seed=int(setting.rows[k])))[0]


def _delta_one(task: tuple[int, np.ndarray, PersonalAdapter, int, int, dict[int, float] | None]) -> np.ndarray:
    k, shared, personal, round_number, epochs, labels = task
    setting = _SETTING
    catalog, start = setting.base(k)
    return train_global_delta(setting.layout, start + shared, personal, catalog,
                              setting.labels[k] if labels is None else labels,
                              GlobalTrainingSettings(epochs=epochs, seed=round_number * 100_003 + int(setting.rows[k])))


def _decide_one(task: tuple[int, np.ndarray, InUse, Candidate, PersonalAdapter]) -> Decision:
    k, in_use, chain, candidate, personal = task
    setting = _SETTING
    catalog, start = setting.base(k)
    interactions = setting.interactions(k)
    # What the device judges is its release 0 plus the federation's vector; every release here is in the
    # setting's layout, so the check's rule for a release in another layout never applies (prior_layout None).
    current = Current(chain, unflatten(setting.layout, start + in_use), start + in_use, None,
                      "release 0, the public prior", None)
    person = Person(catalog, personal, interactions, {event.item_id for event in interactions})
    return decide_on(person, current, replace(candidate, vector=start + candidate.vector))


def cross_fit(setting: Setting, folds: int, prior: bool, log: Log,
              prior_settings: PriorSettings = PriorSettings()) -> Foundation:
    """The public foundation, cross-fitted over people: every user row of the protocol (all of them, not
    only those taking part) falls in one of `folds` folds; the public signals (number of ratings, mean
    rating) and, with `prior`, release 0 and what people went on to like that score a person in fold f come from the training interactions
    of the people in the other folds only. No one's held-out items, and nothing of their own, enter what
    they are scored with. Release years come from the item file, which is public catalog data."""
    protocol, n = setting.protocol, len(setting.catalog)
    fold = np.random.default_rng([setting.seed, 77]).permutation(protocol.user_count) % folds
    years = np.array([np.nan if item.year is None else
                      datetime(item.year, 1, 1, tzinfo=timezone.utc).timestamp() for item in setting.data.items])
    catalogs, priors = [], []
    for f in range(folds):
        public = fold[protocol.train_user] != f
        items, stars = protocol.train_item[public], protocol.train_rating[public]
        count = np.bincount(items, minlength=n).astype(np.float64)
        mean = np.where(count > 0, np.bincount(items, stars, minlength=n) / np.maximum(count, 1), np.nan)
        # What people went on to like, from the same people's training interactions in time order (the
        # protocol keeps them by user, then time), as the device builds it with release 0.
        co_liked = build_co_liked(protocol.train_user[public], items, n) if prior else None
        catalog = Catalog(setting.catalog.ids, setting.catalog.refs, setting.catalog.X,
                          signal_features(count, mean, years), co_liked)
        catalogs.append(catalog)
        if prior:
            started = time.perf_counter()
            _, person = np.unique(protocol.train_user[public], return_inverse=True)
            adapter = build_prior(catalog, PublicInteractions(person.astype(np.int64), items),
                                  setting.layout.projection, setting.layout.residual_basis, prior_settings,
                                  signal_offset=catalog.signals @ np.asarray(DEFAULT_SIGNAL_WEIGHTS, np.float32))
            priors.append(flatten(setting.layout, adapter))
            log(f"  release 0 for fold {f + 1} of {folds}: {int(public.sum()):,} training interactions of the other "
                f"folds' people, {time.perf_counter() - started:.0f} s")
        else:
            priors.append(setting.layout.zeros())
    name = "public signals and release 0" if prior else "public signals"
    return Foundation(name, fold, tuple(catalogs), tuple(priors))


def workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _map(setting: Setting, function, tasks: list[Any]) -> list[Any]:
    global _SETTING
    _SETTING = setting
    if workers() == 1 or len(tasks) < 8:
        return [function(task) for task in tasks]
    with worker_pool(workers()) as pool:
        return list(pool.map(function, tasks, chunksize=max(1, len(tasks) // (8 * workers()))))


def fit_personal(setting: Setting, shared: Shared, epochs: int = TrainingSettings.epochs,
                 start: Sequence[PersonalAdapter] | None = None,
                 people: Sequence[int] | None = None) -> list[PersonalAdapter]:
    """Every user's (or only `people`'s, in that order) personal adapter trained on their own training items
    under global `shared` (fresh, or continued from `start`; both given per listed person, or one shared vector)."""
    chosen = range(setting.size) if people is None else people
    return _map(setting, _fit_one, [(k, shared_of(shared, j), epochs, None if start is None else start[j])
                                    for j, k in enumerate(chosen)])


def local_deltas(setting: Setting, shared: np.ndarray, personal: Sequence[PersonalAdapter],
                 round_number: int, epochs: int = GlobalTrainingSettings.epochs,
                 labels: Sequence[dict[int, float]] | None = None) -> list[np.ndarray]:
    """Every user's Delta phi_g from `shared`, trained as the sync client does (personal part fixed; `epochs`
    of local work, the client's default unless an experiment asks for more) on their training items, or on
    `labels` (per user: what they upload under the adoption check, `upload_labels_of`)."""
    return _map(setting, _delta_one, [(k, shared, personal[k], round_number, epochs, None if labels is None
                                       else labels[k]) for k in range(setting.size)])


def upload_labels_of(setting: Setting) -> list[dict[int, float]]:
    """Per user, what a round trains their delta on under the adoption check: the product's rule
    (`adoption.upload_labels`), all their training items but the latest likes the check holds out."""
    return [upload_labels(setting.interactions(k)) for k in range(setting.size)]


def decide_adoption(setting: Setting, chains: Sequence[InUse], in_use: Shared, candidate: Candidate,
                    personal: Sequence[PersonalAdapter]) -> list[Decision]:
    """Every user's device deciding on `candidate` (its vector: the federation's, in the setting's layout)
    against their version in use (`chains`, and `in_use` its vector without the foundation), by the product's
    check (`adoption.decide_on`) on their own held-out latest likes."""
    return _map(setting, _decide_one, [(k, shared_of(in_use, k), chains[k], candidate, personal[k])
                                       for k in range(setting.size)])
