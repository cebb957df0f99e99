"""The cryptographic and numeric core of federated sync (agent.core.sync): clipping, distributed
noise, quantization, Shamir sharing, the SecAgg+ neighbourhood, masking, envelopes and the wire
format, including a full in-memory secure-aggregation round with dropouts.

Fixed seeds appear only here, for reproducible statistics; the product path draws from the OS."""

from __future__ import annotations

import math
import secrets
from itertools import combinations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.federation import envelope, masking, protocol
from agent.lab.bench.sync_costs import client_round_costs
from agent.federation.clipping import DistributedNoise, clip_to_norm, l2_norm, secure_generator
from agent.federation.errors import (ConfigurationError, EnvelopeMisdirected, EnvelopeTampered, InconsistentShares,
                                    InvalidShare, MaskingError, NotEnoughShares, ProtocolError, QuantizationError,
                                    SyncError)
from agent.federation.keys import generate_keypair, public_key_of
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


# ---------------------------------------------------------------- a whole round in memory

class Client:
    def __init__(self, index: int, values: np.ndarray):
        self.index, self.values = index, values
        self.channel, self.mask_keys = generate_keypair(), generate_keypair()
        self.seed = masking.new_self_mask_seed()
        self.held: dict[int, masking.SharePair] = {}


def run_round(n: int, values: dict[int, np.ndarray], early_dropouts: set[int], late_dropouts: set[int],
              round_id: bytes | None = None, public_seed: bytes | None = None):
    """The four SecAgg+ stages over encoded messages; returns (sum, survivors, plan, graph) or raises."""
    round_id = round_id or secrets.token_bytes(16)
    public_seed = public_seed or secrets.token_bytes(32)
    plan = plan_neighbourhood(n)
    graph = NeighbourGraph.from_seed(plan, public_seed, round_id)
    clients = {u: Client(u, values[u]) for u in range(1, n + 1)}
    wire = lambda message, **expect: protocol.decode(protocol.encode(message), expected_round=round_id, **expect)  # noqa: E731

    # 1. advertise keys
    advertised = {}
    for u, client in clients.items():
        message = wire(protocol.AdvertiseKeys(round_id, u, client.channel.public, client.mask_keys.public))
        advertised[message.sender] = message
    # 2. share keys: clients that drop early never send theirs
    mailbox: dict[int, list] = {u: [] for u in clients}
    for u, client in clients.items():
        if u in early_dropouts:
            continue
        neighbours = graph.neighbours(u)
        pairs = masking.share_secrets(client.mask_keys, client.seed, neighbours, plan)
        sealed = tuple(envelope.seal(pairs[v].to_plaintext(), round_id=round_id, sender=u, receiver=v,
                                     sender_channel=client.channel, receiver_public=advertised[v].channel_public)
                       for v in neighbours)
        message = wire(protocol.ShareKeys(round_id, u, sealed), expected_stage=protocol.Stage.SHARE_KEYS)
        for sealed_envelope in message.envelopes:
            mailbox[sealed_envelope.receiver].append(sealed_envelope)
    shared = set(clients) - early_dropouts
    # 3. masked input: open the envelopes, mask with neighbours that shared
    masked = {}
    for u in sorted(shared):
        client = clients[u]
        for sealed_envelope in mailbox[u]:
            plaintext = envelope.open_envelope(sealed_envelope, round_id=round_id, receiver=u,
                                               receiver_channel=client.channel,
                                               sender_public=advertised[sealed_envelope.sender].channel_public)
            client.held[sealed_envelope.sender] = masking.SharePair.from_plaintext(u, plaintext)
        partners = {v: advertised[v].mask_public for v in graph.neighbours(u) if v in shared}
        y = masking.mask_input(client.values, round_id=round_id, index=u, mask_keys=client.mask_keys,
                               self_mask_seed=client.seed, neighbour_publics=partners)
        if u not in late_dropouts:
            message = wire(protocol.MaskedInput(round_id, u, y), expected_length=client.values.size)
            masked[u] = message.values
    survivors, dropped = set(masked), shared - set(masked)
    plan.check_survivors(len(survivors))
    # 4. unmasking: survivors reveal one share per neighbour
    seed_shares: dict[int, list[Share]] = {}
    key_shares: dict[int, list[Share]] = {}
    for u in sorted(survivors):
        revealed = masking.shares_to_reveal(clients[u].held, survivors, dropped, plan)
        message = wire(protocol.UnmaskingShares(round_id, u, tuple(
            protocol.RevealedShare(owner, protocol.ShareKind.SELF_MASK_SEED if owner in survivors
                                   else protocol.ShareKind.MASK_KEY, share.value)
            for owner, share in sorted(revealed.items()))))
        for share in message.shares:
            bucket = seed_shares if share.kind is protocol.ShareKind.SELF_MASK_SEED else key_shares
            bucket.setdefault(share.owner, []).append(Share(index=message.sender, value=share.value))
    seeds = {u: reconstruct_secret(seed_shares.get(u, []), plan.threshold) for u in survivors}
    needed = {d for d in dropped if survivors & set(graph.neighbours(d))}
    secrets_of_dropped = {d: masking.recover_mask_secret(key_shares.get(d, []), plan.threshold,
                                                         advertised[d].mask_public) for d in needed}
    total = masking.unmask_sum(masked, round_id=round_id,
                               mask_publics={u: advertised[u].mask_public for u in shared},
                               neighbours_of={d: graph.neighbours(d) for d in dropped},
                               self_mask_seeds=seeds, dropped_mask_secrets=secrets_of_dropped)
    return total, survivors, plan, graph


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=3, max_value=24), st.integers(min_value=1, max_value=40),
       st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32), st.data())
