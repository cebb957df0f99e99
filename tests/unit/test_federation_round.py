"""A whole secure-aggregation round of the federation protocol in memory (agent.federation), with dropouts:
masking, envelopes and the wire format.

Fixed seeds appear only here, for reproducible statistics; the product path draws from the OS."""


import secrets

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.federation import envelope, masking, protocol
from agent.federation.clipping import DistributedNoise, clip_to_norm
from agent.federation.errors import (EnvelopeMisdirected, EnvelopeTampered, MaskingError, NotEnoughShares, ProtocolError, SyncError)
from agent.federation.keys import generate_keypair, public_key_of
from agent.federation.neighbourhood import NeighbourGraph, plan_neighbourhood
from agent.federation.quantize import (QuantizationPlan, dequantize_sum, quantize)
from agent.federation.shamir import FIELD_PRIME, Share, reconstruct_secret, split_secret

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
