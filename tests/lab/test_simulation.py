"""The in-process federation runs the real coordinator and client stages: its release is the cohort
average of the clipped, noised, quantized deltas, and only that."""

import numpy as np
import pytest

from agent.federation.accounting import privacy_spent
from agent.federation.clipping import DistributedNoise, clip_to_norm
from agent.federation.neighbourhood import plan_neighbourhood
from agent.federation.layout import SharedLayout
from agent.federation.quantize import QuantizationPlan
from agent.lab.evaluation.simulation import InProcessFederation


def federation(tmp_path, cohort: int, noise_multiplier: float, clip_norm: float = 1.0,
               item_learning_rate: float = 1.0, shrink_noise: bool = True, from_prior: bool = False
               ) -> InProcessFederation:
    layout = SharedLayout.create(64, 8, [f"test:{i}" for i in range(200)], np.random.default_rng(0))
    return InProcessFederation(tmp_path / "coordinator", layout, cohort, clip_norm=clip_norm,
                               noise_multiplier=noise_multiplier, item_learning_rate=item_learning_rate,
                               shrink_noise=shrink_noise, from_prior=from_prior, seed=1)


def test_without_noise_the_release_is_the_average_of_the_clipped_deltas(tmp_path):
    sim = federation(tmp_path, 12, 0.0)
    base = sim.latest()
    rng = np.random.default_rng(2)
    deltas = [rng.normal(scale=0.5, size=base.layout.size) for _ in range(12)]
    result = sim.run_round(deltas, base)
    clipped = [clip_to_norm(d, 1.0)[0] for d in deltas]
    assert result.release.version == base.version + 1 and result.summands == 12
    assert np.allclose(result.pre_clip_norms, [np.linalg.norm(d) for d in deltas])
    step = QuantizationPlan.for_cohort(DistributedNoise(1.0, 0.0, plan_neighbourhood(12).min_survivors), 12).step
    assert np.max(np.abs(result.release.vector - base.vector - np.mean(clipped, axis=0))) <= step
    # The next round starts from that release; the coordinator signed both.
    again = sim.run_round(deltas, result.release)
    assert again.release.version == base.version + 2
    sim.close()


def test_the_item_rows_take_the_item_learning_rate_and_b_g_the_plain_average(tmp_path):
    sim = federation(tmp_path, 12, 0.0, item_learning_rate=8.0)
    base = sim.latest()
    rng = np.random.default_rng(3)
    deltas = [rng.normal(scale=0.02, size=base.layout.size) for _ in range(12)]  # norms about 0.5: inside C = 1
    moved = sim.run_round(deltas, base).release.vector - base.vector
    mean = np.mean(deltas, axis=0)
    items = base.layout.item_offset
    assert items == 64 * 8 and base.layout.size == items + 200
    step = QuantizationPlan.for_cohort(DistributedNoise(1.0, 0.0, plan_neighbourhood(12).min_survivors), 12).step
    assert np.max(np.abs(moved[:items] - mean[:items])) <= step
    assert np.max(np.abs(moved[items:] - 8.0 * mean[items:])) <= 8.0 * step
    assert np.max(np.abs(mean[items:])) > 10 * step  # the test can tell rate 8 from rate 1
    sim.close()


def test_with_noise_the_release_carries_the_distributed_noise(tmp_path):
    sim = federation(tmp_path, 10, 2.0, shrink_noise=False)
    base = sim.latest()
    deltas = [np.zeros(base.layout.size) for _ in range(10)]
    result = sim.run_round(deltas, base)
    # Each client adds z*C/sqrt(min_survivors); the average of 10 carries sqrt(10)/10 of that.
    expected = 2.0 / np.sqrt(plan_neighbourhood(10).min_survivors) * np.sqrt(10) / 10
    observed = float(np.std(result.release.vector - base.vector))
    assert observed == pytest.approx(expected, rel=0.35)
    assert np.isfinite(result.epsilon) and result.epsilon > 0
    sim.close()


@pytest.mark.parametrize("from_prior", [False, True])
def test_as_deployed_a_release_of_pure_noise_is_shrunk_to_about_nothing_where_it_refines_release_0(tmp_path,
                                                                                                    from_prior):
    sim = federation(tmp_path, 10, 2.0, from_prior=from_prior)
    base = sim.latest()
    assert base.metadata["prior"] is from_prior and sim.coordinator.info()["shrink_items"] is from_prior
    moved = sim.run_round([np.zeros(base.layout.size) for _ in range(10)], base).release.vector - base.vector
    expected = 2.0 / np.sqrt(plan_neighbourhood(10).min_survivors) * np.sqrt(10) / 10
    items = base.layout.item_offset
    assert float(np.std(moved[:items])) < 0.1 * expected  # B_g: always
    # The item rows: from release 0, too; from zero they are left for the rounds to add up (`shrinkage`).
    assert bool(np.std(moved[items:]) < 0.1 * expected) is from_prior
    if not from_prior:
        assert float(np.std(moved[items:])) == pytest.approx(expected, rel=0.35)
    sim.close()


def test_a_cohort_of_the_wrong_size_is_refused(tmp_path):
    sim = federation(tmp_path, 5, 0.0)
    with pytest.raises(ValueError, match="cohorts of 5"):
        sim.run_round([np.zeros(sim.latest().layout.size)] * 4, sim.latest())
    sim.close()


def test_each_person_is_one_device_whose_privacy_steps_add_up_over_rounds(tmp_path):
    """The coordinator counts privacy per device: a person in both rounds has spent two steps, and a
    round of other people leaves everyone at one (the evaluation's epsilon rows rest on this)."""
    sim = federation(tmp_path, 10, 2.0)
    zeros = [np.zeros(sim.latest().layout.size) for _ in range(10)]
    first = sim.run_round(zeros, sim.latest())
    others = sim.run_round(zeros, first.release, people=range(10, 20))
    assert others.epsilon == pytest.approx(first.epsilon) == pytest.approx(privacy_spent([2.0], 1e-4).epsilon, abs=0.01)
    again = sim.run_round(zeros, others.release)  # people 0-9 again
    assert again.epsilon == pytest.approx(privacy_spent([2.0, 2.0], 1e-4).epsilon, abs=0.01)
    with pytest.raises(ValueError, match="each person once"):
        sim.run_round(zeros, again.release, people=[0] * 10)
    sim.close()


def test_a_coordinator_from_before_per_device_privacy_counts_its_earlier_sums_in(tmp_path):
    from agent.server.coordinator import Coordinator

    sim = federation(tmp_path, 10, 2.0)
    zeros = [np.zeros(sim.latest().layout.size) for _ in range(10)]
    first = sim.run_round(zeros, sim.latest())
    with sim.storage.write() as tx:  # as a database written before the per-device tables existed
        tx.execute("delete from device_steps")
        tx.execute("delete from device_privacy")
    sim.coordinator = Coordinator(sim.storage, sim.signing_key, sim.settings, None)
    again = sim.run_round(zeros, first.release)
    assert again.epsilon == pytest.approx(privacy_spent([2.0, 2.0], 1e-4).epsilon, abs=0.01)
    sim.close()
