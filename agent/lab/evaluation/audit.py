"""`ownrec audit`: can what leaves a device reveal who the person is?

A standard attribute-inference attack (a linear classifier: ridge-regularised least squares on
standardised features, the penalty chosen by 5-fold cross-validation on the attacker's training half)
is trained on half of the users and scored on the other half, then the halves swap (2-fold
cross-fitting); this is repeated over `repeats` random splits, and the AUC is the mean over all the folds
(0.5 is chance). Why repeat: the server's view has one point per cohort, so a single split's AUC swings
widely by chance, and the highest of 12 targets' AUCs with it; the mean over splits estimates the same
attack's expected AUC with less of that swing, and the chance level reported beside it shrinks too.
Attack targets: the real MovieLens attributes (female; age at or above the median) and each of the
person's inferred trait values (at or above the trait's median). Views, in the order the data travels:

- raw delta: Delta phi_g as local training produces it (it never leaves the device);
- upload: the same clipped to C and noised with the per-client share of the distributed noise, as
  `quantize.encode_update` would before masking. Only the secure-aggregation masks hide this vector:
  it is what an upload would reveal if masking failed, and shows how little a single client's share of
  the noise protects on its own;
- server: what the coordinator learns: the cohort sums. Cohorts of `cohort_size` run through the real
  coordinator and client stages (`agent.lab.evaluation.simulation`); each member's features are their cohort's
  unmasked sum. Cohorts are formed within each half, so no test user's data is in the training sums.
  The 20 members of a cohort share one feature vector, so a half of 472 users is only 23 distinct
  points, and the highest of 12 targets' AUCs is above 0.5 by chance alone: each server view also
  reports that chance level (the same attack on labels shuffled across users, `chance_of_highest`).

The noise is set as in `ownrec eval`: the multiplier that gives each user epsilon 1, 4 or 8 (delta 1e-4)
over `rounds` rounds; no noise is the "no DP" point.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.federation.clipping import DistributedNoise, clip_to_norm
from agent.federation.neighbourhood import plan_neighbourhood
from agent.lab.evaluation.federated import CLIP_NORM, EvalSettings, noise_for_epsilon
from agent.lab.evaluation.setting import Log, Setting, fit_personal, local_deltas, prepare

PENALTIES = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # times the mean squared feature norm
BOOTSTRAP = 1000
PERMUTATIONS = 200  # shuffles for the chance level of the highest AUC over the targets
REPEATS = 5  # random splits into halves, each cross-fitted; the AUC is the mean over all 2 x REPEATS folds


@dataclass(frozen=True)
class AuditSettings:
    users: int | None = None
    epsilons: tuple[float, ...] = (1.0, 4.0, 8.0)
    rounds: int = EvalSettings.rounds   # the noise of `ownrec eval`'s DP rows
    cohort_size: int = 20               # the coordinator's default minimum cohort: the worst case it allows
    permutations: int = PERMUTATIONS
    repeats: int = REPEATS
    seed: int = 0


QUICK_AUDIT = AuditSettings(users=300, epsilons=(4.0,), permutations=50, repeats=1)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(a positive outscores a negative), ties counted half."""
    labels = np.asarray(labels, bool)
    scores = np.asarray(scores, np.float64)
    positives, negatives = scores[labels], np.sort(scores[~labels])
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    below = np.searchsorted(negatives, positives, side="left")
    tied = np.searchsorted(negatives, positives, side="right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (len(positives) * len(negatives)))


def _ridge_dual(K: np.ndarray, y: np.ndarray, penalty: float) -> np.ndarray:
    return np.linalg.solve(K + penalty * np.eye(len(K)), y)


def _auc_columns(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([auc(scores[:, j], labels[:, j]) for j in range(labels.shape[1])])


def fit_attacker(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, seed: int) -> np.ndarray:
    """Scores of the test users for each target column of `train_y` (users, targets): ridge on standardised
    features, each target's penalty chosen by 5-fold cross-validated AUC on the training half. All targets
    share one solve per penalty and fold (the permutation baseline fits hundreds at once)."""
    train_y = np.asarray(train_y, bool).reshape(len(train_x), -1)
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    A, B = (train_x - mean) / std, (test_x - mean) / std
    target = np.where(train_y, 1.0, -1.0)
    target = target - target.mean(axis=0)
    K = A @ A.T
    scale = float(np.trace(K)) / len(K)
    folds = np.random.default_rng(seed).permutation(len(A)) % 5
    validated = np.zeros((len(PENALTIES), train_y.shape[1]))
    for p, penalty in enumerate(PENALTIES):
        found = []
        for fold in range(5):
            inside, outside = folds != fold, folds == fold
            alpha = _ridge_dual(K[np.ix_(inside, inside)], target[inside], penalty * scale)
            found.append(_auc_columns(K[np.ix_(outside, inside)] @ alpha, train_y[outside]))
        with np.errstate(all="ignore"):
            validated[p] = np.nan_to_num(np.nanmean(found, axis=0), nan=-1.0)
    best = validated.argmax(axis=0)  # the first penalty among equals, in PENALTIES order
    scores = np.zeros((len(B), train_y.shape[1]))
    for p in np.unique(best):
        columns = best == p
        scores[:, columns] = B @ (A.T @ _ridge_dual(K, target[:, columns], PENALTIES[p] * scale))
    return scores


@dataclass(frozen=True)
class Split:
    """One split of the users into two halves for cross-fitting: each half's features and which users
    (rows of the label matrix) they belong to."""

    features: tuple[np.ndarray, np.ndarray]
    users: tuple[np.ndarray, np.ndarray]


def cross_fit(split: Split, labels: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The attacker trained on each half and scored on the other: [(scores, labels) of the second half,
    (scores, labels) of the first], each (users, targets). `labels` is (all users, targets)."""
    labels = np.asarray(labels, bool).reshape(len(labels), -1)
    (x_a, x_b), (a, b) = split.features, split.users
    return [(fit_attacker(x_a, labels[a], x_b, seed), labels[b]), (fit_attacker(x_b, labels[b], x_a, seed), labels[a])]


def attack(splits: list[Split], labels: np.ndarray, seed: int) -> list[dict[str, float]]:
    """Each target's AUC: the mean over every split's two folds, with a bootstrap interval."""
    folds = [fold for split in splits for fold in cross_fit(split, labels, seed)]  # one fit per fold for all targets
    return [scored([(scores[:, j], y[:, j]) for scores, y in folds], seed) for j in range(folds[0][1].shape[1])]


def scored(folds: list[tuple[np.ndarray, np.ndarray]], seed: int) -> dict[str, float]:
    """The mean over folds of the attacker's AUC on each fold's test half, with a 95% bootstrap interval
    (test users resampled within each fold)."""
    value = float(np.mean([auc(scores, labels) for scores, labels in folds]))
    rng = np.random.default_rng(seed + 1)
    samples = []
    for _ in range(BOOTSTRAP):
        found = []
        for scores, labels in folds:
            pick = rng.integers(0, len(scores), len(scores))
            found.append(auc(scores[pick], labels[pick]))
        samples.append(np.mean(found))
    low, high = np.nanpercentile(samples, [2.5, 97.5])
    return {"auc": round(value, 4), "low": round(float(low), 4), "high": round(float(high), 4)}


def chance_of_highest(splits: list[Split], labels: np.ndarray, observed: float, permutations: int,
                      seed: int) -> dict[str, float]:
    """How high the highest AUC over all targets goes by chance on these features: the same attack, over the
    same splits, on labels shuffled across users (one shuffle moves every target together, keeping how the
    targets correlate), so the features can carry nothing about them. Returns the null's median and 95th
    percentile, and the share of shuffles whose highest AUC reaches `observed` (a permutation p-value)."""
    rng = np.random.default_rng(seed + 7)
    labels = np.asarray(labels, bool).reshape(len(labels), -1)
    stacked = np.concatenate([labels[rng.permutation(len(labels))] for _ in range(permutations)], axis=1)
    folds = [fold for split in splits for fold in cross_fit(split, stacked, seed)]
    mean = np.mean([_auc_columns(scores, y) for scores, y in folds], axis=0)
    highest = mean.reshape(permutations, labels.shape[1]).max(axis=1)
    return {"permutations": permutations, "median": round(float(np.median(highest)), 4),
            "p95": round(float(np.percentile(highest, 95)), 4),
            "p_value": round(float((1 + np.sum(highest >= observed)) / (1 + permutations)), 4)}


def trait_values(setting: Setting) -> tuple[list[str], np.ndarray]:
    """(trait names, (users, traits) values) of every user's personal adapter, as `ownrec traits` reads them."""
    from agent.core.ranker.model import Scorer
    from agent.core.sync.parameters import unflatten
    from agent.core.traits.axes import TraitSpace
    from agent.core.traits.catalog import load_traits

    definitions, _ = load_traits(None)  # the built-in traits: the audit's targets do not depend on who runs it
    high = np.stack([setting.encoder.encode(list(t.high)).mean(axis=0) for t in definitions])
    low = np.stack([setting.encoder.encode(list(t.low)).mean(axis=0) for t in definitions])
    scorer = Scorer(setting.catalog, unflatten(setting.layout, setting.layout.zeros()))
    space = TraitSpace.build(scorer, setting.personal[0], high, low)  # calibration is the catalog's, not the user's
    dim = setting.catalog.dim
    values = []
    for adapter in setting.personal:
        own = replace(space, to_preference=np.eye(dim) + adapter.A.T.astype(np.float64) @ adapter.B.T)
        values.append(own.values(adapter.p))
    return [t.name for t in definitions], np.array(values)


def targets(setting: Setting) -> tuple[dict[str, np.ndarray], list[str], np.ndarray]:
    users = [setting.data.users[int(row)] for row in setting.rows]
    if [u.id for u in users] != [int(setting.protocol.user_ids[row]) for row in setting.rows]:
        raise RuntimeError("the dataset's users and the protocol's rows disagree")
    ages = np.array([u.age for u in users])
    labels = {"gender (female)": np.array([u.gender == "F" for u in users]),
              f"age >= {int(np.median(ages))}": ages >= np.median(ages)}
    names, values = trait_values(setting)
    for k, name in enumerate(names):
        labels[f"trait: {name}"] = values[:, k] >= np.median(values[:, k])
    return labels, names, values


def cohort_sums(setting: Setting, uploads: list[np.ndarray], halves: list[np.ndarray], noise_multiplier: float,
                cohort_size: int, folder: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Run each half's users in cohorts through the real coordinator; return (user positions, their
    cohort's sum) for every user placed in a full cohort. `seed` draws the simulated clients' noise: each
    view needs its own (one draw scaled by each z would make the epsilon rows one experiment, not three)."""
    from agent.lab.evaluation.simulation import InProcessFederation

    federation = InProcessFederation(folder, setting.layout, cohort_size, clip_norm=CLIP_NORM,
                                     noise_multiplier=noise_multiplier, seed=seed)
    placed, sums = [], []
    try:
        for half in halves:
            for start in range(0, len(half) - cohort_size + 1, cohort_size):
                members = half[start:start + cohort_size]
                base = federation.latest()
                result = federation.run_round([uploads[k] for k in members], base, people=members.tolist())
                total = (result.release.vector - base.vector) * cohort_size  # server learning rate 1
                placed.extend(members.tolist())
                sums.extend([total] * len(members))
    finally:
        federation.close()
    return np.array(placed), np.array(sums)


def run_audit(settings: AuditSettings = AuditSettings(), log: Log = print, setting: Setting | None = None
              ) -> dict[str, Any]:
    from agent.lab.reports import measured_where

    measured = measured_where()
    started = time.perf_counter()
    if setting is None:
        setting = prepare(settings.users, settings.seed, log)
    if setting.personal is None:
        log(f"training {setting.size} personal adapters on-device")
        setting.personal = fit_personal(setting, setting.layout.zeros())
    log("first-round local deltas")
    raw = np.array(local_deltas(setting, setting.layout.zeros(), setting.personal, 1))
    labels, trait_names, _ = targets(setting)
    matrix = np.stack(list(labels.values()), axis=1)  # (users, targets)
    partitions = []  # each repeat's two halves of the users (sorted user positions)
    for repeat in range(settings.repeats):
        order = np.random.default_rng(settings.seed + repeat).permutation(setting.size)
        partitions.append((np.sort(order[: setting.size // 2]), np.sort(order[setting.size // 2:])))

    def user_split(features: np.ndarray, halves: tuple[np.ndarray, np.ndarray]) -> Split:
        return Split((features[halves[0]], features[halves[1]]), halves)

    def results_of(splits: list[Split]) -> dict[str, dict[str, float]]:
        return dict(zip(labels, attack(splits, matrix, settings.seed)))

    views: list[dict[str, Any]] = []
    log(f"attacking the raw deltas ({settings.repeats} splits into halves, each fitted both ways)")
    views.append({"view": "raw delta", "epsilon": None,
                  "results": results_of([user_split(raw, halves) for halves in partitions])})
    upload_plan = plan_neighbourhood(setting.size)  # the eval's cohort: everyone, one round
    cohort_plan = plan_neighbourhood(settings.cohort_size)
    points = [(None, 0.0)] + [(eps, noise_for_epsilon(eps, settings.rounds)) for eps in settings.epsilons]
    clipped = [clip_to_norm(d, CLIP_NORM)[0] for d in raw]  # the simulated clients add their own noise
    with tempfile.TemporaryDirectory(prefix="ownrec-audit-") as folder:
        for k, (eps, z) in enumerate(points):
            noise_rng = np.random.default_rng(settings.seed + 17 + k)
            noise = DistributedNoise(CLIP_NORM, z, upload_plan.min_survivors)
            uploads = np.array([noise.add_to(d, noise_rng) for d in clipped])
            log(f"attacking the uploads and the cohort sums (noise multiplier {z:.3f})")
            views.append({"view": "upload (clipped + noised)", "epsilon": eps, "noise_multiplier": z,
                          "noise_std": noise.std_per_client,
                          "results": results_of([user_split(uploads, halves) for halves in partitions])})
            splits = []
            for repeat, halves in enumerate(partitions):  # new cohorts, and new noise, for every split
                placed, sums = cohort_sums(setting, clipped, list(halves), z, settings.cohort_size,
                                           Path(folder) / f"coordinator-{k}-{repeat}",
                                           seed=settings.seed + 1_000 * (k + 1) + repeat)
                row = {int(u): r for r, u in enumerate(placed)}
                kept = tuple(np.array([u for u in half if int(u) in row]) for half in halves)
                splits.append(Split(tuple(sums[[row[int(u)] for u in half]] for half in kept), kept))
            results = results_of(splits)
            observed = max(r["auc"] for r in results.values())
            views.append({"view": f"server (sums of {settings.cohort_size})", "epsilon": eps, "noise_multiplier": z,
                          "noise_std": DistributedNoise(CLIP_NORM, z, cohort_plan.min_survivors).std_per_client,
                          "users_placed": sum(len(half) for half in splits[0].users), "results": results,
                          "chance_of_highest": chance_of_highest(splits, matrix, observed, settings.permutations,
                                                                 settings.seed)})
    return {"settings": {"users": setting.size, "epsilons": list(settings.epsilons), "rounds": settings.rounds,
                         "cohort_size": settings.cohort_size, "clip_norm": CLIP_NORM, "seed": settings.seed,
                         "permutations": settings.permutations,
                         "halves": [int(len(h)) for h in partitions[0]], "repeats": settings.repeats},
            "targets": list(labels), "traits": trait_names, "views": views,
            "seconds": round(time.perf_counter() - started, 1), "measured": measured}
