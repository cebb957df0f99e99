"""The numeric and secret-sharing primitives of the federation protocol (agent.federation): clipping,
distributed noise, quantization, Shamir sharing and the SecAgg+ neighbourhood.

Fixed seeds appear only here, for reproducible statistics; the product path draws from the OS."""


import math
import secrets
from itertools import combinations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.federation.clipping import DistributedNoise, clip_to_norm, l2_norm, secure_generator
from agent.federation.errors import (ConfigurationError, InconsistentShares,
                                    InvalidShare, MaskingError, NotEnoughShares, QuantizationError)
from agent.federation.neighbourhood import NeighbourGraph, ThreatModel, plan_neighbourhood
from agent.federation.quantize import (HALF_MODULUS, QuantizationPlan, centre, dequantize_sum, encode_update,
                                      quantize)
from agent.federation.shamir import FIELD_PRIME, Share, reconstruct_secret, split_secret

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])



# ---------------------------------------------------------------- clipping and noise

finite_vectors = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=64)


@FAST
@given(finite_vectors, st.floats(min_value=1e-3, max_value=1e3))
def test_clipping_never_exceeds_the_clip_norm_and_keeps_direction(values, clip_norm):
    delta = np.array(values)
    clipped, norm = clip_to_norm(delta, clip_norm)
    assert l2_norm(clipped) <= clip_norm
    assert norm == pytest.approx(float(np.linalg.norm(delta)), rel=1e-9, abs=1e-12)
    if norm <= clip_norm:
        assert np.array_equal(clipped, delta)
    else:
        assert l2_norm(clipped) == pytest.approx(clip_norm, rel=1e-9)
        assert np.allclose(clipped * norm / clip_norm, delta, rtol=1e-9, atol=1e-9 * norm)


def test_clipping_refuses_non_finite_input_and_bad_norms():
    with pytest.raises(ConfigurationError):
        clip_to_norm(np.array([1.0, np.nan]), 1.0)
    with pytest.raises(ConfigurationError):
        clip_to_norm(np.array([1.0]), 0.0)
    assert clip_to_norm(np.array([1e200, 1e200]), 1.0)[1] == pytest.approx(math.sqrt(2) * 1e200)


def test_noise_of_the_sum_over_the_cohort_has_the_central_standard_deviation():
    noise = DistributedNoise(clip_norm=2.0, noise_multiplier=1.1, min_contributors=100)
    assert noise.std_per_client == pytest.approx(2.2 / 10)
    rng = np.random.default_rng(20240601)  # fixed seed: this test only
    dimensions = 4000
    total = sum(noise.add_to(np.zeros(dimensions), rng) for _ in range(noise.min_contributors))
    # The sample std over 4,000 coordinates is within about 1.1% of the truth (one standard error).
    assert float(np.std(total)) == pytest.approx(noise.central_std, rel=0.05)
    assert abs(float(np.mean(total))) < 4 * noise.central_std / math.sqrt(dimensions)


def test_product_noise_is_never_the_same_twice():
    noise = DistributedNoise(clip_norm=1.0, noise_multiplier=1.0, min_contributors=4)
    assert not np.array_equal(noise.add_to(np.zeros(16)), noise.add_to(np.zeros(16)))
    assert secure_generator().integers(0, 2**62) != secure_generator().integers(0, 2**62)
    assert np.array_equal(DistributedNoise(1.0, 0.0, 4).add_to(np.ones(3)), np.ones(3))
    for bad in ((0.0, 1.0, 4), (1.0, -1.0, 4), (1.0, 1.0, 0)):
        with pytest.raises(ConfigurationError):
            DistributedNoise(*bad)


# ---------------------------------------------------------------- quantization

def test_quantization_is_unbiased():
    plan = QuantizationPlan(clamp_bound=1.0, scale=10.0, max_summands=1)  # a coarse step of 0.1
    rng = np.random.default_rng(7)
    values = np.array([0.123, -0.456, 0.05, -0.999, 0.0])
    draws = 20000
    mean = sum(centre(quantize(values, plan, rng)) for _ in range(draws)) / draws / plan.scale
    # Each coordinate's rounding has variance <= step^2/4, so the mean's std is <= 0.05/sqrt(20000).
    assert np.allclose(mean, values, atol=5 * 0.05 / math.sqrt(draws))


@FAST
@given(st.lists(st.floats(min_value=-3.0, max_value=3.0), min_size=1, max_size=64),
       st.integers(min_value=1, max_value=5000))
def test_quantization_error_is_at_most_one_step(values, cohort):
    plan = QuantizationPlan.for_cohort(DistributedNoise(1.0, 1.0, cohort), cohort)
    vector = np.clip(np.array(values), -plan.clamp_bound, plan.clamp_bound)
    restored = dequantize_sum(quantize(vector, plan), plan, 1)
    assert np.all(np.abs(restored - vector) <= plan.step * (1 + 1e-9))


