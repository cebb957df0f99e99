"""The device's adoption check (agent.core.sync.adoption): a new release is adopted, blended or kept out by
how the person's latest likes, held out, rank with it; what is in use is recomputed from signed releases.
A person on the MovieLens demo catalog who likes horror films, whose feed starts from release 0 (the
public prior the demo builds); releases are release 0 plus a change, in its layout (as from a coordinator
started with `--prior`), signed here with a key the device has pinned (the round trip over HTTPS is
tests/unit/test_sync_never_worse.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_harness import genre_person

from agent.cli import cli
from agent.core.store import Interaction
from agent.core.sync import adoption
from agent.core.sync.parameters import unflatten
from agent.federation.clipping import DistributedNoise, NoiseCheck
from agent.federation.signing import sign_release, verify_release
from agent.server.app import default_layout, ensure_tls_certificate


# -- what is held out ------------------------------------------------------------------------------------


def events(kinds: list[str]) -> list[Interaction]:
    return [Interaction(id=k + 1, item_id=k + 1, kind=kind, value=None, at=float(k + 1), origin="cli")
            for k, kind in enumerate(kinds)]


def test_the_latest_likes_are_held_out_at_most_one_in_four_and_never_uploaded():
    assert adoption.held_out_likes(events(["like"] * 19)) == []  # 4 would be held out: too few to judge by
    assert adoption.held_out_likes(events(["like"] * 20)) == [16, 17, 18, 19, 20]
    assert adoption.held_out_likes(events(["like"] * 30)) == list(range(24, 31))
    assert adoption.held_out_likes(events(["like"] * 100)) == list(range(91, 101))
    history = events(["like"] * 20 + ["dislike"] * 3 + ["open"])
    assert adoption.held_out_likes(history) == [16, 17, 18, 19, 20]  # likes by the one rule, not dislikes or opens
    labels = adoption.upload_labels(history)
    assert sorted(labels) == list(range(1, 16)) + [21, 22, 23, 24]
    assert labels[21] == -1.0 and labels[24] == pytest.approx(0.3)


# -- the check --------------------------------------------------------------------------------------------


KEY = Ed25519PrivateKey.generate()


def release(agent, version: int, change: np.ndarray, **metadata) -> "adoption.Release":
    """Release 0 of `agent` plus `change`, signed, in release 0's layout."""
    prior = agent.prior()
    meta = {"round_id": "ab" * 16, **metadata}
    body = sign_release(KEY, version, meta, prior.layout, prior.vector + change)
    return verify_release(body, KEY.public_key().public_bytes_raw())


# The signed figures of rounds at noise multiplier 1 and clip norm 1 over the MovieLens vocabulary: 943
# summands carry less noise than signal (expected norm 0.314), 5 far more (55.5).
QUIET = {"clip_norm": 1.0, "noise_multiplier": 1.0, "min_contributors": 661, "summands": 943}
NOISY = {"clip_norm": 1.0, "noise_multiplier": 1.0, "min_contributors": 4, "summands": 5}


@pytest.fixture(scope="module")
def horror(tmp_path_factory, demo_database, encoder):
    person = genre_person(tmp_path_factory.mktemp("horror") / "device", demo_database, encoder, "Horror", seed=0)
    yield person
    person.agent.close()


def person_of(agent) -> adoption.Person:
    interactions = agent.store.interactions()
    return adoption.Person(agent.catalog(), agent.personal_adapter(), interactions,
                           {e.item_id for e in interactions} | agent.store.judged_item_ids())


def genre_biases(agent, genre: str, bias: float, others: float = 0.0, count: int = 0) -> np.ndarray:
    """A change of the shared vector (release 0's layout): item bias `bias` on every film of `genre`, and
    `others` on `count` films outside it."""
    layout = agent.prior().layout
    refs = {item.ref for item in agent.store.items() if genre in item.metadata.get("genres", [])}
    vector = layout.zeros()
    biases = vector[slice(*layout.split_points())]
    outside = [i for i, ref in enumerate(layout.refs) if ref not in refs]
    biases[[i for i, ref in enumerate(layout.refs) if ref in refs]] = bias
    biases[np.random.default_rng(0).choice(outside, count, replace=False)] = others
    return vector


def decide(agent, candidate) -> adoption.Decision:
    """The check of `candidate` against release 0, in use with no release adopted."""
    prior = agent.prior()
    current = adoption.current_for(candidate, adoption.InUse("key"), None, prior, agent.global_adapter())
    assert current.blend_from is not None and current.base == prior.digest()
    return adoption.decide(person_of(agent), current, candidate)


def test_a_release_that_pushes_the_likes_down_is_kept_out(horror):
    decision = decide(horror.agent, release(horror.agent, 2, genre_biases(horror.agent, "Horror", -1.0), **QUIET))
    assert decision.action == "kept" and decision.t == 0.0 and decision.held_out == 7
    assert decision.candidate.outranked < decision.in_use.outranked - 0.1  # horror sinks below many films
    assert [t for t, _ in decision.blends] == [0.5, 0.25, 0.1]
    assert all(r.hurts(decision.in_use) for _, r in decision.blends)
    assert decision.message.startswith("version 2 would rank your 7 latest likes (held out) lower (")
    assert decision.message.endswith("; each share of its change tried (0.5, 0.25, 0.1) would rank them lower: kept it "
                                     "out; still using no release (release 0, the public prior)")
    assert decision.after == "no release (release 0, the public prior)"


