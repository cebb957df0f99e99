"""`ownrec eval` and `ownrec audit` (issue 6): the quick runs, through the CLI, with real data, the real
encoder, the real client stages and the real coordinator; and the attack's own arithmetic."""

import gc
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.lab.people import worker_pool
from agent.core.ranker.co_liked import CO_LIKED_ITEMS, CO_LIKED_WEIGHT, NEIGHBOURS, WINDOW
from agent.core.ranker.model import RECENT_DECAY, RECENT_ITEMS, RECENT_WEIGHT
from agent.federation.accounting import privacy_spent
from agent.lab.evaluation.audit import Split, attack, auc, chance_of_highest, fit_attacker
from agent.lab.evaluation.federated import (ITEM_RATE_WITH_NOISE, ITEM_RATE_WITHOUT_NOISE, LARGER_FEDERATION_ITEM_RATE,
                                            LOCAL_EPOCHS_WITH_NOISE, LOCAL_EPOCHS_WITHOUT_NOISE,
                                            NO_DP, NO_DP_AS_DP_ROWS, SYNC_OFF, federated_name, larger_federation_name,
                                            noise_for_epsilon)

DP4 = federated_name("prior", 4.0)

ROW_KEYS = {"name", "hr10_sampled", "ndcg10_sampled", "hr10_full", "ndcg10_full"}


def test_auc_counts_pairs_and_ties_half():
    assert auc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 1, 1])) == 1.0
    assert auc(np.array([0.4, 0.3, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5
    assert auc(np.array([0.1, 0.3, 0.2, 0.4]), np.array([0, 0, 1, 1])) == 0.75


def _halves(features, users=None):
    users = np.arange(len(features)) if users is None else users
    half = len(users) // 2
    return Split((features[:half], features[half:]), (users[:half], users[half:]))


def test_the_attack_finds_a_planted_signal_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.5
    features = rng.normal(size=(400, 300))
    planted = features.copy()
    planted[:, :5] += 1.2 * labels[:, None]  # Bayes-optimal AUC 0.97
    [found] = attack([_halves(planted)], labels, seed=0)
    assert found["auc"] > 0.8 and found["low"] > 0.7
    [chance] = attack([_halves(features)], labels, seed=0)
    assert 0.4 < chance["auc"] < 0.6 and chance["low"] < 0.5 < chance["high"]


def test_the_attacker_fits_many_targets_as_it_fits_one():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(120, 30))
    labels = np.stack([features[:, k] + rng.normal(size=120) > 0 for k in range(3)], axis=1)
    together = fit_attacker(features[:80], labels[:80], features[80:], seed=0)
    for k in range(3):
        alone = fit_attacker(features[:80], labels[:80, k], features[80:], seed=0)[:, 0]
        assert np.allclose(together[:, k], alone)


def test_the_attack_is_cross_fitted_and_averaged_over_splits():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 20))
    labels = features[:, 0] + rng.normal(size=200) > 0
    one_way = auc(fit_attacker(features[:100], labels[:100], features[100:], seed=0)[:, 0], labels[100:])
    other_way = auc(fit_attacker(features[100:], labels[100:], features[:100], seed=0)[:, 0], labels[:100])
    assert one_way != other_way
    [both] = attack([_halves(features)], labels, seed=0)
    assert both["auc"] == pytest.approx((one_way + other_way) / 2, abs=1e-4)
    # A second split (the users in another order) adds its two folds to the mean.
    order = rng.permutation(200)
    [again] = attack([_halves(features[order], order)], labels, seed=0)
    [over_both] = attack([_halves(features), _halves(features[order], order)], labels, seed=0)
    assert over_both["auc"] == pytest.approx((both["auc"] + again["auc"]) / 2, abs=1e-4)