def test_masks_cancel_for_any_cohort_and_any_allowed_dropouts(n, length, round_id, public_seed, data):
    plan = plan_neighbourhood(n)
    values = {u: np.array(data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=length, max_size=length)),
                          dtype=np.uint32) for u in range(1, n + 1)}
    dropouts = data.draw(st.lists(st.integers(1, n), unique=True, max_size=plan.max_dropouts))
    split = data.draw(st.integers(0, len(dropouts)))
    early, late = set(dropouts[:split]), set(dropouts[split:])
    try:
        total, survivors, _, _ = run_round(n, values, early, late, round_id, public_seed)
    except NotEnoughShares:
        # Allowed only if the dropouts left some client whose secret the server needs with fewer
        # than t surviving share holders: the plan's 2^-20 correctness tail, which hypothesis can
        # reach because it picks dropouts adversarially rather than at random.
        graph = NeighbourGraph.from_seed(plan, public_seed, round_id)
        survivors = set(range(1, n + 1)) - early - late
        needed = survivors | {d for d in late if survivors & set(graph.neighbours(d))}
        assert any(len(survivors & set(graph.neighbours(u))) < plan.threshold for u in needed)
        return
    expected = np.zeros(length, dtype=np.uint32)
    for u in survivors:
        expected += values[u]
    assert np.array_equal(total, expected)


def test_a_round_with_thirty_percent_dropouts_after_masking_recovers_the_float_sum():
    n, dimensions = 20, 300
    noise = DistributedNoise(clip_norm=1.0, noise_multiplier=1.0, min_contributors=plan_neighbourhood(n).min_survivors)
    plan = QuantizationPlan.for_cohort(noise, n)
    rng = np.random.default_rng(5)
    deltas = {u: rng.normal(scale=0.2, size=dimensions) for u in range(1, n + 1)}
    clipped = {u: clip_to_norm(d, noise.clip_norm)[0] for u, d in deltas.items()}
    noised = {u: noise.add_to(c, rng) for u, c in clipped.items()}
    values = {u: quantize(v, plan, rng) for u, v in noised.items()}
    total, survivors, _, _ = run_round(n, values, set(), {2, 5, 9, 13, 17, 20})
    assert len(survivors) == 14
    restored = dequantize_sum(total, plan, len(survivors))
    assert np.allclose(restored, sum(noised[u] for u in survivors), atol=len(survivors) * plan.step)
    # What the server learns is the clipped sum plus noise of std about sigma = z*C.
    residual = restored - sum(clipped[u] for u in survivors)
    assert float(np.std(residual)) == pytest.approx(noise.central_std, rel=0.15)