def test_a_release_that_lifts_the_likes_is_adopted(horror):
    decision = decide(horror.agent, release(horror.agent, 2, genre_biases(horror.agent, "Horror", 1.0), **QUIET))
    assert decision.action == "adopted" and decision.t == 1.0 and decision.after == "version 2"
    assert decision.chosen == decision.candidate and decision.candidate.outranked > decision.in_use.outranked
    assert decision.message == (f"version 2 adopted: your 7 latest likes (held out) rank no lower with it, within "
                                f"the check's tolerance ({decision.in_use.text()} → {decision.candidate.text()})")


def test_a_release_that_hurts_whole_but_helps_in_part_is_blended(horror):
    # Horror films up by 1, and 100 other films up by 4: whole, those 100 pass the held-out likes; a quarter
    # of it lifts the likes more than it lifts those.
    vector = genre_biases(horror.agent, "Horror", 1.0, others=4.0, count=100)
    decision = decide(horror.agent, release(horror.agent, 2, vector, **QUIET))
    assert decision.action == "blended" and decision.t == 0.25
    assert decision.candidate.hurts(decision.in_use) and not decision.chosen.hurts(decision.in_use)
    assert decision.chosen.outranked > decision.in_use.outranked
    assert "0.25 of its change ranks them no lower" in decision.message
    assert decision.after == "0.25 of version 2's change from release 0, the public prior"


def test_a_release_with_more_noise_than_signal_is_never_taken_whole(horror):
    # Even a release that lifts the likes is capped at the share whose noise is within its signal bound.
    check = NoiseCheck.of(DistributedNoise(1.0, 1.0, 4), horror.agent.prior().layout.size, 5)
    decision = decide(horror.agent, release(horror.agent, 2, genre_biases(horror.agent, "Horror", 1.0), **NOISY))
    cap = 1.0 / check.noise_norm
    assert decision.noise == check and decision.action == "blended" and decision.t == pytest.approx(cap)
    assert decision.message.startswith(f"version 2 carries more noise than any signal it could (expected norm "
                                       f"{check.noise_norm:.3g}, at most 1), so at most {cap:.3g} of its change")


def test_with_too_few_likes_only_a_release_vouched_for_by_its_figures_is_adopted(tmp_path, demo_database, encoder):
    person = genre_person(tmp_path / "device", demo_database, encoder, "Sci-Fi", seed=1, likes=12)
    try:
        decision = decide(person.agent, release(person.agent, 2, genre_biases(person.agent, "Sci-Fi", -1.0), **QUIET))
        # no check: the likes are too few to hold any out (the release would hurt, and nothing can tell)
        assert decision.action == "adopted" and decision.held_out == 0 and decision.in_use is None
        assert decision.message.startswith("version 2 adopted without a check: too few likes to judge it by (12; a "
                                           "check holds out 5 of at least 20), and its signed figures show its noise "
                                           "(expected norm 0.314) no larger than any signal it could carry (at most 1)")
        lift = genre_biases(person.agent, "Sci-Fi", 1.0)  # a change that an identical release would not make
        decision = decide(person.agent, release(person.agent, 2, lift, **NOISY))
        assert decision.action == "kept"
        assert "its noise (expected norm 55.5) is larger than any signal" in decision.message
        decision = decide(person.agent, release(person.agent, 2, lift))  # no figures: nothing vouches for it
        assert decision.action == "kept" and "does not carry the figures" in decision.message
        decision = decide(person.agent, release(person.agent, 1, 0.0, round_id=None))
        assert decision.action == "adopted" and "the coordinator's starting point" in decision.message
        # A release in another layout than release 0 (a coordinator that did not start from it): nothing says
        # it is better than release 0, which stays.
        other = default_layout()
        body = sign_release(KEY, 2, {"round_id": "ab" * 16, **QUIET}, other, other.zeros())
        elsewhere = verify_release(body, KEY.public_key().public_bytes_raw())
        current = adoption.current_for(elsewhere, adoption.InUse("key"), None, person.agent.prior(),
                                       person.agent.global_adapter())
        decision = adoption.decide(person_of(person.agent), current, elsewhere)
        assert decision.action == "kept" and decision.message == (
            "version 2 kept out: too few likes to judge it by (12; a check holds out 5 of at least 20), and it is "
            "not built on the public prior (release 0) this device uses; still using no release (release 0, the "
            "public prior)")
    finally:
        person.agent.close()


# -- through the facade: what is in use, the log and the status ------------------------------------------


def pin_agent(agent, tmp_path) -> str:
    """Pin a coordinator whose releases are signed with KEY (nothing is ever sent to it here)."""
    cert, _ = ensure_tls_certificate(tmp_path / "tls", ["127.0.0.1"])
    pin = tmp_path / "pin.json"
    key = KEY.public_key().public_bytes_raw().hex()
    pin.write_text(json.dumps({"url": "https://127.0.0.1:1", "signing_public_key": key,
                               "tls_certificate": cert.read_text()}))
    agent.join_sync(pin)
    agent.set_sync(True, "cli")
    return key


