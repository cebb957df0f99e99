"""Bad input and attacks against the coordinator over real HTTPS: each is refused with a specific 4xx
and leaves the round and the stored state as they were; a client refuses badly signed releases.
A cohort of three is driven stage by stage so every attack lands in the stage it targets."""

from __future__ import annotations

import json
import secrets

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.store import Store
from agent.federation import envelope, masking, protocol
from agent.core.sync.client import CoordinatorLink, CoordinatorPin, CoordinatorRefused, RoundRunner
from agent.federation.errors import EnvelopeTampered
from agent.federation.keys import generate_keypair
from agent.federation.quantize import encode_update
from agent.federation.signing import (AUTH_HEADER, SignatureError, StaleRelease, device_id_of, encode_base64url,
                                     public_bytes, request_payload, sign_request, verify_release)
from agent.server.coordinator import RoundConfig
from sync_harness import POLICY, make_catalog, make_clients, make_person, run_clients
from test_sync_round import (db_url, expected_contributions, query, released,  # noqa: F401 - db_url: a fixture
                             server_for)


class Manual:
    """One client, stage by stage, with the same primitives the product client uses."""

    def __init__(self, server) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.link = CoordinatorLink(server.pin, self.key)
        self.token = server.token
        self.channel, self.mask, self.seed = generate_keypair(), generate_keypair(), masking.new_self_mask_seed()

    def check_in(self, base_version: int) -> None:
        body = json.dumps({"device_public": public_bytes(self.key).hex(), "base_version": base_version,
                           "enrolment_token": self.token}).encode()
        joined = self.link.request("POST", "/v1/checkin", body).json()
        self.round_id, self.index = joined["round_id"], joined["index"]
        self.round = bytes.fromhex(self.round_id)

    def status(self) -> dict:
        return self.link.request("GET", f"/v1/rounds/{self.round_id}/status").json()

    def wait(self, since: str) -> dict:
        for _ in range(60):
            status = self.link.request("GET", f"/v1/rounds/{self.round_id}/status",
                                       params={"since": since, "wait": 2}).json()
            if status["state"] != since:
                return status
        raise AssertionError(f"the round stayed in {since}")

    def post(self, stage: str, body: bytes, round_id: str | None = None):
        return self.link.request("POST", f"/v1/rounds/{round_id or self.round_id}/{stage}", body)

    def get(self, what: str) -> dict:
        return self.link.request("GET", f"/v1/rounds/{self.round_id}/{what}").json()


def refused(call, status: int, code: str, text: str = "") -> CoordinatorRefused:
    with pytest.raises(CoordinatorRefused) as caught:
        call()
    assert (caught.value.status, caught.value.code) == (status, code), str(caught.value)
    assert text in str(caught.value)
    return caught.value


def snapshot(server) -> list:
    """Everything that defines the round's progress (nonces excluded: refused requests may use them up)."""
    return [query(server, "select round_id, state, deadline, reason, released_version from rounds"),
            query(server, "select round_id, idx, device_id, stage, channel_public, mask_public from participants "
                          "order by idx"),
            query(server, "select * from envelopes order by sender, receiver"),
            query(server, "select * from masked_inputs order by idx"),
            query(server, "select * from revealed_shares order by holder, owner"),
            query(server, "select version, body from releases order by version")]


def unauthenticated_variants(key: Ed25519PrivateKey, path: str) -> list[tuple[dict[str, str], str]]:
    """(headers, expected error) for a GET of `path` with the query since=forming&wait=0."""
    target = path + "?since=forming&wait=0"
    good = sign_request(key, "GET", target, b"")[AUTH_HEADER]
    device, timestamp, nonce, signature = good.split(".")
    stale_time = str(int(timestamp) - 301_000)  # outside the 300 s window, correctly signed
    stale = key.sign(request_payload("GET", target, stale_time, nonce, b""))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = nonce[:-1] + alphabet[alphabet.index(nonce[-1]) ^ 1]  # the same 16 bytes, spelled differently
    other_query = sign_request(key, "GET", path + "?since=advertise&wait=0", b"")
    return [
        ({}, "unauthenticated"),
        ({"x-ownrec-device": bytes.fromhex(device_id_of(public_bytes(key))).hex(), "x-ownrec-timestamp": "1",
          "x-ownrec-nonce": "00" * 16, "x-ownrec-signature": "00" * 64}, "unauthenticated"),
        ({AUTH_HEADER: ".".join([device, stale_time, nonce, encode_base64url(stale)])}, "bad_timestamp"),
        ({AUTH_HEADER: ".".join([device, timestamp, twin, signature])}, "bad_nonce"),
        ({AUTH_HEADER: good + "A"}, "malformed_auth"),
        (other_query, "bad_signature"),
    ]