def test_masked_inputs_alone_look_uniform_and_unmasking_refuses_both_secrets():
    n, round_id = 5, secrets.token_bytes(16)
    keys = {u: generate_keypair() for u in range(1, n + 1)}
    seeds = {u: masking.new_self_mask_seed() for u in keys}
    zero = np.zeros(20000, dtype=np.uint32)
    y = {u: masking.mask_input(zero, round_id=round_id, index=u, mask_keys=keys[u], self_mask_seed=seeds[u],
                               neighbour_publics={v: keys[v].public for v in keys if v != u}) for u in keys}
    # A zero input masks to values spread like uniform ones on Z_2^32 (mean 2^31, every high byte).
    assert abs(float(np.mean(y[1].astype(np.float64))) / 2**31 - 1) < 0.02
    assert len(np.unique(y[1] >> 24)) == 256
    publics = {u: k.public for u, k in keys.items()}
    everyone = {u: tuple(v for v in keys if v != u) for u in keys}
    with pytest.raises(MaskingError, match="both"):
        masking.unmask_sum({u: y[u] for u in (1, 2, 3, 4)}, round_id=round_id, mask_publics=publics,
                           neighbours_of=everyone, self_mask_seeds={u: seeds[u] for u in (1, 2, 3, 4)},
                           dropped_mask_secrets={5: keys[5].secret, 1: keys[1].secret})
    with pytest.raises(MaskingError, match="does not match"):
        masking.unmask_sum({u: y[u] for u in (1, 2, 3, 4)}, round_id=round_id, mask_publics=publics,
                           neighbours_of=everyone, self_mask_seeds={u: seeds[u] for u in (1, 2, 3, 4)},
                           dropped_mask_secrets={5: keys[4].secret})
    with pytest.raises(MaskingError, match="no neighbour list"):
        masking.unmask_sum({u: y[u] for u in (1, 2, 3, 4)}, round_id=round_id, mask_publics=publics,
                           neighbours_of={}, self_mask_seeds={u: seeds[u] for u in (1, 2, 3, 4)},
                           dropped_mask_secrets={5: keys[5].secret})
    total = masking.unmask_sum({u: y[u] for u in (1, 2, 3, 4)}, round_id=round_id, mask_publics=publics,
                               neighbours_of=everyone, self_mask_seeds={u: seeds[u] for u in (1, 2, 3, 4)},
                               dropped_mask_secrets={5: keys[5].secret})
    assert not total.any()  # four zero inputs sum to zero once every mask is removed
    with pytest.raises(MaskingError, match="not recovered"):
        masking.unmask_sum({u: y[u] for u in (1, 2, 3, 4)}, round_id=round_id, mask_publics=publics,
                           neighbours_of=everyone, self_mask_seeds={u: seeds[u] for u in (1, 2, 3, 4)},
                           dropped_mask_secrets={})
    with pytest.raises(MaskingError):
        masking.recover_mask_secret(list(split_secret(keys[5].secret, 2, [1, 2])), 2, keys[4].public)
    assert masking.recover_mask_secret(list(split_secret(keys[5].secret, 2, [1, 2])), 2,
                                       keys[5].public) == keys[5].secret
    assert public_key_of(keys[1].secret) == keys[1].public


def test_a_client_never_reveals_both_secrets_of_a_neighbour():
    plan = plan_neighbourhood(10)
    owner = generate_keypair()
    pairs = masking.share_secrets(owner, masking.new_self_mask_seed(), range(2, 10), plan)
    held = {1: pairs[2]}
    with pytest.raises(MaskingError, match="both"):
        masking.shares_to_reveal(held, survivors={1, 2, 3, 4, 5, 6, 7}, dropped={1}, plan=plan)
    with pytest.raises(MaskingError, match="abort"):
        masking.shares_to_reveal(held, survivors={2, 3}, dropped={1}, plan=plan)
    revealed = masking.shares_to_reveal(held, survivors=set(range(2, 10)), dropped={1}, plan=plan)
    assert revealed == {1: pairs[2].mask_key_share}
    assert owner.secret.hex() not in repr(owner) and pairs[2].to_plaintext().hex() not in repr(pairs[2])


def test_low_order_and_malformed_keys_are_refused():
    own = generate_keypair()
    with pytest.raises(MaskingError):
        masking.pairwise_seed(secrets.token_bytes(16), 1, own, 2, bytes(32))
    with pytest.raises(MaskingError):
        masking.pairwise_seed(secrets.token_bytes(16), 1, own, 2, bytes(31))
    with pytest.raises(MaskingError):
        masking.pairwise_seed(b"short", 1, own, 2, generate_keypair().public)
    with pytest.raises(MaskingError):
        masking.mask_input(np.zeros(3, dtype=np.int64), round_id=bytes(16), index=1, mask_keys=own,
                           self_mask_seed=bytes(32), neighbour_publics={})


