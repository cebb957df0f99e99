"""The public prior, "release 0" (issue 18, part 2): phi_g learned from public interactions, its file, its
use by the Agent while no federation release is in use, the `ownrec prior` commands, and a coordinator that
starts from it."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.cli import cli
from agent.core.importers.base import ImportFailed
from agent.core.importers.demo import movielens_ratings
from agent.core.importers.public_ratings import demo_public_ratings, read_public_ratings
from agent.core.ranker import Catalog, GlobalAdapter, PersonalAdapter, Scorer, TrainingSettings, fit
from agent.core.ranker.adapters import DEFAULT_SIGNAL_WEIGHTS
from agent.core.ranker.prior import PriorSettings, PublicInteractions, build_prior
from agent.core.sync import consent
from agent.core.sync.parameters import unflatten
from agent.core.sync.prior import MIN_PEOPLE, RANK, RESIDUAL_RANK, PriorUnavailable, build_release_zero
from agent.federation.errors import ConfigurationError
from agent.federation.layout import SharedLayout
from agent.federation.prior import MAGIC, Prior
from agent.federation.signing import SignatureError, verify_release
from agent.server.app import build_coordinator, ensure_tls_certificate, write_pin
from agent.server.coordinator import Coordinator, CoordinatorSettings
from agent.server.state import SQLiteStorage
from helpers import GENRES, catalog, onboarded_agent
from import_helpers import write

FAST = PriorSettings(epochs=30, learning_rate=0.05)


def _catalog(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return Catalog(np.arange(1, n + 1), [f"t:{i}" for i in range(n)], X)


# -- learning phi_g from public interactions ------------------------------------------------------


def test_public_interactions_number_people_by_first_appearance_and_count_a_pair_once():
    public = PublicInteractions.from_pairs([("ann", 3), ("bob", 1), ("ann", 3), ("ann", 2), (7, 1), ("bob", 1)])
    assert public.person.tolist() == [0, 1, 0, 2] and public.row.tolist() == [3, 1, 2, 1]
    assert public.people == 3 and public.person.dtype == np.int64
    assert PublicInteractions.from_pairs([]).people == 0


CLUSTER_A, CLUSTER_B = np.arange(0, 25), np.arange(30, 55)  # 25-29 and 55-59 are never chosen
POPULAR = (0, 30)  # chosen by everyone in their group


def _two_groups(n_people=40, seed=0):
    """Half the public people choose only items of cluster A, the other half only items of cluster B."""
    rng = np.random.default_rng(seed)
    pairs = []
    for person in range(n_people):
        group, favourite = (CLUSTER_A, POPULAR[0]) if person < n_people // 2 else (CLUSTER_B, POPULAR[1])
        pairs += [(f"p{person}", int(row)) for row in rng.choice(group[1:], 10, replace=False)]
        pairs.append((f"p{person}", favourite))
    return PublicInteractions.from_pairs(pairs)


def _prior(catalog, public, settings=FAST, **kwargs):
    layout = SharedLayout.create(catalog.dim, 4, catalog.refs, np.random.default_rng(1), residual_rank=8)
    return build_prior(catalog, public, layout.projection, layout.residual_basis, settings, **kwargs), layout


def _after_one_like(catalog, global_adapter, liked_row):
    scorer = Scorer(catalog, global_adapter)
    person, _ = fit(PersonalAdapter.fresh(catalog.dim, 4), scorer, {int(catalog.ids[liked_row]): 1.0},
                    TrainingSettings(epochs=60))
    return scorer.scores(person)


def test_the_prior_learns_which_items_go_together_and_which_are_chosen():
    catalog = _catalog(60, 16)
    prior, layout = _prior(catalog, _two_groups())
    assert prior.A.shape == (4, 16) and np.array_equal(prior.A, layout.projection)
    assert np.array_equal(prior.W_v, layout.residual_basis.T) and prior.B.any()
    bias = np.array([prior.item_bias[ref] for ref in catalog.refs])
    never = np.r_[25:30, 55:60]
    assert bias[list(POPULAR)].min() > bias[np.r_[CLUSTER_A[1:], CLUSTER_B[1:]]].mean() > bias[never].max()
    # A newcomer likes one item of cluster A. The text vectors are random, so without the prior the rest of
    # the cluster is ranked like any other item; with it, the cluster comes first.
    liked = 5
    others = np.array([row for row in range(60) if row != liked])
    shares = {}
    for name, adapter in (("prior", prior), ("none", GlobalAdapter.identity(16, rank=4))):
        scores = _after_one_like(catalog, adapter, liked)
        top = others[np.argsort(-scores[others])[:20]]
        shares[name] = np.isin(top, CLUSTER_A).mean()
    assert shares["prior"] >= 0.8 and shares["prior"] >= shares["none"] + 0.3, shares


def test_the_prior_is_repeatable_reports_progress_and_learns_around_the_signal_offset():
    catalog, public = _catalog(60, 16), _two_groups()
    calls = []
    first, _ = _prior(catalog, public, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(epoch, FAST.epochs) for epoch in range(1, FAST.epochs + 1)]
    again, _ = _prior(catalog, public)
    assert np.array_equal(first.B, again.B) and first.item_bias == again.item_bias
    other, _ = _prior(catalog, public, PriorSettings(epochs=30, learning_rate=0.05, seed=1))
    assert not np.array_equal(first.B, other.B)
    # What the public signals already say (a fixed score offset) the biases need not learn again.
    offset = np.zeros(60, np.float32)
    offset[list(POPULAR)] = 3.0
    around, _ = _prior(catalog, public, signal_offset=offset)
    assert all(around.item_bias[f"t:{row}"] < first.item_bias[f"t:{row}"] - 0.2 for row in POPULAR)


# -- the prior file -------------------------------------------------------------------------------


def _small_prior(seed=0, header=None):
    layout = SharedLayout.create(8, 2, ["films:1", "films:2", "rss:News Ünïcode"], np.random.default_rng(seed),
                                 residual_rank=2)
    vector = np.random.default_rng(seed + 1).standard_normal(layout.size)
    return Prior(layout, vector, {"source": "ratings.csv", "people": 25} if header is None else header)


def test_a_prior_file_round_trips():
    prior = _small_prior()
    data = prior.to_bytes()
    assert data.startswith(MAGIC)
    back = Prior.from_bytes(data)
    assert back.layout.digest() == prior.layout.digest() and back.layout.refs == prior.layout.refs
    assert back.header == {"source": "ratings.csv", "people": 25}
    assert back.vector.dtype == np.float64 and back.vector.shape == (prior.layout.size,)
    assert np.array_equal(back.vector, prior.vector.astype(np.float32).astype(np.float64))  # stored as float32
    assert back.to_bytes() == data and back.digest() == prior.digest()  # a loaded prior writes the same bytes
    assert _small_prior(seed=1).digest() != prior.digest()


def test_a_prior_refuses_values_that_do_not_fit_its_layout():
    layout = _small_prior().layout
    with pytest.raises(ConfigurationError, match="values"):
        Prior(layout, np.zeros(layout.size + 1))
    for bad in (np.nan, np.inf):
        vector = np.zeros(layout.size)
        vector[3] = bad
        with pytest.raises(ConfigurationError, match="NaN or infinite"):
            Prior(layout, vector)


def test_damaged_prior_files_are_refused():
    prior = _small_prior()
    data = prior.to_bytes()
    for cut in range(len(data)):
        with pytest.raises(ConfigurationError):
            Prior.from_bytes(data[:cut])
    with pytest.raises(ConfigurationError, match="magic"):
        Prior.from_bytes(b"OWNREC-PRIOR-2\n" + data[len(MAGIC):])
    with pytest.raises(ConfigurationError, match="values"):
        Prior.from_bytes(data + b"\0\0\0\0")
    with pytest.raises(ConfigurationError, match="values"):
        Prior.from_bytes(data[:-4])
    nan = data[:-4] + np.array([np.nan], "<f4").tobytes()
    with pytest.raises(ConfigurationError, match="NaN"):
        Prior.from_bytes(nan)
    listed = _small_prior(header={}).to_bytes().replace(b"\x00\x00\x00\x02{}", b"\x00\x00\x00\x02[]")
    with pytest.raises(ConfigurationError, match="JSON object"):
        Prior.from_bytes(listed)
    huge = MAGIC + (1 << 30).to_bytes(4, "big") + data[len(MAGIC) + 4:]
    with pytest.raises(ConfigurationError, match="header"):
        Prior.from_bytes(huge)


def test_every_single_damaged_byte_is_refused_or_still_a_whole_prior():
    data = _small_prior().to_bytes()
    for at in range(len(data)):
        damaged = bytearray(data)
        damaged[at] ^= 0xFF
        try:
            prior = Prior.from_bytes(bytes(damaged))
        except ConfigurationError:
            continue
        assert np.all(np.isfinite(prior.vector)) and prior.vector.size == prior.layout.size, at


# -- release 0 for a device's catalog ----------------------------------------------------------------


def _people(count, rows, seed=0, per_person=6):
    rng = np.random.default_rng(seed)
    return [(f"user-{person}", f"t:{row}") for person in range(count) for row in rng.choice(rows, per_person)]


def test_release_zero_needs_enough_people_with_items_of_this_catalog():
    catalog = _catalog(50, 40)
    with pytest.raises(PriorUnavailable, match=f"{MIN_PEOPLE - 1} people.*at least {MIN_PEOPLE}"):
        build_release_zero(catalog, _people(MIN_PEOPLE - 1, np.arange(50)), "few.csv", PriorSettings(epochs=1))
    # People whose interactions are all with items outside the catalog do not count.
    outsiders = [(f"outsider-{k}", f"elsewhere:{k}") for k in range(5)]
    with pytest.raises(PriorUnavailable, match="few.csv"):
        build_release_zero(catalog, _people(MIN_PEOPLE - 2, np.arange(50)) + outsiders, "few.csv",
                           PriorSettings(epochs=1))


def test_release_zero_covers_the_catalogs_chosen_items_and_says_what_it_was_built_from():
    catalog = _catalog(50, 40)
    interactions = _people(25, np.arange(0, 30)) + [("user-0", "elsewhere:1"), ("user-3", "elsewhere:2"),
                                                    ("user-0", "t:0"), ("user-0", "t:0")]
    unique = {pair for pair in interactions if pair[1].startswith("t:")}
    covered = sorted({int(ref[2:]) for _, ref in unique})
    calls = []
    prior = build_release_zero(catalog, interactions, "public.csv", PriorSettings(epochs=3),
                               progress=lambda done, total: calls.append(done))
    assert calls == [1, 2, 3]
    assert prior.layout.refs == tuple(catalog.refs[row] for row in covered)  # catalog order, chosen items only
    assert (prior.layout.dim, prior.layout.rank, prior.layout.residual_rank) == (40, RANK, RESIDUAL_RANK)
    header = prior.header
    assert {key: header[key] for key in ("source", "people", "interactions", "items", "catalog_items",
                                         "outside_catalog", "epochs")} == {
        "source": "public.csv", "people": 25, "interactions": len(unique), "items": len(covered),
        "catalog_items": 50, "outside_catalog": 2, "epochs": 3}
    assert header["signal_weights"] == list(DEFAULT_SIGNAL_WEIGHTS) and header["seconds"] >= 0
    assert not any("user-" in str(value) for value in header.values())  # nobody's id is kept
    adapter = unflatten(prior.layout, prior.vector)
    assert set(adapter.item_bias) <= set(prior.layout.refs) and adapter.B.any()
    again = build_release_zero(catalog, interactions, "public.csv", PriorSettings(epochs=3))
    assert again.layout.digest() == prior.layout.digest() and np.array_equal(again.vector, prior.vector)


# -- public ratings files -------------------------------------------------------------------------


def test_a_public_ratings_csv_gives_interactions_and_reports_bad_rows(tmp_path):
    path = write(tmp_path / "ratings.csv", "User,Item,rating,at\nu1,films:1,4,2020-01-01\nu1,films:2,,\n"
                 ",films:3,5,\nu2,,3,\nu2,films:1,junk,whenever\n")
    interactions, problems = read_public_ratings(path)
    assert interactions == [("u1", "films:1"), ("u1", "films:2")]  # the rating ignored; file order (u1 has no `at`)
    assert [(p.line, p.message) for p in problems] == [(4, "missing user"), (5, problems[1].message),
                                                       (6, problems[2].message)]
    assert problems[1].message.startswith("missing item") and str(problems[0]) == f"{path}:4: missing user"
    assert problems[2].message.startswith("bad date 'whenever'")
    by_parts = write(tmp_path / "parts.csv", "user,source,id,item\nu1,films,1,\nu2,films,,\nu3,films,2,rss:x\n")
    interactions, problems = read_public_ratings(by_parts)
    assert interactions == [("u1", "films:1"), ("u3", "rss:x")] and [p.line for p in problems] == [3]


def test_public_ratings_come_in_the_order_people_made_them_when_every_row_says_when(tmp_path):
    timed = write(tmp_path / "timed.csv", "user,item,at\nu1,films:3,2021-05-01\nu1,films:1,2020-01-01T10:00:00Z\n"
                  "u2,films:2,1600000000\nu1,films:2,2020-06-01\n")
    interactions, problems = read_public_ratings(timed)
    assert not problems
    assert interactions == [("u1", "films:1"), ("u1", "films:2"), ("u2", "films:2"), ("u1", "films:3")]
    # One row without a time: nothing is reordered (the file's order is each person's order).
    untimed = write(tmp_path / "untimed.csv", "user,item,at\nu1,films:3,2021-05-01\nu1,films:1,\n")
    assert read_public_ratings(untimed)[0] == [("u1", "films:3"), ("u1", "films:1")]


def test_a_public_ratings_jsonl_gives_interactions_and_reports_bad_lines(tmp_path):
    lines = ['{"user": 5, "item": "films:1", "rating": 2}', "", '{"user": "a", "source": "films", "id": 2}',
             "not json", "[1, 2]", '{"item": "films:1"}', '{"user": "b", "source": "films"}']
    for name in ("ratings.jsonl", "ratings.ndjson"):
        interactions, problems = read_public_ratings(write(tmp_path / name, "\n".join(lines) + "\n"))
        assert interactions == [("5", "films:1"), ("a", "films:2")]
        assert [p.line for p in problems] == [4, 5, 6, 7]
        assert "invalid JSON" in problems[0].message and "JSON object" in problems[1].message
        assert problems[2].message == "missing user" and "missing item" in problems[3].message


@pytest.mark.parametrize("text", ["item,rating\nfilms:1,4\n", "user,rating\nu1,4\n", "user,source\nu1,films\n", ""])
def test_a_public_ratings_file_without_user_and_item_columns_fails_as_a_whole(tmp_path, text):
    with pytest.raises(ImportFailed):
        read_public_ratings(write(tmp_path / "ratings.csv", text))


def test_a_missing_public_ratings_file_fails(tmp_path):
    with pytest.raises(ImportFailed, match="no such file"):
        read_public_ratings(tmp_path / "absent.csv")


def test_the_demos_public_ratings_are_the_movielens_ratings():
    interactions = demo_public_ratings()
    first = min(movielens_ratings(), key=lambda rating: rating[3])  # in the order they were made
    assert len(interactions) == 100_000 and interactions[0] == (str(first[0]), f"movielens-100k:{first[1]}")
    assert len({user for user, _ in interactions}) == 943 and len({item for _, item in interactions}) == 1682


# -- the Agent ------------------------------------------------------------------------------------

GENRE_KEYS = [genre[:3].lower() for genre in GENRES]  # sci, coo, mys, rom, wes: refs test:<key>-<i>


def _public_ratings_file(path, people=30, seed=0):
    """Each public person chooses 8 films of one genre and that genre's first film; nobody chooses a Western."""
    rng = np.random.default_rng(seed)
    lines = ["user,item,rating"]
    for person in range(people):
        key = GENRE_KEYS[person % 4]
        for i in [0, *rng.choice(np.arange(1, 24), 8, replace=False)]:
            lines.append(f"u{person},test:{key}-{i},4")
    lines += ["u1,elsewhere:42,5", ",test:sci-1,3"]  # an item outside the catalog; a row without a user
    return write(path, "\n".join(lines) + "\n")


