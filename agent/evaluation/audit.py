"""`ownrec audit`: can what leaves a device reveal who the person is?

A standard attribute-inference attack (a linear classifier: ridge-regularised least squares on
standardised features, the penalty chosen by 5-fold cross-validation on the attacker's training half)
is trained on half of the users and scored on the other half (AUC; 0.5 is chance). Attack targets: the
real MovieLens attributes (female; age at or above the median) and each of the person's inferred trait
values (at or above the trait's median). Views, in the order the data travels:

- raw delta: Delta phi_g as local training produces it (it never leaves the device);
- upload: the same clipped to C and noised with the per-client share of the distributed noise, as
  `quantize.encode_update` would before masking. Only the secure-aggregation masks hide this vector:
  it is what an upload would reveal if masking failed, and shows how little a single client's share of
  the noise protects on its own;
- server: what the coordinator learns: the cohort sums. Cohorts of `cohort_size` run through the real
  coordinator and client stages (`agent.server.simulation`); each member's features are their cohort's
  unmasked sum. Cohorts are formed within each half, so no test user's data is in the training sums.
  The 20 members of a cohort share one feature vector, so a test half of 472 users is only 23 distinct
  points, and the highest of 12 targets' AUCs is far from 0.5 by chance alone: each server view also
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

from agent.core.sync.clipping import DistributedNoise, clip_to_norm
from agent.core.sync.neighbourhood import plan_neighbourhood
from agent.evaluation.federated import CLIP_NORM, EvalSettings, noise_for_epsilon
from agent.evaluation.setting import Log, Setting, fit_personal, local_deltas, prepare

PENALTIES = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)  # times the mean squared feature norm
BOOTSTRAP = 1000
PERMUTATIONS = 200  # shuffles for the chance level of the highest AUC over the targets


@dataclass(frozen=True)
class AuditSettings:
    users: int | None = None
    epsilons: tuple[float, ...] = (1.0, 4.0, 8.0)
    rounds: int = EvalSettings.rounds   # the noise of `ownrec eval`'s DP rows
    cohort_size: int = 20               # the coordinator's default minimum cohort: the worst case it allows
    permutations: int = PERMUTATIONS
    seed: int = 0


QUICK_AUDIT = AuditSettings(users=300, epsilons=(4.0,), permutations=50)


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


def attack(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
           seed: int) -> dict[str, float]:
    """Fit the attacker on (train_x, train_y), return its AUC on the test half with a bootstrap interval."""
    return scored(fit_attacker(train_x, train_y, test_x, seed)[:, 0], test_y, seed)


def scored(scores: np.ndarray, test_y: np.ndarray, seed: int) -> dict[str, float]:
    """The attacker's AUC on the test half, with a bootstrap interval over test users."""
    value = auc(scores, test_y)
    rng = np.random.default_rng(seed + 1)
    samples = []
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, len(scores), len(scores))
        samples.append(auc(scores[pick], test_y[pick]))
    low, high = np.nanpercentile(samples, [2.5, 97.5])
    return {"auc": round(value, 4), "low": round(float(low), 4), "high": round(float(high), 4)}


def chance_of_highest(train_x: np.ndarray, train_labels: np.ndarray, test_x: np.ndarray, test_labels: np.ndarray,
                      observed: float, permutations: int, seed: int) -> dict[str, float]:
    """How high the highest AUC over all targets goes by chance on these features: the same attack on labels
    shuffled across users (one shuffle moves every target together, keeping how the targets correlate), so
    the features can carry nothing about them. Returns the null's median and 95th percentile, and the share
    of shuffles whose highest AUC reaches `observed` (a permutation p-value)."""
    rng = np.random.default_rng(seed + 7)
    labels = np.concatenate([train_labels, test_labels])  # (users, targets)
    n_train, targets_count = len(train_labels), labels.shape[1]
    shuffled = [labels[rng.permutation(len(labels))] for _ in range(permutations)]
    stacked = np.concatenate(shuffled, axis=1)
    scores = fit_attacker(train_x, stacked[:n_train], test_x, seed)
    highest = _auc_columns(scores, stacked[n_train:]).reshape(permutations, targets_count).max(axis=1)
    return {"permutations": permutations, "median": round(float(np.median(highest)), 4),
            "p95": round(float(np.percentile(highest, 95)), 4),
            "p_value": round(float((1 + np.sum(highest >= observed)) / (1 + permutations)), 4)}