def test_the_chance_level_of_the_highest_auc_tells_grouped_noise_from_a_leak():
    rng = np.random.default_rng(2)
    users, targets = 480, 12
    labels = rng.random((users, targets)) < 0.5
    # 24 cohorts of 20 share one feature vector, as the server's cohort sums do: pure noise ...
    cohort_features = np.repeat(rng.normal(size=(24, 40)), 20, axis=0)
    one_split = [_halves(cohort_features)]
    observed = max(r["auc"] for r in attack(one_split, labels, 0))
    null = chance_of_highest(one_split, labels, observed, permutations=60, seed=0)
    assert null["p95"] > 0.56  # 12 AUCs over 12 distinct points per half: the highest is rarely near 0.5
    assert null["p_value"] > 0.05 and null["median"] < observed + 0.1
    # ... more splits (new cohorts each time, as the audit forms them) bring the chance level down ...
    splits = []
    for _ in range(5):
        order = rng.permutation(users)
        splits.append(_halves(np.repeat(rng.normal(size=(24, 40)), 20, axis=0), order))
    repeated = chance_of_highest(splits, labels, observed, permutations=60, seed=0)
    assert repeated["median"] < null["median"] - 0.01 and repeated["p95"] < null["p95"]
    # ... while a real leak into each user's own features stands far above its chance level.
    leaky = rng.normal(size=(users, 40))
    leaky[:, 0] += 1.5 * labels[:, 3]
    found = attack([_halves(leaky)], labels, 0)[3]["auc"]
    null = chance_of_highest([_halves(leaky)], labels, found, permutations=60, seed=0)
    assert found > 0.75 and found > null["p95"] + 0.1 and null["p_value"] < 0.05


@pytest.mark.parametrize("epsilon,rounds", [(1.0, 4), (4.0, 4), (8.0, 2)])
def test_the_noise_is_calibrated_to_the_epsilon(epsilon, rounds):
    z = noise_for_epsilon(epsilon, rounds)
    assert privacy_spent([z] * rounds, 1e-4).epsilon == pytest.approx(epsilon, abs=1e-3)
    assert privacy_spent([z * 0.98] * rounds, 1e-4).epsilon > epsilon  # the smallest such noise