def test_attacks_are_refused_and_leave_the_round_intact(tmp_path, db_url):  # noqa: F811
    with server_for(tmp_path, db_url, min_cohort=3, max_cohort=3) as server:
        clients = [Manual(server) for _ in range(3)]
        base = clients[0].link.latest_release()
        for client in clients:
            client.check_in(base.version)
        first = clients[0]
        config = RoundConfig(**first.wait("forming")["config"])
        plan, graph = config.plan(), config.graph()
        before = snapshot(server)

        # A client in two cohorts, and a stale or unknown round id.
        refused(lambda: first.check_in(base.version), 409, "already_in_cohort")
        # A device arriving while the round runs, and check-ins that are not what the coordinator expects.
        late = Manual(server)
        # (each cohort is released on its own by default: the period on this version has closed)
        refused(lambda: late.check_in(base.version), 409, "release_pending")
        for body in (b"not json", b'{"device_public": "00", "base_version": 1}',
                     json.dumps({"device_public": public_bytes(late.key).hex(), "base_version": "1"}).encode(),
                     json.dumps({"base_version": 1}).encode()):
            refused(lambda body=body: late.link.request("POST", "/v1/checkin", body), 400, "malformed_checkin")
        unknown = secrets.token_hex(16)
        advertise = protocol.encode(protocol.AdvertiseKeys(first.round, first.index, first.channel.public,
                                                           first.mask.public))
        refused(lambda: first.post("advertise-keys", advertise, round_id=unknown), 404, "unknown_round")
        refused(lambda: first.post("advertise-keys", advertise, round_id="not-a-round"), 400, "bad_round_id")
        # Malformed, wrong-stage and wrong-sender messages.
        refused(lambda: first.post("advertise-keys", b"ORSA garbage"), 400, "malformed_message")
        refused(lambda: first.post("advertise-keys", advertise[:-1]), 400, "malformed_message", "truncated")
        refused(lambda: first.post("share-keys", advertise), 409, "wrong_stage")
        wrong_sender = protocol.encode(protocol.AdvertiseKeys(first.round, first.index % 3 + 1, first.channel.public,
                                                              first.mask.public))
        refused(lambda: first.post("advertise-keys", wrong_sender), 403, "wrong_sender")
        # Oversized: refused from its declared length, before it is read.
        refused(lambda: first.post("advertise-keys", bytes(600_000)), 413, "too_large")
        # Tampered in transit: the body no longer matches the signature.
        path = f"/v1/rounds/{first.round_id}/advertise-keys"
        headers = sign_request(first.key, "POST", path, advertise)
        tampered = first.link.http.post(path, content=advertise[:-1] + bytes([advertise[-1] ^ 1]), headers=headers)
        assert tampered.status_code == 401 and tampered.json()["error"] == "bad_signature"
        # A request from a device that never checked in.
        stranger = Manual(server)
        stranger.round_id = first.round_id
        refused(lambda: stranger.status(), 401, "unknown_device")
        # Authentication headers that are missing, of the old four-header form, stale, non-canonical, or
        # signed for another query; and a check-in registering a key that is not the signer's.
        status_path = f"/v1/rounds/{first.round_id}/status"
        for headers, code in unauthenticated_variants(first.key, status_path):
            answer = first.link.http.get(status_path + "?since=forming&wait=0", headers=headers)
            assert (answer.status_code, answer.json()["error"]) == (401, code), (headers, answer.text)
        other = Ed25519PrivateKey.generate()
        checkin = json.dumps({"device_public": public_bytes(other).hex(), "base_version": base.version}).encode()
        answer = stranger.link.http.post("/v1/checkin", content=checkin,
                                         headers=sign_request(stranger.key, "POST", "/v1/checkin", checkin))
        assert (answer.status_code, answer.json()["error"]) == (401, "wrong_device")
        # The three in the round, and `late`: a signed check-in registers its key even when the round refuses
        # it (release_pending); a wrong key registers nothing.
        assert query(server, "select count(*) from devices") == [(4,)]
        assert snapshot(server) == before

        # A replay of an accepted request is refused, and changes nothing.
        headers = sign_request(first.key, "POST", path, advertise)
        assert first.link.http.post(path, content=advertise, headers=headers).status_code == 200
        accepted = snapshot(server)
        replay = first.link.http.post(path, content=advertise, headers=headers)
        assert replay.status_code == 409 and replay.json()["error"] == "replayed_request"
        refused(lambda: first.post("advertise-keys", advertise), 409, "already_submitted")
        assert snapshot(server) == accepted
        for client in clients[1:]:
            client.post("advertise-keys", protocol.encode(protocol.AdvertiseKeys(
                client.round, client.index, client.channel.public, client.mask.public)))
        assert first.wait("advertise")["state"] == "share"

        # Stage 2: envelopes must go to exactly the advertised neighbours.
        sealed, held = {}, {}
        for client in clients:
            keys = {int(j): (bytes.fromhex(k["channel"]), bytes.fromhex(k["mask"]))
                    for j, k in client.get("neighbour-keys")["neighbours"].items()}
            client.keys = keys
            pairs = masking.share_secrets(client.mask, client.seed, sorted(keys), plan)
            sealed[client.index] = tuple(envelope.seal(
                pairs[j].to_plaintext(), round_id=client.round, sender=client.index, receiver=j,
                sender_channel=client.channel, receiver_public=keys[j][0]) for j in sorted(keys))
        before = snapshot(server)
        partial = protocol.encode(protocol.ShareKeys(first.round, first.index, sealed[first.index][:1]))
        refused(lambda: first.post("share-keys", partial), 400, "wrong_receivers")
        assert snapshot(server) == before
        for client in clients:
            client.post("share-keys", protocol.encode(protocol.ShareKeys(client.round, client.index,
                                                                         sealed[client.index])))
        assert first.wait("share")["state"] == "masked"

        # Stage 3: a tampered envelope does not open; wrong-length inputs are refused.
        for client in clients:
            received = client.get("envelopes")
            held[client.index] = {}
            for item in received["envelopes"]:
                sealed_envelope = envelope.SealedEnvelope(
                    round_id=client.round, sender=item["sender"], receiver=client.index,
                    nonce=bytes.fromhex(item["nonce"]), ciphertext=bytes.fromhex(item["ciphertext"]))
                opened = envelope.open_envelope(sealed_envelope, round_id=client.round, receiver=client.index,
                                                receiver_channel=client.channel,
                                                sender_public=client.keys[item["sender"]][0])
                held[client.index][item["sender"]] = masking.SharePair.from_plaintext(client.index, opened)
                flipped = bytearray(sealed_envelope.ciphertext)
                flipped[5] ^= 0x40
                with pytest.raises(EnvelopeTampered):
                    envelope.open_envelope(envelope.SealedEnvelope(
                        sealed_envelope.round_id, sealed_envelope.sender, sealed_envelope.receiver,
                        sealed_envelope.nonce, bytes(flipped)), round_id=client.round, receiver=client.index,
                        receiver_channel=client.channel, sender_public=client.keys[item["sender"]][0])
        before = snapshot(server)
        short = protocol.encode(protocol.MaskedInput(first.round, first.index,
                                                     np.zeros(config.parameters - 1, np.uint32)))
        refused(lambda: first.post("masked-input", short), 400, "malformed_message", f"expects {config.parameters}")
        refused(lambda: first.post("masked-input", protocol.encode(protocol.MaskedInput(
            first.round, first.index, np.zeros(config.parameters, np.uint32)))[:-2]), 400, "malformed_message")
        assert snapshot(server) == before
        for client in clients:
            update = encode_update(np.random.default_rng(client.index).normal(size=config.parameters) * 0.1,
                                   config.noise(), config.quantization())
            masked = masking.mask_input(update.values, round_id=client.round, index=client.index,
                                        mask_keys=client.mask, self_mask_seed=client.seed,
                                        neighbour_publics={j: k[1] for j, k in client.keys.items()})
            client.post("masked-input", protocol.encode(protocol.MaskedInput(client.round, client.index, masked)))
        assert first.wait("masked")["state"] == "unmask"

        # Stage 4: asking for both secrets of one client is refused.
        survivors = set(first.get("survivors")["survivors"])
        assert survivors == {1, 2, 3}
        before = snapshot(server)
        wrong_kind = protocol.encode(protocol.UnmaskingShares(first.round, first.index, tuple(
            protocol.RevealedShare(owner, protocol.ShareKind.MASK_KEY, pair.mask_key_share.value)
            for owner, pair in sorted(held[first.index].items()))))
        refused(lambda: first.post("unmasking", wrong_kind), 400, "wrong_share_kind", "never both")
        assert snapshot(server) == before
        for client in clients:
            revealed = masking.shares_to_reveal(held[client.index], survivors, set(), plan)
            client.post("unmasking", protocol.encode(protocol.UnmaskingShares(client.round, client.index, tuple(
                protocol.RevealedShare(owner, protocol.ShareKind.SELF_MASK_SEED, share.value)
                for owner, share in sorted(revealed.items())))))
        assert first.wait("unmask")["state"] == "done"
        release = first.link.latest_release(newer_than=base.version)
        assert release.version == 2 and release.metadata["summands"] == 3

        # The finished round's id is now stale, and so is a check-in for the version it replaced.
        refused(lambda: first.post("unmasking", wrong_kind), 409, "stale_round")
        finished = snapshot(server)
        refused(lambda: late.check_in(base.version), 409, "stale_base", "version 2")
        assert snapshot(server) == finished
        assert graph.plan.cohort_size == 3