@FAST
@given(st.integers(min_value=1, max_value=2000), st.data())
def test_the_sum_of_the_largest_cohort_never_wraps(cohort, data):
    noise = DistributedNoise(clip_norm=1.0, noise_multiplier=0.8, min_contributors=max(1, cohort // 2))
    plan = QuantizationPlan.for_cohort(noise, cohort)
    summands = data.draw(st.integers(min_value=1, max_value=cohort))
    signs = np.array(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3)))
    # Every client at the extreme (beyond the clamp), all pushing each coordinate the same way.
    vector = signs * plan.clamp_bound * 5
    total = np.zeros(3, dtype=np.uint32)
    for _ in range(summands):
        total += quantize(vector, plan)  # uint32 arithmetic: this is the ring Z_2^32
    restored = dequantize_sum(total, plan, summands)
    assert np.allclose(restored, signs * plan.clamp_bound * summands, atol=summands * plan.step * 1.0001)
    assert np.all(np.abs(centre(total)) <= HALF_MODULUS - 1)


def test_plans_that_could_wrap_are_refused():
    with pytest.raises(QuantizationError, match="wrap"):
        QuantizationPlan(clamp_bound=1.0, scale=2.0**20, max_summands=4096)
    with pytest.raises(QuantizationError, match="coarse"):
        QuantizationPlan.for_cohort(DistributedNoise(1.0, 1.0, 10), 10_000_000)
    with pytest.raises(QuantizationError):
        QuantizationPlan.for_cohort(DistributedNoise(1.0, 1.0, 100), 50)  # fewer summands than contributors
    plan = QuantizationPlan.for_cohort(DistributedNoise(1.0, 1.0, 10), 100)
    with pytest.raises(QuantizationError, match="wrapped"):
        dequantize_sum(np.zeros(2, dtype=np.uint32), plan, 101)
    with pytest.raises(QuantizationError):
        quantize(np.array([np.inf]), plan)


def test_headroom_figures_are_documented_and_small():
    noise = DistributedNoise(clip_norm=1.0, noise_multiplier=1.0, min_contributors=700)
    plan = QuantizationPlan.for_cohort(noise, 1000)
    assert plan.per_client_limit * 1000 <= HALF_MODULUS - 1
    assert plan.step < 1e-5 * noise.clip_norm
    assert plan.clamp_failure_probability(100_000, noise) < 1e-20


def test_encode_update_clips_noises_and_quantizes():
    noise = DistributedNoise(clip_norm=1.0, noise_multiplier=0.0, min_contributors=1)
    plan = QuantizationPlan.for_cohort(noise, 10)
    update = encode_update(np.full(4, 10.0), noise, plan, np.random.default_rng(1))
    assert update.values.dtype == np.uint32 and update.pre_clip_norm == pytest.approx(20.0)
    assert np.allclose(dequantize_sum(update.values, plan, 1), np.full(4, 0.5), atol=plan.step)


# ---------------------------------------------------------------- Shamir