def shared(agent, change) -> dict:
    """The item biases of release 0 plus `change`, as the feed's global adapter holds them."""
    prior = agent.prior()
    return unflatten(prior.layout, prior.vector + change).item_bias


def test_the_feed_uses_what_was_adopted_recomputed_from_signed_releases(tmp_path, demo_database, encoder):
    person = genre_person(tmp_path / "device", demo_database, encoder, "Horror", seed=0)
    agent = person.agent
    try:
        key = pin_agent(agent, tmp_path)
        assert agent.check_new_release() is None  # nothing stored
        assert agent.sync_status().in_use == "no release (release 0, the public prior)"
        held = adoption.held_out_likes(agent.store.interactions())
        uploaded = agent.sync_scheduler().training_data().labels  # what a round would train its upload on
        assert len(held) == 7 and not set(held) & set(uploaded) and len(uploaded) == 40 - 7

        first = genre_biases(agent, "Horror", 1.0, others=4.0, count=100)
        agent.store.store_release(key, 2, release(agent, 2, first, **QUIET).raw)
        decision = agent.check_new_release()
        assert (decision.action, decision.t) == ("blended", 0.25)
        assert agent.global_adapter().item_bias == pytest.approx(shared(agent, 0.25 * first))
        assert agent.check_new_release() is None  # decided once

        second = genre_biases(agent, "Horror", -1.0, others=4.0, count=100)
        agent.store.store_release(key, 3, release(agent, 3, second, **QUIET).raw)
        decision = agent.check_new_release()
        assert decision.action == "kept" and decision.before == decision.after == \
            "0.25 of version 2's change from release 0, the public prior"
        agent.store.store_release(key, 4, release(agent, 4, genre_biases(agent, "Horror", 1.0), **QUIET).raw)
        decision = agent.check_new_release()
        assert decision.action == "adopted" and agent.sync_status().in_use == "version 4"
        assert agent.global_adapter().item_bias == pytest.approx(shared(agent, genre_biases(agent, "Horror", 1.0)))

        shown = CliRunner(env={"OWNREC_HOME": str(agent.home.root)}).invoke(cli, ["sync", "log"]).output
        assert "rounds and releases, newest first:" in shown
        assert shown.index("version 4 adopted:") < shown.index("version 3 would rank") < shown.index(
            "0.25 of its change ranks them no lower")
        status = CliRunner(env={"OWNREC_HOME": str(agent.home.root)}).invoke(cli, ["sync", "status"]).output
        assert "shared adapter in use: version 4" in status
    finally:
        agent.close()


def test_a_blend_whose_release_no_longer_verifies_falls_back_to_what_was_in_use_before(tmp_path, demo_database,
                                                                                          encoder):
    person = genre_person(tmp_path / "device", demo_database, encoder, "Horror", seed=0)
    agent = person.agent
    try:
        key = pin_agent(agent, tmp_path)
        whole = genre_biases(agent, "Horror", 1.0)
        agent.store.store_release(key, 2, release(agent, 2, whole, **QUIET).raw)
        assert agent.check_new_release().action == "adopted"
        blend = genre_biases(agent, "Horror", 2.0, others=5.0, count=100)  # from version 2: +1 and +5
        agent.store.store_release(key, 3, release(agent, 3, blend, **QUIET).raw)
        decision = agent.check_new_release()
        assert decision.action == "blended" and decision.after.startswith("version 2, then ")
        composed = whole + decision.t * (blend - whole)
        assert agent.global_adapter().item_bias == pytest.approx(shared(agent, composed))
        # An unsigned vector on disk is never loaded: a release in the chain that fails is refused, logged, and
        # the steps before it are used.
        body = bytearray(agent.store.stored_release(key, 3))
        body[-1] ^= 1
        agent.store.db.execute("update sync_releases set body = ? where version = 3", [bytes(body)])
        agent.refresh_global_adapter()
        assert agent.global_adapter().item_bias == pytest.approx(shared(agent, whole))
        refused = [json.loads(e["payload"]) for e in agent.store.events() if e["kind"] == "global_adapter_refused"]
        assert refused[0]["version"] == 3 and "not signed by the pinned" in refused[0]["problem"]
    finally:
        agent.close()


def test_a_release_identical_to_what_is_in_use_is_taken_as_changing_nothing(horror):
    # As a DP round shrunk to nothing releases: the shared numbers in use, unchanged. No ranking is run,
    # and the message claims no check.
    decision = decide(horror.agent, release(horror.agent, 2, horror.agent.prior().layout.zeros(), **NOISY))
    assert decision.action == "adopted" and decision.t == 1.0 and decision.after == "version 2"
    assert decision.in_use is None and decision.candidate is None
    assert decision.message == ("version 2 adopted: its shared numbers are exactly those of what is in use, "
                                "no release (release 0, the public prior), so it changes nothing in your feed")