def test_pairwise_seeds_agree_and_are_bound_to_the_round():
    a, b = generate_keypair(), generate_keypair()
    round_one, round_two = secrets.token_bytes(16), secrets.token_bytes(16)
    assert masking.pairwise_seed(round_one, 3, a, 8, b.public) == masking.pairwise_seed(round_one, 8, b, 3, a.public)
    assert masking.pairwise_seed(round_one, 3, a, 8, b.public) != masking.pairwise_seed(round_two, 3, a, 8, b.public)
    assert masking.mask_sign(3, 8) == 1 and masking.mask_sign(8, 3) == -1


# ---------------------------------------------------------------- envelopes

@pytest.fixture
def sealed():
    round_id = secrets.token_bytes(16)
    alice, bob, carol = generate_keypair(), generate_keypair(), generate_keypair()
    message = secrets.token_bytes(masking.SharePair.PLAINTEXT_BYTES)
    box = envelope.seal(message, round_id=round_id, sender=1, receiver=2, sender_channel=alice,
                        receiver_public=bob.public)
    return round_id, alice, bob, carol, message, box


def test_an_envelope_opens_for_its_receiver_only(sealed):
    round_id, alice, bob, carol, message, box = sealed
    assert envelope.open_envelope(box, round_id=round_id, receiver=2, receiver_channel=bob,
                                  sender_public=alice.public) == message
    assert message not in box.ciphertext
    with pytest.raises(EnvelopeTampered):  # carol claims to be receiver 2 with her own key
        envelope.open_envelope(box, round_id=round_id, receiver=2, receiver_channel=carol, sender_public=alice.public)


def test_tampered_envelopes_are_rejected(sealed):
    round_id, alice, bob, carol, message, box = sealed
    flipped = bytearray(box.ciphertext)
    flipped[5] ^= 1
    cases = [
        box.__class__(box.round_id, box.sender, box.receiver, box.nonce, bytes(flipped)),
        box.__class__(box.round_id, box.sender, box.receiver, secrets.token_bytes(12), box.ciphertext),
        box.__class__(box.round_id, box.sender, box.receiver, box.nonce, box.ciphertext[:-1]),
        box.__class__(box.round_id, 3, box.receiver, box.nonce, box.ciphertext),  # forged sender
    ]
    for case in cases:
        with pytest.raises(EnvelopeTampered):
            envelope.open_envelope(case, round_id=round_id, receiver=2, receiver_channel=bob,
                                   sender_public=alice.public)


def test_replayed_and_redirected_envelopes_are_rejected(sealed):
    round_id, alice, bob, carol, message, box = sealed
    later = secrets.token_bytes(16)
    with pytest.raises(EnvelopeMisdirected, match="replay"):
        envelope.open_envelope(box, round_id=later, receiver=2, receiver_channel=bob, sender_public=alice.public)
    relabelled = box.__class__(later, box.sender, box.receiver, box.nonce, box.ciphertext)
    with pytest.raises(EnvelopeTampered):  # the header edited to match the new round
        envelope.open_envelope(relabelled, round_id=later, receiver=2, receiver_channel=bob, sender_public=alice.public)
    with pytest.raises(EnvelopeMisdirected, match="addressed"):
        envelope.open_envelope(box, round_id=round_id, receiver=3, receiver_channel=carol, sender_public=alice.public)
    redirected = box.__class__(box.round_id, box.sender, 3, box.nonce, box.ciphertext)
    with pytest.raises(EnvelopeTampered):
        envelope.open_envelope(redirected, round_id=round_id, receiver=3, receiver_channel=carol,
                               sender_public=alice.public)
    assert issubclass(EnvelopeTampered, SyncError) and issubclass(EnvelopeMisdirected, SyncError)


# ---------------------------------------------------------------- wire format