def trait_values(setting: Setting) -> tuple[list[str], np.ndarray]:
    """(trait names, (users, traits) values) of every user's personal adapter, as `ownrec traits` reads them."""
    from agent.core.ranker.model import Scorer
    from agent.core.traits.axes import TraitSpace
    from agent.core.traits.catalog import load_traits

    definitions, _ = load_traits()
    high = np.stack([setting.encoder.encode(list(t.high)).mean(axis=0) for t in definitions])
    low = np.stack([setting.encoder.encode(list(t.low)).mean(axis=0) for t in definitions])
    scorer = Scorer(setting.catalog, setting.layout.unflatten(setting.layout.zeros()))
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
    from agent.server.simulation import InProcessFederation

    federation = InProcessFederation(folder, setting.layout, cohort_size, clip_norm=CLIP_NORM,
                                     noise_multiplier=noise_multiplier, seed=seed)
    placed, sums = [], []
    try:
        for half in halves:
            for start in range(0, len(half) - cohort_size + 1, cohort_size):
                members = half[start:start + cohort_size]
                base = federation.latest()
                result = federation.run_round([uploads[k] for k in members], base)
                total = (result.release.vector - base.vector) * cohort_size  # server learning rate 1
                placed.extend(members.tolist())
                sums.extend([total] * len(members))
    finally:
        federation.close()
    return np.array(placed), np.array(sums)


def run_audit(settings: AuditSettings = AuditSettings(), log: Log = print, setting: Setting | None = None
              ) -> dict[str, Any]:
    from agent.evaluation.report import measured_where

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
    order = np.random.default_rng(settings.seed).permutation(setting.size)
    train, test = np.sort(order[: setting.size // 2]), np.sort(order[setting.size // 2:])

    def halves_of(features: np.ndarray, placed: np.ndarray | None) -> tuple[np.ndarray, ...]:
        if placed is None:
            return train, test, features[train], features[test]
        position = {int(u): k for k, u in enumerate(placed)}
        tr = np.array([u for u in train if u in position])
        te = np.array([u for u in test if u in position])
        return tr, te, features[[position[u] for u in tr]], features[[position[u] for u in te]]

    matrix = np.stack(list(labels.values()), axis=1)  # (users, targets)

    def attack_all(features: np.ndarray, placed: np.ndarray | None = None) -> dict[str, dict[str, float]]:
        tr, te, x_tr, x_te = halves_of(features, placed)
        scores = fit_attacker(x_tr, matrix[tr], x_te, settings.seed)  # one fit for every target
        return {name: scored(scores[:, j], matrix[te, j], settings.seed) for j, name in enumerate(labels)}

    def chance(features: np.ndarray, placed: np.ndarray, results: dict[str, dict[str, float]]) -> dict[str, float]:
        tr, te, x_tr, x_te = halves_of(features, placed)
        observed = max(r["auc"] for r in results.values())
        return chance_of_highest(x_tr, matrix[tr], x_te, matrix[te], observed, settings.permutations, settings.seed)

    views: list[dict[str, Any]] = []
    log("attacking the raw deltas")
    views.append({"view": "raw delta", "epsilon": None, "results": attack_all(raw)})
    upload_plan = plan_neighbourhood(setting.size)  # the eval's cohort: everyone, one round
    cohort_plan = plan_neighbourhood(settings.cohort_size)
    points = [(None, 0.0)] + [(eps, noise_for_epsilon(eps, settings.rounds)) for eps in settings.epsilons]
    halves = [train, test]
    with tempfile.TemporaryDirectory(prefix="ownrec-audit-") as folder:
        for k, (eps, z) in enumerate(points):
            noise_rng = np.random.default_rng(settings.seed + 17 + k)
            noise = DistributedNoise(CLIP_NORM, z, upload_plan.min_survivors)
            uploads = [noise.add_to(clip_to_norm(d, CLIP_NORM)[0], noise_rng) for d in raw]
            log(f"attacking the uploads and the cohort sums (noise multiplier {z:.3f})")
            views.append({"view": "upload (clipped + noised)", "epsilon": eps, "noise_multiplier": z,
                          "noise_std": noise.std_per_client, "results": attack_all(np.array(uploads))})
            clipped = [clip_to_norm(d, CLIP_NORM)[0] for d in raw]  # the simulated clients add their own noise
            placed, sums = cohort_sums(setting, clipped, halves, z, settings.cohort_size,
                                       Path(folder) / f"coordinator-{k}", seed=settings.seed + 1_000 * (k + 1))
            results = attack_all(sums, placed)
            views.append({"view": f"server (sums of {settings.cohort_size})", "epsilon": eps, "noise_multiplier": z,
                          "noise_std": DistributedNoise(CLIP_NORM, z, cohort_plan.min_survivors).std_per_client,
                          "users_placed": int(len(placed)), "results": results,
                          "chance_of_highest": chance(sums, placed, results)})
    return {"settings": {"users": setting.size, "epsilons": list(settings.epsilons), "rounds": settings.rounds,
                         "cohort_size": settings.cohort_size, "clip_norm": CLIP_NORM, "seed": settings.seed,
                         "permutations": settings.permutations,
                         "train_users": int(len(train)), "test_users": int(len(test))},
            "targets": list(labels), "traits": trait_names, "views": views,
            "seconds": round(time.perf_counter() - started, 1), "measured": measured}