def test_the_agent_builds_uses_exports_and_guards_its_prior(encoder, tmp_path):
    agent = onboarded_agent(encoder, catalog())
    assert agent.prior() is None and agent.prior_status() is None
    assert not agent.global_adapter().item_bias and not agent.global_adapter().B.any()
    with pytest.raises(FileNotFoundError):
        agent.export_prior(tmp_path / "none.bin")
    ratings = _public_ratings_file(tmp_path / "ratings.csv")
    calls = []
    report = agent.build_prior(ratings, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (PriorSettings().epochs, PriorSettings().epochs) and len(calls) == PriorSettings().epochs
    interactions, _ = read_public_ratings(ratings)
    chosen = {ref for _, ref in interactions if ref.startswith("test:")}
    assert (report.source, report.people, report.catalog_items, report.outside_catalog) == ("ratings.csv", 30, 120, 1)
    assert report.interactions == len(set(interactions)) - 1 and report.items == len(chosen)
    assert report.problems == (f"{ratings}:{len(interactions) + 2}: missing user",)
    assert "release 0 from ratings.csv" in report.summary() and "1 more were with items outside" in report.summary()
    status = agent.prior_status()
    assert status.people == 30 and status.items == report.items and status.problems == ()

    prior = agent.prior()
    assert set(prior.layout.refs) == chosen and not any(ref.startswith("test:wes") for ref in prior.layout.refs)
    phi = agent.global_adapter()
    expected = unflatten(prior.layout, prior.vector)
    assert np.array_equal(phi.B, expected.B) and phi.item_bias == expected.item_bias and phi.B.any()
    bias = {ref: agent.scorer().bias[agent.catalog().row_of_ref(ref)] for ref in agent.catalog().refs}
    assert all(value == 0 for ref, value in bias.items() if ref.startswith("test:wes"))  # nobody chose one
    firsts = [bias[f"test:{key}-0"] for key in GENRE_KEYS[:4]]  # chosen by everyone of their genre
    assert min(firsts) > np.mean([bias[ref] for ref in chosen if not ref.endswith("-0")])

    exported = agent.export_prior(tmp_path / "release-0.bin")
    stored = agent.store.priors()
    assert exported.read_bytes() == bytes(stored[0]["body"])
    assert Prior.from_bytes(exported.read_bytes()).digest() == stored[0]["sha256"]

    # The person's own feedback never enters the prior: with likes recorded, the same prior is learned.
    for ref in ("test:wes-1", "test:wes-2", "test:sci-3"):
        agent.feedback(ref, "like")
    agent.build_prior(ratings)
    second = agent.prior()
    assert len(agent.store.priors()) == 2
    assert np.allclose(second.vector, prior.vector, atol=1e-6) and second.layout.digest() == prior.layout.digest()

    # A stored prior altered in the database is refused, logged, and the one before it is used.
    newest, older = agent.store.priors()
    body = bytes(newest["body"])
    agent.store.db.execute("update priors set body = ? where version = ?", [body[:-4] + b"\0\0\0\0", newest["version"]])
    agent.refresh_global_adapter()
    assert agent.prior().digest() == older["sha256"]
    rejected = [json.loads(e["payload"]) for e in agent.store.events() if e["kind"] == "prior_rejected"]
    assert rejected and rejected[0]["version"] == newest["version"] and "checksum" in rejected[0]["error"]

    # Two are kept: a third build drops the oldest.
    agent.build_prior(ratings)
    kept = agent.store.priors()
    assert [v["version"] for v in kept] == [3, 2]
    assert agent.prior().digest() == kept[0]["sha256"]

    # With every prior damaged or gone, the feed falls back to the identity, and there is nothing to export.
    agent.store.db.execute("delete from priors")
    agent.refresh_global_adapter()
    assert agent.prior() is None and agent.prior_status() is None
    assert not agent.global_adapter().item_bias and not agent.global_adapter().B.any()
    with pytest.raises(FileNotFoundError):
        agent.export_prior(tmp_path / "none.bin")
    assert len(agent.recommend(5)) == 5
    agent.close()


def test_prior_status_says_when_the_prior_was_learned_on_another_encoders_vectors(encoder, tmp_path):
    agent = onboarded_agent(encoder, catalog())
    agent.build_prior(_public_ratings_file(tmp_path / "ratings.csv"))
    prior = agent.prior()
    assert prior.header["encoder"] == encoder.model_id
    status = agent.prior_status()
    assert not status.other_encoder and "text encoder" not in status.summary()

    for header in ({**prior.header, "encoder": "all-MiniLM-L6-v2-int8-onnx-0123456789ab"},
                   {k: v for k, v in prior.header.items() if k != "encoder"}):  # built before it was recorded
        older = Prior(prior.layout, prior.vector, header).to_bytes()
        agent.store.add_prior(older, hashlib.sha256(older).hexdigest(), "ratings.csv", 2)
        agent.refresh_global_adapter()
        status = agent.prior_status()
        assert status.other_encoder and agent.prior().header == header
        assert ("learned on another version of the text encoder's vectors: `ownrec prior build` with the same "
                "public ratings file (ratings.csv) learns it again") in status.summary()
        assert len(agent.recommend(5)) == 5  # still ranked with, until it is learned again
    agent.close()


def test_the_demo_prior_is_learned_again_after_the_encoder_changed_and_a_persons_own_is_left_alone(
        encoder, tmp_path, monkeypatch):
    from agent.core.importers import public_ratings

    ratings = _public_ratings_file(tmp_path / "ratings.csv")
    public, _ = read_public_ratings(ratings)
    monkeypatch.setattr(public_ratings, "demo_public_ratings", lambda: public)  # the test catalog's "demo"
    agent = onboarded_agent(encoder, catalog())
    said = []
    assert agent.ensure_demo_prior(say=said.append) and not said  # the first: nothing to explain
    assert agent.prior().header["source"] == "the public MovieLens-100K ratings"
    assert not agent.ensure_demo_prior() and len(agent.store.priors()) == 1  # current: nothing to learn

    prior = agent.prior()
    for header in ({**prior.header, "encoder": "all-MiniLM-L6-v2-int8-onnx-0123456789ab"},
                   {k: v for k, v in prior.header.items() if k != "encoder"}):
        older = Prior(prior.layout, prior.vector, header).to_bytes()
        agent.store.add_prior(older, hashlib.sha256(older).hexdigest(), header["source"], 2)
        agent.refresh_global_adapter()
        assert agent.prior_status().other_encoder
        assert ("vectors: `ownrec import --demo` (which the quick start runs) or `ownrec prior build` learns it "
                "again") in agent.prior_status().summary()
        said = []
        assert agent.ensure_demo_prior(say=said.append)
        assert said == ["release 0 was learned on another version of the text encoder's vectors: learning it "
                        "again from the public MovieLens-100K ratings"]
        assert agent.prior().header["encoder"] == encoder.model_id and not agent.prior_status().other_encoder

    # One the person learned from their own file is theirs to learn again: it stays, and status says so.
    agent.build_prior(ratings)
    own = agent.prior()
    stale = Prior(own.layout, own.vector, {**own.header, "encoder": "an-older-encoder"}).to_bytes()
    agent.store.add_prior(stale, hashlib.sha256(stale).hexdigest(), "ratings.csv", 2)
    agent.refresh_global_adapter()
    assert not agent.ensure_demo_prior()
    assert agent.prior().header["source"] == "ratings.csv" and agent.prior_status().other_encoder
    agent.close()


def _pinned_coordinator(folder, agent, initial=None, layout=None):
    """A coordinator in `folder` the agent has pinned and agreed to sync with (no connection is made)."""
    folder.mkdir()
    storage = SQLiteStorage(folder / "coordinator.sqlite3")
    coordinator = Coordinator(storage, Ed25519PrivateKey.generate(), CoordinatorSettings(), layout, initial)
    cert, _ = ensure_tls_certificate(folder, ["127.0.0.1"])
    consent.join(agent.home, write_pin(folder, "https://127.0.0.1:8443", coordinator, cert))
    consent.set_enabled(agent.store, True, "test")
    return coordinator, storage


def test_a_verified_federation_release_takes_over_from_the_prior(encoder, tmp_path):
    agent = onboarded_agent(encoder, catalog())
    agent.build_prior(_public_ratings_file(tmp_path / "ratings.csv"))
    prior = agent.prior()
    layout = SharedLayout.create(encoder.dim, 4, agent.catalog().refs, np.random.default_rng(0))
    coordinator, storage = _pinned_coordinator(tmp_path / "zeros", agent, layout=layout)
    agent.refresh_global_adapter()
    # Pinned and consenting, but no release received yet: the prior is what the feed ranks with.
    assert agent.global_adapter().item_bias == unflatten(prior.layout, prior.vector).item_bias
    # A release that arrives is not used until the device's adoption check takes it: a coordinator's zero
    # starting point in another layout, judged on too few likes, is kept out and the prior stays in use.
    agent.store.store_release(coordinator.public_key.hex(), 1, coordinator.latest_release_bytes())
    agent.refresh_global_adapter()
    agent.check_new_release()
    agent.refresh_global_adapter()
    in_use = agent.global_adapter()
    assert in_use.B.shape == prior.layout.projection.T.shape and in_use.item_bias == unflatten(prior.layout, prior.vector).item_bias
    storage.close()

    # A coordinator started from this prior: the device adopting its release 1 ranks as with the prior.
    coordinator, storage = _pinned_coordinator(tmp_path / "from-prior", agent, prior.vector, prior.layout)
    agent.store.store_release(coordinator.public_key.hex(), 1, coordinator.latest_release_bytes())
    agent.refresh_global_adapter()
    adopted, expected = agent.global_adapter(), unflatten(prior.layout, prior.vector)
    assert np.array_equal(adopted.B, expected.B) and adopted.item_bias == expected.item_bias
    storage.close()
    agent.close()


# -- the command line -----------------------------------------------------------------------------


def test_the_prior_commands_build_show_and_export(prepared_models_dir, tmp_path):
    runner = CliRunner()

    def run(*args):
        return runner.invoke(cli, [str(arg) for arg in args], catch_exceptions=False)

    films = ["id,title,year,genres,description"]
    films += [f"{item.external_id},{item.title},{item.metadata['year']},{item.metadata['genres'][0]},"
              f"\"{item.text}\"" for item in catalog()]
    assert run("import", write(tmp_path / "films.csv", "\n".join(films) + "\n")).exit_code == 0
    none = run("prior", "status")
    assert none.exit_code == 0 and "no public prior" in none.output
    nothing = run("prior", "export", tmp_path / "out.bin")
    assert nothing.exit_code == 1 and "no public prior to export" in nothing.output
    assert not (tmp_path / "out.bin").exists()

    bad = run("prior", "build", write(tmp_path / "bad.csv", "item\ncsv:films.csv:sci-1\n"))
    assert bad.exit_code == 1 and "needs a `user` column" in bad.output
    ratings = _public_ratings_file(tmp_path / "ratings.csv").read_text().replace("test:", "csv:films.csv:")
    few = run("prior", "build", write(tmp_path / "few.csv", "\n".join(ratings.splitlines()[:60]) + "\n"))
    assert few.exit_code == 1 and f"a prior needs at least {MIN_PEOPLE}" in few.output
    built = run("prior", "build", write(tmp_path / "ratings.csv", ratings))
    assert built.exit_code == 0, built.output
    assert "release 0 from ratings.csv" in built.output and "of 30 people" in built.output
    assert "skipped " in built.output and "missing user" in built.output

    status = run("prior", "status")
    assert status.exit_code == 0 and "release 0 from ratings.csv" in status.output and "built 20" in status.output
    exported = run("prior", "export", tmp_path / "release-0.bin")
    assert exported.exit_code == 0 and "wrote" in exported.output
    prior = Prior.from_bytes((tmp_path / "release-0.bin").read_bytes())
    assert prior.header["people"] == 30 and prior.layout.dim == 384
    assert all(ref.startswith("csv:films.csv:") for ref in prior.layout.refs)
    assert "prior" in run("--help").output


# -- a coordinator started from a prior -----------------------------------------------------------


def _config(folder, **extra):
    folder.mkdir(exist_ok=True)
    return {"state_dir": str(folder), "db": f"sqlite:///{folder / 'coordinator.sqlite3'}", "settings": {}, **extra}


def test_a_coordinator_started_from_a_prior_publishes_it_as_release_1(tmp_path):
    prior = _small_prior()
    path = tmp_path / "release-0.bin"
    path.write_bytes(prior.to_bytes())
    coordinator = build_coordinator(_config(tmp_path / "state", prior=str(path)))
    release = verify_release(coordinator.latest_release_bytes(), coordinator.public_key)
    stored = Prior.from_bytes(path.read_bytes())
    assert release.version == 1 and release.metadata["prior"] is True and release.metadata["rounds"] == 0
    assert release.layout.digest() == prior.layout.digest() == coordinator.info()["layout_digest"]
    assert np.array_equal(release.vector, stored.vector) and coordinator.info()["parameters"] == prior.layout.size
    first = coordinator.latest_release_bytes()
    coordinator.storage.close()
    # The prior is read only when the state is new: a restart with another prior keeps release 1 as it was.
    path.write_bytes(_small_prior(seed=5).to_bytes())
    restarted = build_coordinator(_config(tmp_path / "state", prior=str(path)))
    assert restarted.latest_release_bytes() == first
    restarted.storage.close()


def test_a_coordinator_without_a_prior_starts_from_zeros(tmp_path):
    items = write(tmp_path / "items.txt", "films:1\nfilms:2\n")
    coordinator = build_coordinator(_config(tmp_path / "state", items_file=str(items), dim=24, rank=4,
                                            residual_rank=3))
    release = verify_release(coordinator.latest_release_bytes(), coordinator.public_key)
    assert release.metadata["prior"] is False and not release.vector.any()
    assert release.layout.refs == ("films:1", "films:2") and release.layout.size == 24 * 4 + 2 * 4
    coordinator.storage.close()


def test_a_damaged_prior_or_a_vector_of_the_wrong_size_starts_no_coordinator(tmp_path):
    path = tmp_path / "release-0.bin"
    path.write_bytes(_small_prior().to_bytes()[:-1])
    with pytest.raises(ConfigurationError):
        build_coordinator(_config(tmp_path / "damaged", prior=str(path)))
    layout = _small_prior().layout
    storage = SQLiteStorage(tmp_path / "coordinator.sqlite3")
    key = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="values"):
        Coordinator(storage, key, CoordinatorSettings(), layout, np.ones(layout.size + 1))
    # Nothing was half-written: the same state starts cleanly with a vector that fits.
    coordinator = Coordinator(storage, key, CoordinatorSettings(), layout, np.full(layout.size, 0.25))
    release = verify_release(coordinator.latest_release_bytes(), coordinator.public_key)
    assert release.version == 1 and np.all(release.vector == 0.25)
    storage.close()