def _messages(round_id: bytes) -> list:
    channel, mask = generate_keypair(), generate_keypair()
    box = envelope.seal(bytes(masking.SharePair.PLAINTEXT_BYTES), round_id=round_id, sender=4, receiver=9,
                        sender_channel=channel, receiver_public=generate_keypair().public)
    return [
        protocol.AdvertiseKeys(round_id, 4, channel.public, mask.public),
        protocol.ShareKeys(round_id, 4, (box,)),
        protocol.MaskedInput(round_id, 4, np.arange(7, dtype=np.uint32) * 613566756),
        protocol.UnmaskingShares(round_id, 4, (protocol.RevealedShare(9, protocol.ShareKind.MASK_KEY, FIELD_PRIME - 1),
                                               protocol.RevealedShare(2, protocol.ShareKind.SELF_MASK_SEED, 5))),
    ]


def test_messages_round_trip_with_the_documented_sizes():
    round_id = secrets.token_bytes(16)
    advertise, share, masked, unmask = _messages(round_id)
    sizes = [len(protocol.encode(m)) for m in (advertise, share, masked, unmask)]
    assert sizes == [26 + 64, 26 + 2 + 98, 26 + 4 + 4 * 7, 26 + 2 + 2 * 38]
    for message in (advertise, share, unmask):
        assert protocol.decode(protocol.encode(message), expected_round=round_id) == message
    decoded = protocol.decode(protocol.encode(masked), expected_length=7)
    assert np.array_equal(decoded.values, masked.values) and decoded.values.dtype == np.uint32
    with pytest.raises(ValueError):
        decoded.values[0] = 1  # read-only


def test_malformed_messages_are_rejected_clearly():
    round_id = secrets.token_bytes(16)
    advertise, share, masked, unmask = (protocol.encode(m) for m in _messages(round_id))
    bad = {
        "shorter than": advertise[:10],
        "magic": b"XXXX" + advertise[4:],
        "version": advertise[:4] + b"\x02" + advertise[5:],
        "unknown stage": advertise[:5] + b"\x09" + advertise[6:],
        "trailing": advertise + b"\x00",
        "truncated": share[:-1],
        "exceeds": masked[:26] + (10**9).to_bytes(4, "big"),
        "not a field element": unmask[:-33] + b"\xff" * 33,
        "unknown share kind": unmask[:32] + b"\x07" + unmask[33:],
    }
    for reason, data in bad.items():
        with pytest.raises(ProtocolError, match=reason):
            protocol.decode(data)
    with pytest.raises(ProtocolError, match="stale or replayed"):
        protocol.decode(advertise, expected_round=secrets.token_bytes(16))
    with pytest.raises(ProtocolError, match="expects 8"):
        protocol.decode(masked, expected_length=8)
    with pytest.raises(ProtocolError, match="expected a MASKED_INPUT"):
        protocol.decode(advertise, expected_stage=protocol.Stage.MASKED_INPUT)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        protocol.decode(masked, max_parameters=2)
    duplicate = unmask[:26] + b"\x00\x02" + unmask[28:28 + 38] * 2
    with pytest.raises(ProtocolError, match="never reveal both"):
        protocol.decode(duplicate)
    self_addressed = share[:28] + (4).to_bytes(4, "big") + share[32:]
    with pytest.raises(ProtocolError, match="itself"):
        protocol.decode(self_addressed)
    with pytest.raises(ProtocolError):
        protocol.MaskedInput(round_id, 1, np.zeros((2, 2), dtype=np.uint32))
    with pytest.raises(ProtocolError):
        protocol.AdvertiseKeys(round_id, 0, bytes(32), bytes(32))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=3), st.integers(0, 400), st.binary(max_size=8))
def test_decoding_arbitrary_or_mutated_bytes_only_ever_raises_protocol_error(noise, which, cut, splice):
    round_id = bytes(16)
    valid = protocol.encode(_messages(round_id)[which])
    for data in (noise, valid[:cut] + splice + valid[cut + len(splice):], valid[:26] + noise):
        try:
            message = protocol.decode(data)
        except ProtocolError:
            continue
        assert protocol.decode(protocol.encode(message)) is not None  # anything accepted re-encodes


# ---------------------------------------------------------------- costs

def test_client_round_costs_report_time_and_bytes():
    costs = client_round_costs(parameter_count=2000, cohort_size=100, repeats=1)
    assert costs["neighbours"] == plan_neighbourhood(100).degree
    assert costs["bytes_per_stage"]["masked_input"] == 26 + 4 + 4 * 2000
    assert costs["fixed_overhead_bytes"] < 16 * 1024
    assert 0 < costs["client_seconds"] < 5