def test_eval_quick_runs_every_row_and_the_numbers_hang_together(tmp_path):
    output = tmp_path / "EVALUATION.md"
    result = CliRunner().invoke(cli, ["eval", "--quick", "--json", "--output", str(output)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) >= {"popularity", *SYNC_OFF.values(), NO_DP, DP4, federated_name("text"),
                         federated_name("text", 4.0)}
    for row in report["rows"]:
        assert ROW_KEYS <= set(row)
        assert 0 <= row["ndcg10_sampled"] <= row["hr10_sampled"] <= 1
        assert row["hr10_full"] <= row["hr10_sampled"]  # 1,600-odd candidates are harder than 100
    mf = next(r for name, r in rows.items() if name.startswith("centralized BPR-MF"))
    assert mf["ndcg10_sampled"] > rows["popularity"]["ndcg10_sampled"]
    # What the public foundation adds with sync off, each part on top of the one before (cross-fitted).
    text, signals, prior = (rows[SYNC_OFF[key]] for key in ("text", "signals", "prior"))
    assert text["ndcg10_sampled"] < signals["ndcg10_sampled"] < prior["ndcg10_sampled"]
    assert prior["ndcg10_sampled"] > rows["popularity"]["ndcg10_sampled"]
    assert report["settings"]["folds"] == 5 and report["settings"]["signal_weights"]
    # The federation learns what no single device can: from zero, item popularity and a shared view of the items.
    assert rows[federated_name("text")]["ndcg10_sampled"] > text["ndcg10_sampled"]
    assert rows[DP4]["epsilon"] == pytest.approx(4.0, abs=0.01)
    assert rows[NO_DP]["epsilon"] is None  # infinite: no noise
    assert rows[NO_DP]["foundation"] == "prior" and rows[federated_name("text")]["foundation"] == "text"
    # Each row runs the coordinator it would deploy and the local work that suits its noise; the no-DP row run
    # as the DP rows are (item rate, local epochs) is the like-for-like.
    assert rows[NO_DP]["item_learning_rate"] == ITEM_RATE_WITHOUT_NOISE
    assert rows[NO_DP]["local_epochs"] == rows[federated_name("text")]["local_epochs"] == LOCAL_EPOCHS_WITHOUT_NOISE
    assert rows[NO_DP_AS_DP_ROWS]["item_learning_rate"] == rows[DP4]["item_learning_rate"] == ITEM_RATE_WITH_NOISE
    assert rows[NO_DP_AS_DP_ROWS]["local_epochs"] == rows[DP4]["local_epochs"] == LOCAL_EPOCHS_WITH_NOISE
    assert rows[larger_federation_name(8, 150)]["local_epochs"] == LOCAL_EPOCHS_WITH_NOISE
    assert rows[NO_DP_AS_DP_ROWS]["ndcg10_sampled"] != rows[NO_DP]["ndcg10_sampled"]
    # Epsilon 4 in a federation 8x larger: the same multiplier for each of 1,200 people, so the 150 users'
    # average takes 1/8 of the epsilon-4 row's noise.
    larger = rows[larger_federation_name(8, 150)]
    dp4 = rows[DP4]
    assert larger["epsilon"] == pytest.approx(4.0, abs=0.01) and larger["federation_scale"] == 8
    assert larger["noise_multiplier"] == pytest.approx(dp4["noise_multiplier"])
    assert larger["simulated_noise_multiplier"] == pytest.approx(dp4["noise_multiplier"] / 8)
    assert larger["item_learning_rate"] == LARGER_FEDERATION_ITEM_RATE
    assert larger["ndcg10_sampled"] != dp4["ndcg10_sampled"]
    assert report["reference_rows"] and report["settings"]["users"] == 150
    # ownrec's rows score with the latest likes, as the product does, and say what they add.
    for name, row in rows.items():
        assert ("test_by_context" in row) == name.startswith("ownrec"), name
    fed = rows[NO_DP]
    assert set(fed["test_by_context"]) == {"training", "none"}
    # (NDCG: with 150 people two contexts can hit the same number of test items)
    assert len({fed["ndcg10_sampled"], fed["test_by_context"]["training"]["ndcg10_sampled"],
                fed["test_by_context"]["none"]["ndcg10_sampled"]}) == 3
    assert (report["settings"]["recent_items"], report["settings"]["recent_weight"],
            report["settings"]["recent_decay"]) == (RECENT_ITEMS, RECENT_WEIGHT, RECENT_DECAY)
    assert report["settings"]["co_liked"] == {"items": CO_LIKED_ITEMS, "weight": CO_LIKED_WEIGHT, "window": WINDOW,
                                              "neighbours": NEIGHBOURS}
    text = output.read_text()
    assert "<!-- eval:begin -->" in text and "measured outside ownrec" in text
    assert "| model | latest likes (as above) | training items only | none |" in text
    assert "- Sync off (the default): text only" in text and "cross-fitted" in text
    assert "what people went on to like after each item" in text
    assert "- DP at epsilon 4 for each of 1,200 people (8x the 150 here" in text
    assert "| epsilon | exact (GDP) | RDP | noise saved |" in text
    plot = tmp_path / "docs" / "evaluation" / "privacy-utility.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_latest_likes_at_a_held_out_item_are_what_came_before_it():
    from agent.lab.protocol.movielens import leave_one_out, load_movielens
    from agent.lab.evaluation.setting import Setting

    protocol = leave_one_out(load_movielens())
    setting = Setting(None, protocol, np.array([0, 5]), None, None, [], None)
    train = protocol.train_items(5)
    assert np.array_equal(setting.recent_rows(1, "validation", "latest"), train)
    assert np.array_equal(setting.recent_rows(1, "test", "latest"), np.append(train, protocol.validation[5]))
    assert np.array_equal(setting.recent_rows(1, "test", "training"), train)
    assert setting.recent_rows(1, "test", "none") is None
    assert protocol.test[5] not in setting.recent_rows(1, "test", "latest")  # never the item being ranked


def test_eval_item_rate_sets_every_federated_rows_coordinator(tmp_path):
    output = tmp_path / "EVALUATION.md"
    result = CliRunner().invoke(cli, ["eval", "--quick", "--users", "30", "--rounds", "1", "--item-rate", "8",
                                      "--longer-rounds", "2", "--json", "--output", str(output)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    federated = [row for row in rows if row["name"].startswith("ownrec federated")]
    assert [row["name"] for row in federated] == [federated_name("text"), federated_name("text", 4.0), NO_DP, DP4,
                                                  larger_federation_name(8, 30), federated_name("prior", rounds=2)]
    assert all(row["item_learning_rate"] == 8 for row in federated)
    # The longer row runs its own rounds, the others the settings' one.
    assert [row["rounds"] for row in federated] == [1, 1, 1, 1, 1, 2]
    assert [h["checkpoint"] for h in federated[-1]["history"]] == ["round 1", "round 2", "fine-tuned"]
    assert federated[-1]["epsilon"] is None  # no noise
    assert "- 2 rounds from release 0 without noise:" in output.read_text()
    assert "8 in every row" in output.read_text()


def test_audit_quick_sees_the_leak_in_raw_deltas_and_not_in_the_servers_view(tmp_path):
    output = tmp_path / "EVALUATION.md"
    result = CliRunner().invoke(cli, ["audit", "--quick", "--json", "--output", str(output)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    views = {(v["view"], v["epsilon"]): v["results"] for v in report["views"]}

    def trait_mean(results):
        return np.mean([r["auc"] for name, r in results.items() if name.startswith("trait:")])

    raw = views[("raw delta", None)]
    assert trait_mean(raw) > 0.7  # a raw delta gives the person's taste away
    assert raw["gender (female)"]["auc"] > 0.55
    server = views[("server (sums of 20)", 4.0)]
    assert trait_mean(server) < 0.6 and server["gender (female)"]["low"] < 0.5 + 0.1
    null = next(v for v in report["views"] if v["view"] == "server (sums of 20)" and v["epsilon"] == 4.0)[
        "chance_of_highest"]
    assert null["permutations"] == 50 and 0.5 < null["median"] <= null["p95"] < 1.0 and 0 < null["p_value"] <= 1
    assert "<!-- audit:begin -->" in output.read_text()
    assert (tmp_path / "docs" / "evaluation" / "attack-auc.png").read_bytes()[:4] == b"\x89PNG"


class _Finalized:
    """Writes the pid of the process that finalizes it (a stand-in for an onnxruntime session, whose
    destructor hangs in a forked child: its thread pool's threads were not forked)."""

    def __init__(self, record):
        self.record = record
        self.cycle = self  # only the garbage collector can free it

    def __del__(self):
        with open(self.record, "a") as out:
            out.write(f"{os.getpid()}\n")


def _collect_in_worker(_):
    gc.collect()
    return os.getpid()


def test_forked_workers_never_finalize_what_they_inherit(tmp_path):
    record = tmp_path / "finalized"
    gc.disable()  # keep the cycle alive as garbage until the pool forks, as a busy parent would
    try:
        _Finalized(record)
        with worker_pool(2) as pool:
            children = set(pool.map(_collect_in_worker, range(8)))
    finally:
        gc.enable()
    assert os.getpid() not in children
    assert record.read_text().split() == [str(os.getpid())]  # finalized once, here, before the fork


def test_the_foundation_that_scores_a_person_never_saw_their_data():
    """Cross-fitting: fold f's public signals, release 0 and what people went on to like come from the other folds'
    training interactions, so
    changing everything the people of fold f did (here: dropping all their training interactions) changes
    nothing that scores them, while it does change what scores everyone else."""
    from dataclasses import replace

    from agent.core.ranker.prior import PriorSettings
    from agent.lab.evaluation.setting import cross_fit, prepare

    setting = prepare(None, 0, lambda _: None)
    quick = PriorSettings(epochs=1)
    before = cross_fit(setting, 5, prior=True, log=lambda _: None, prior_settings=quick)
    protocol = setting.protocol
    keep = before.fold[protocol.train_user] != 0
    setting.protocol = replace(protocol, train_user=protocol.train_user[keep], train_item=protocol.train_item[keep],
                               train_rating=protocol.train_rating[keep], train_time=protocol.train_time[keep])
    after = cross_fit(setting, 5, prior=True, log=lambda _: None, prior_settings=quick)
    assert np.array_equal(before.fold, after.fold)
    assert np.array_equal(before.catalogs[0].signals, after.catalogs[0].signals)
    assert np.array_equal(before.priors[0], after.priors[0])
    unchanged = before.catalogs[0].co_liked, after.catalogs[0].co_liked
    for part in ("indptr", "followers", "weights", "people"):
        assert np.array_equal(getattr(unchanged[0], part), getattr(unchanged[1], part)), part
    for f in range(1, 5):  # the other folds' foundations did count fold 0's interactions
        assert not np.array_equal(before.catalogs[f].signals, after.catalogs[f].signals)
        assert not np.allclose(before.priors[f], after.priors[f])
        assert not np.array_equal(before.catalogs[f].co_liked.weights, after.catalogs[f].co_liked.weights)