def _miller_rabin(n: int, rounds: int = 40) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(2 + secrets.randbelow(n - 3), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def test_the_field_is_prime_and_holds_every_32_byte_secret():
    assert FIELD_PRIME > 2**256 and _miller_rabin(FIELD_PRIME)
    assert not any(_miller_rabin(2**256 + k) for k in range(1, 297, 2))  # the smallest such prime


@FAST
@given(st.binary(min_size=32, max_size=32), st.integers(min_value=2, max_value=12), st.data())
def test_any_threshold_of_shares_recovers_and_fewer_do_not(secret, holders, data):
    threshold = data.draw(st.integers(min_value=1, max_value=holders))
    indices = data.draw(st.lists(st.integers(min_value=1, max_value=2**32 - 1), min_size=holders,
                                 max_size=holders, unique=True))
    shares = split_secret(secret, threshold, indices)
    chosen = data.draw(st.permutations(shares))
    assert reconstruct_secret(chosen[:threshold], threshold) == secret
    assert reconstruct_secret(chosen, threshold) == secret  # every extra share checked against the rest
    with pytest.raises(NotEnoughShares):
        reconstruct_secret(chosen[:threshold - 1], threshold)


def test_every_subset_of_the_threshold_recovers():
    secret = secrets.token_bytes(32)
    shares = split_secret(secret, 3, range(1, 7))
    assert all(reconstruct_secret(list(subset), 3) == secret for subset in combinations(shares, 3))


def _lagrange_at(points: list[tuple[int, int]], x: int) -> int:
    total = 0
    for i, (xi, yi) in enumerate(points):
        numerator = denominator = 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                numerator, denominator = numerator * (x - xj) % FIELD_PRIME, denominator * (xi - xj) % FIELD_PRIME
        total = (total + yi * numerator * pow(denominator, -1, FIELD_PRIME)) % FIELD_PRIME
    return total


def test_fewer_shares_than_the_threshold_say_nothing_about_the_secret():
    # Any t - 1 shares extend, for every candidate secret, to a full consistent set of t shares.
    shares = split_secret(secrets.token_bytes(32), 3, [1, 2, 3])[:2]
    for candidate in (bytes(32), b"\xff" * 32, secrets.token_bytes(32)):
        points = [(0, int.from_bytes(candidate, "big")), *((share.index, share.value) for share in shares)]
        completion = Share(index=4, value=_lagrange_at(points, 4))
        assert reconstruct_secret([*shares, completion], 3) == candidate


def test_wrong_shares_are_detected():
    secret = secrets.token_bytes(32)
    shares = list(split_secret(secret, 3, range(1, 8)))
    bad = Share(index=shares[4].index, value=(shares[4].value + 1) % FIELD_PRIME)
    with pytest.raises(InconsistentShares):
        reconstruct_secret([*shares[:4], bad], 3)
    with pytest.raises(InconsistentShares):
        reconstruct_secret([bad, *shares[:4]], 3)


def test_malformed_shares_are_refused():
    shares = split_secret(secrets.token_bytes(32), 2, [1, 2, 3])
    with pytest.raises(InvalidShare, match="twice"):
        reconstruct_secret([shares[0], shares[0]], 2)
    for index in (0, -1, 2**32, True):
        with pytest.raises(InvalidShare):
            Share(index=index, value=1)
    with pytest.raises(InvalidShare):
        Share(index=1, value=FIELD_PRIME)
    with pytest.raises(InvalidShare):
        Share.from_value_bytes(1, b"\x00" * 32)
    with pytest.raises(ConfigurationError):
        split_secret(b"short", 2, [1, 2])
    with pytest.raises(ConfigurationError):
        split_secret(bytes(32), 3, [1, 2])
    with pytest.raises(InvalidShare):
        split_secret(bytes(32), 2, [1, 1, 2])


# ---------------------------------------------------------------- neighbourhood

def test_neighbour_count_grows_like_log_n():
    degree = {n: plan_neighbourhood(n).degree for n in (100, 1000, 10_000, 100_000)}
    assert degree[100] < degree[1000] < 1000 / 10
    for n, k in degree.items():
        assert k <= 10 * math.log2(n)
    # Each tenfold larger cohort adds a shrinking number of neighbours: logarithmic, not linear.
    assert degree[100_000] - degree[10_000] <= degree[10_000] - degree[1000] <= degree[1000] - degree[100]
    assert degree[100_000] / degree[1000] < math.log(100_000) / math.log(1000)


def test_plans_meet_the_threshold_rules():
    for n in (3, 5, 10, 20, 50, 100, 1000):
        for model in ThreatModel:
            plan = plan_neighbourhood(n, threat_model=model)
            assert 2 <= plan.threshold <= plan.degree <= n - 1
            if plan.complete:  # every corrupt client is a neighbour: they must stay below the threshold
                assert plan.threshold > plan.max_corrupt
            if model is ThreatModel.SEMI_MALICIOUS_SERVER:
                assert 2 * plan.threshold > plan.degree
    with pytest.raises(ConfigurationError):
        plan_neighbourhood(2)
    with pytest.raises(ConfigurationError, match="infeasible"):
        plan_neighbourhood(100, max_dropout_fraction=0.5, threat_model=ThreatModel.SEMI_MALICIOUS_SERVER)
    plan = plan_neighbourhood(20)
    assert plan.min_survivors == 14
    with pytest.raises(MaskingError, match="abort"):
        plan.check_survivors(13)


def test_the_graph_is_regular_symmetric_and_follows_the_public_seed():
    plan = plan_neighbourhood(300)
    round_id, seed = secrets.token_bytes(16), secrets.token_bytes(32)
    graph = NeighbourGraph.from_seed(plan, seed, round_id)
    again = NeighbourGraph.from_seed(plan, seed, round_id)
    other = NeighbourGraph.from_seed(plan, secrets.token_bytes(32), round_id)
    for u in range(1, 301):
        mine = graph.neighbours(u)
        assert len(mine) == plan.degree and u not in mine
        assert all(u in graph.neighbours(v) for v in mine)
        assert mine == again.neighbours(u)
    assert any(graph.neighbours(u) != other.neighbours(u) for u in range(1, 301))
    with pytest.raises(MaskingError):
        graph.neighbours(301)