def test_a_client_refuses_a_badly_signed_or_stale_release(tmp_path):
    with server_for(tmp_path, None, min_cohort=3, max_cohort=3) as server:
        link = CoordinatorLink(server.pin, Ed25519PrivateKey.generate())
        good = link.request("GET", "/v1/releases/latest", signed=False).content
        key = server.pin.signing_public_key
        assert verify_release(good, key).version == 1
        flipped = bytearray(good)
        flipped[-100] ^= 1  # a parameter value changed after signing
        with pytest.raises(SignatureError, match="not signed by the pinned coordinator key"):
            verify_release(bytes(flipped), key)
        with pytest.raises(SignatureError):
            verify_release(good, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
        with pytest.raises(StaleRelease, match="rollback"):
            verify_release(good, key, newer_than=1)

        # A client whose pin names another signing key refuses to take part at all.
        impostor = CoordinatorPin(server.pin.url, Ed25519PrivateKey.generate().public_key().public_bytes_raw(),
                                  server.pin.tls_certificate)
        store = Store.memory()
        wrong_link = CoordinatorLink(impostor, Ed25519PrivateKey.generate())
        with pytest.raises(SignatureError):
            RoundRunner(wrong_link, store, POLICY).run(make_person(make_catalog(), 1))
        assert list(store.db["sync_ledger"].rows) == [] and list(store.db["sync_releases"].rows) == []
        assert query(server, "select count(*) from participants") == [(0,)]

        # And a coordinator with another TLS certificate is not reached at all.
        other = tmp_path / "other"
        from agent.server.app import ensure_tls_certificate
        cert, _ = ensure_tls_certificate(other, ["127.0.0.1"])
        unpinned = CoordinatorLink(CoordinatorPin(server.pin.url, key, cert.read_text()), Ed25519PrivateKey.generate())
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            unpinned.latest_release()
        for opened in (link, wrong_link, unpinned):
            opened.close()


def test_no_round_starts_beyond_the_privacy_budget(tmp_path):
    # One round at z = 1 costs epsilon 4.38 at delta 1e-5: a budget of 3 allows none.
    with server_for(tmp_path, None, min_cohort=3, max_cohort=3, epsilon_budget=3.0) as server:
        client = Manual(server)
        refused(lambda: client.check_in(1), 403, "budget_exhausted", "budget of 3 per device")
        assert query(server, "select count(*) from rounds") == [(0,)]
        assert query(server, "select version from releases") == [(1,)]


class TamperingLink(CoordinatorLink):
    """A malicious client's link: flips one bit of the ciphertext of its first envelope before signing and
    sending its share-keys message. The coordinator cannot tell (it never opens envelopes); the receiver can."""

    victims: list[int] = []

    def build(self, method, path, body=b"", params=None, signed=True):
        if path.endswith("/share-keys"):
            message = protocol.decode(body)
            TamperingLink.victims.append(message.envelopes[0].receiver)
            flipped = bytearray(body)
            flipped[protocol.HEADER.size + protocol.COUNT.size + 4 + envelope.NONCE_BYTES + 5] ^= 0x40
            body = bytes(flipped)
        return super().build(method, path, body, params, signed)


def test_a_tampered_envelope_is_refused_by_its_receiver_and_the_round_still_releases(tmp_path):
    catalog = make_catalog()
    clients = make_clients(20, catalog)
    tamperer = clients[4]
    TamperingLink.victims = []
    with server_for(tmp_path, None, stage_timeout=30.0) as server:
        run_clients(server, clients, link_class=lambda c: TamperingLink if c is tamperer else CoordinatorLink)
        assert [repr(c.error) for c in clients if c.error] == []
        (victim_index,) = TamperingLink.victims
        by_index = {c.outcome.index: c for c in clients}
        victim = by_index[victim_index]
        # The receiver refused the envelope (EnvelopeTampered) and went on; nobody else refused anything.
        assert victim.outcome.refused_envelopes == [tamperer.outcome.index]
        assert all(c.outcome.refused_envelopes == [] for c in clients if c is not victim)
        assert {c.outcome.state for c in clients} == {"released"}
        # The tamperer's self mask was rebuilt from its other neighbours' shares: every input counts.
        base, new = released(server, 1), released(server, 2)
        contributions, quantization = expected_contributions(clients, base.vector, base.layout, 20)
        assert new.metadata["summands"] == 20
        assert np.max(np.abs(new.vector - base.vector - np.mean(list(contributions.values()), axis=0))) \
            <= quantization.step
