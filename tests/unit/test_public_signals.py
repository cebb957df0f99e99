"""Public item signals (issue 18, part 1): what is public about an item (popularity, average rating, date),
from the importers through the store to the ranker's features and the person's own learned weights on them."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import sqlite_utils

from agent.core.importers import demo, import_file
from agent.core.importers.base import RowError, parse_public_signals
from agent.core.ranker import (
    Catalog,
    GlobalAdapter,
    PersonalAdapter,
    Scorer,
    TrainingSettings,
    fit,
    load_personal,
    online_update,
    save_personal,
    signal_features,
)
from agent.core.ranker.adapters import DEFAULT_SIGNAL_WEIGHTS, AdapterError, _npz_bytes
from agent.core.ranker.model import RATING_SHRINKAGE, SIGNALS
from agent.core.ranker.training import gradients, sample_pairs
from agent.core.store import NewItem, PublicSignals, Store, migrations
from helpers import catalog, onboarded_agent
from import_helpers import by_title, ts, write

DEFAULT = np.array(DEFAULT_SIGNAL_WEIGHTS, np.float64)


# -- PublicSignals and the store ----------------------------------------------------------------


def test_public_signals_are_floats_or_none_and_know_whether_they_say_anything():
    empty = PublicSignals()
    assert (empty.popularity, empty.avg_rating, empty.published, empty.any) == (None, None, None, False)
    full = PublicSignals(popularity=12, avg_rating=4, published=-86400)
    assert (full.popularity, full.avg_rating, full.published) == (12.0, 4.0, -86400.0)
    assert all(type(v) is float for v in (full.popularity, full.avg_rating, full.published))
    assert full.any and PublicSignals(avg_rating=0.0).any and PublicSignals(popularity=0).any
    assert PublicSignals(avg_rating=5.0).avg_rating == 5.0 and PublicSignals(popularity=1e9).popularity == 1e9


@pytest.mark.parametrize("fields", [
    {"popularity": -1}, {"popularity": math.nan}, {"popularity": math.inf}, {"popularity": True},
    {"popularity": "12"}, {"avg_rating": 5.01}, {"avg_rating": -0.5}, {"avg_rating": math.nan},
    {"published": 2e11}, {"published": -2e11}, {"published": math.inf}, {"published": "2020-01-01"},
])
def test_public_signals_refuse_values_out_of_range_or_not_finite(fields):
    with pytest.raises(ValueError, match=next(iter(fields))):
        PublicSignals(**fields)


def test_the_store_keeps_updates_and_lists_items_public_signals():
    store = Store.memory()
    heat = NewItem("films", "heat", "Heat", "Heat (1995).", {"year": 1995}, PublicSignals(500, 4.1, ts("1995-12-15")))
    plain = NewItem("films", "plain", "Plain", "Plain.")
    first = store.upsert_items([heat, plain])
    assert (first.added, first.updated, first.unchanged) == (2, 0, 0)
    heat_id, plain_id = first.item_ids
    assert store.item(heat_id).signals == PublicSignals(500.0, 4.1, ts("1995-12-15"))
    assert store.item(plain_id).signals == PublicSignals()
    assert store.public_signals() == {heat_id: PublicSignals(500.0, 4.1, ts("1995-12-15"))}

    same = store.upsert_items([heat, plain])
    assert (same.added, same.updated, same.unchanged) == (0, 0, 2)
    # Only the signals change (same title, text, metadata): still an update, in place.
    newer = store.upsert_items([dataclasses.replace(heat, signals=PublicSignals(650, 4.0)),
                                dataclasses.replace(plain, signals=PublicSignals(published=0.0))])
    assert (newer.added, newer.updated, newer.unchanged, newer.item_ids) == (0, 2, 0, [heat_id, plain_id])
    assert store.resolve_item("films:heat").signals == PublicSignals(650.0, 4.0, None)
    assert store.public_signals() == {heat_id: PublicSignals(650.0, 4.0), plain_id: PublicSignals(published=0.0)}
    assert {item.id: item.signals for item in store.items()} == store.public_signals()
    # The person's own feedback is kept apart: it changes no signal.
    store.add_interaction(heat_id, "rating", 1.0)
    assert store.item(heat_id).signals == PublicSignals(650.0, 4.0)


def test_an_existing_database_gains_empty_signal_columns(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    with monkeypatch.context() as patched:  # the schema as it was before m005
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:4])
        migrations.apply_migrations(old)
    assert "popularity" not in old["items"].columns_dict
    old["items"].insert({"source": "films", "external_id": "1", "title": "Old", "text": "Old.",
                         "text_hash": "x", "metadata": "{}", "added_at": 1.0})
    old.close()
    store = Store.open(path)
    assert "m005_public_signals" in {row["name"] for row in store.db["_migrations"].rows}
    item = store.resolve_item("films:1")
    assert item.title == "Old" and item.signals == PublicSignals() and store.public_signals() == {}
    result = store.upsert_items([NewItem("films", "1", "Old", "Old.", {}, PublicSignals(avg_rating=2.5))])
    assert result.updated == 1 and store.public_signals() == {item.id: PublicSignals(avg_rating=2.5)}
    store.close()


# -- importers ------------------------------------------------------------------------------------


def test_parse_public_signals_converts_scales_years_and_thousands():
    assert parse_public_signals() == PublicSignals()
    assert parse_public_signals("", "  ", "") == PublicSignals()
    assert parse_public_signals("1,234", "4.5", "2001-02-03") == PublicSignals(1234.0, 4.5, ts("2001-02-03"))
    assert parse_public_signals(0, 0, 0) == PublicSignals(0.0, 0.0, 0.0)
    assert parse_public_signals(avg_rating="8", rating_scale=10) == PublicSignals(avg_rating=4.0)
    assert parse_public_signals(avg_rating=10, rating_scale=10) == PublicSignals(avg_rating=5.0)
    assert parse_public_signals(published="1999").published == ts("1999-01-01")
    assert parse_public_signals(published=1999).published == ts("1999-01-01")  # a bare year, not 1999 seconds
    assert parse_public_signals(published="1700000000").published == 1_700_000_000.0
    assert parse_public_signals(published="2024/03/01").published == ts("2024-03-01")


@pytest.mark.parametrize("kwargs, message", [
    ({"popularity": "-3"}, "negative"), ({"popularity": "many"}, "not a number"),
    ({"popularity": "nan"}, "not a finite number"), ({"popularity": True}, "not a finite number"),
    ({"avg_rating": "5.5"}, "out of range: use 0 to 5"), ({"avg_rating": "11", "rating_scale": 10}, "use 0 to 10"),
    ({"avg_rating": "-0.1"}, "out of range"), ({"published": "yesterday"}, "bad date"),
    ({"published": "9999-12-31"}, "published"), ({"published": "1e300"}, "published"),
])
def test_parse_public_signals_turns_bad_values_into_row_errors(kwargs, message):
    with pytest.raises(RowError, match=message):
        parse_public_signals(**kwargs)


SIGNALS_CSV = """\
id,title,popularity,rating_count,avg_rating,published
a,Alpha,1200,,4.5,2001-02-03
b,Beta,,35,3.25,1999
c,Gamma,"1,234",99,,1700000000
d,Delta,,,,
e,Bad Count,-3,,,
f,Bad Rating,,,5.5,
g,Bad Date,,,,yesterday
"""


def test_csv_signal_columns_are_stored_and_bad_values_reported(tmp_path):
    store = Store.memory()
    path = write(tmp_path / "films.csv", SIGNALS_CSV)
    report = import_file(store, path)
    assert report.items_added == 4
    assert [(p.line, p.message.split(" ")[0]) for p in report.problems] == [(6, "popularity"), (7, "average"),
                                                                            (8, "bad")]
    items = by_title(store)
    assert items["Alpha"].signals == PublicSignals(1200.0, 4.5, ts("2001-02-03"))
    assert items["Beta"].signals == PublicSignals(35.0, 3.25, ts("1999-01-01"))  # rating_count, a bare year
    assert items["Gamma"].signals == PublicSignals(1234.0, None, 1_700_000_000.0)  # popularity wins
    assert items["Delta"].signals == PublicSignals()
    # Signals are catalog data, not metadata, and not the person's feedback.
    assert items["Alpha"].metadata == {} and store.interaction_count() == 0
    again = import_file(store, path)
    assert (again.items_added, again.items_updated, again.items_unchanged) == (0, 0, 4)


def test_a_csv_row_published_in_year_0000_is_reported_not_fatal(tmp_path):
    store = Store.memory()
    path = write(tmp_path / "films.csv", "id,title,published\na,Alpha,2001\nz,Zero,0000\n")
    report = import_file(store, path)  # datetime(0, 1, 1) raises ValueError, which is not a RowError
    assert report.items_added == 1 and [p.line for p in report.problems] == [3]


def test_jsonl_signal_keys_are_stored_and_bad_values_reported(tmp_path):
    store = Store.memory()
    lines = [{"title": "A", "rating_count": 7, "avg_rating": 4}, {"title": "B", "popularity": True},
             {"title": "C", "published": 1999, "popularity": 0}, {"title": "D", "avg_rating": "x"},
             {"title": "E", "popularity": 3, "rating_count": 9, "published": "2020-05-01T12:00:00Z"}]
    path = write(tmp_path / "items.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    report = import_file(store, path)
    assert report.items_added == 3 and [p.line for p in report.problems] == [2, 4]
    items = by_title(store)
    assert items["A"].signals == PublicSignals(7.0, 4.0, None)
    assert items["C"].signals == PublicSignals(0.0, None, ts("1999-01-01"))
    assert items["E"].signals == PublicSignals(3.0, None, ts("2020-05-01T12:00:00+00:00"))


GOODREADS = """\
Book Id,Title,Author,My Rating,Average Rating,Original Publication Year,Date Read,Exclusive Shelf
1,Book One,Ann,0,4.12,2001,,to-read
2,Book Two,Bob,0,0.00,2002,,to-read
3,Book Three,Cy,5,3.80,2003,2023/01/02,read
4,Book Four,Di,0,6.10,2004,,to-read
5,Book Five,Ed,0,,2005,,to-read
"""


def test_goodreads_average_rating_is_a_public_signal_and_zero_means_none(tmp_path):
    store = Store.memory()
    report = import_file(store, write(tmp_path / "goodreads_library_export.csv", GOODREADS), "goodreads")
    assert report.items_added == 4
    assert [(p.line, "out of range" in p.message) for p in report.problems] == [(5, True)]
    items = by_title(store)
    assert items["Book One"].signals == PublicSignals(avg_rating=4.12)
    assert items["Book Two"].signals == PublicSignals()  # 0.00: nobody has rated it yet
    assert items["Book Five"].signals == PublicSignals()
    three = items["Book Three"]
    assert three.signals == PublicSignals(avg_rating=3.8)  # the public average, not the person's 5 stars
    assert [(i.kind, i.value) for i in store.interactions() if i.item_id == three.id] == [("rating", 5.0)]


FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>News</title>
<item><title>Dated</title><guid>n1</guid><pubDate>Tue, 05 Mar 2024 10:30:00 +0100</pubDate></item>
<item><title>Undated</title><guid>n2</guid></item>
<item><title>Garbled</title><guid>n3</guid><pubDate>not a date</pubDate></item>
</channel></rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Blog</title>
<entry><title>Post</title><id>p1</id><updated>2024-01-02T03:04:05Z</updated></entry>
</feed>
"""


def test_feed_dates_become_the_published_signal(tmp_path):
    store = Store.memory()
    assert import_file(store, write(tmp_path / "news.xml", FEED)).items_added == 3
    assert import_file(store, write(tmp_path / "blog.xml", ATOM)).items_added == 1
    items = by_title(store)
    assert items["Dated"].signals == PublicSignals(published=ts("2024-03-05T09:30:00+00:00"))
    assert items["Undated"].signals == PublicSignals() and items["Garbled"].signals == PublicSignals()
    assert items["Post"].signals == PublicSignals(published=ts("2024-01-02T03:04:05+00:00"))


def test_a_feed_entry_dated_in_year_9999_does_not_break_the_feeds_import(tmp_path):
    store = Store.memory()
    far = FEED.replace("<guid>n2</guid>", "<guid>n2</guid><pubDate>Fri, 31 Dec 9999 23:59:59 +0000</pubDate>")
    report = import_file(store, write(tmp_path / "news.xml", far))  # PublicSignals raises ValueError today
    assert report.items_added + len(report.problems) == 3
    assert by_title(store)["Dated"].signals.published == ts("2024-03-05T09:30:00+00:00")


def test_the_demo_has_each_films_public_count_mean_and_year():
    counts = demo.public_counts()
    assert len(counts) == 1682 and sum(count for count, _ in counts.values()) == 100_000
    assert counts["50"][0] == 583 and counts["50"][1] == pytest.approx(4.3585, abs=1e-4)  # Star Wars
    assert all(1 <= mean <= 5 for _, mean in counts.values())
    rows = {row.item.external_id: row.item for row in demo.parse_items(demo.dataset_file("item"),
                                                                       {"1": (452, 3.875)})}
    assert rows["1"].signals == PublicSignals(452.0, 3.875, ts("1995-01-01"))
    assert rows["12"].signals == PublicSignals(published=ts("1995-01-01"))  # no counts given for it
    assert rows["267"].signals == PublicSignals()  # its year is "unknown"
    assert all(not row.item.signals.any for row in demo.parse_items(demo.dataset_file("item"))
               if "year" not in row.item.metadata)


# -- features and scoring -------------------------------------------------------------------------


def _zscore(values):
    values = np.asarray(values, np.float64)
    return (values - values.mean()) / values.std()


def test_signal_features_standardise_shrink_and_fill_missing_with_zero():
    nan = np.nan
    popularity = np.array([0.0, 9.0, 99.0, nan])
    rating = np.array([4.0, nan, 2.0, 5.0])
    published = np.array([nan, 100.0, nan, nan])
    features = signal_features(popularity, rating, published)
    assert features.shape == (4, len(SIGNALS)) and features.dtype == np.float32
    pop = np.log1p(popularity[:3])
    assert np.allclose(features[:, 0], [*_zscore(pop), 0.0], atol=1e-6)
    mean = 11.0 / 3  # the catalog's mean of the known average ratings
    shrunk = [(0 * 4 + RATING_SHRINKAGE * mean) / (0 + RATING_SHRINKAGE),  # nobody rated it: the mean
              (99 * 2 + RATING_SHRINKAGE * mean) / (99 + RATING_SHRINKAGE),  # many raters: near its own 2
              5.0]  # no count: taken as it is
    assert np.allclose(features[[0, 2, 3], 1], _zscore(shrunk), atol=1e-6)
    assert features[1, 1] == 0.0
    assert np.all(features[:, 2] == 0.0)  # one item has a date: no spread to learn from
    # Each column over the items that have it: mean 0, spread 1.
    assert abs(features[:3, 0].mean()) < 1e-6 and features[:3, 0].std() == pytest.approx(1.0, abs=1e-5)


def test_shrinkage_ranks_a_well_known_4_5_above_a_barely_known_5():
    features = signal_features(np.array([200.0, 2.0, 50.0]), np.array([4.5, 5.0, 3.0]), np.full(3, np.nan))
    assert features[0, 1] > features[1, 1] > features[2, 1]
    unshrunk = signal_features(np.full(3, np.nan), np.array([4.5, 5.0, 3.0]), np.full(3, np.nan))
    assert unshrunk[1, 1] > unshrunk[0, 1]  # without counts, the plain averages decide


def test_signal_features_without_spread_or_values_are_all_zero():
    nan = np.full(5, np.nan)
    assert np.all(signal_features(nan, nan, nan) == 0)
    same = signal_features(np.full(5, 7.0), np.full(5, 3.5), np.full(5, 1e9))
    assert np.all(same == 0) and np.all(np.isfinite(same))
    assert signal_features(np.zeros(0), np.zeros(0), np.zeros(0)).shape == (0, 3)
    negative = signal_features(np.array([-5.0, 0.0, 10.0]), nan[:3], nan[:3])  # a negative count reads as 0
    assert negative[0, 0] == negative[1, 0] < negative[2, 0]


def _catalog(n=120, d=16, seed=0, signals=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return Catalog(np.arange(1, n + 1), [f"t:{i}" for i in range(n)], X, signals)


def test_catalog_signals_default_to_zero_and_must_fit_the_catalog():
    plain = _catalog(10)
    assert plain.signals.shape == (10, 3) and not plain.signals.any() and not plain.has_signals
    assert Catalog.empty(8).signals.shape == (0, 3)
    with pytest.raises(ValueError, match="signals"):
        _catalog(10, signals=np.zeros((9, 3)))
    with pytest.raises(ValueError, match="signals"):
        _catalog(10, signals=np.zeros((10, 2)))
    typed = _catalog(10, signals=np.ones((10, 3), np.float64))
    assert typed.signals.dtype == np.float32 and typed.has_signals
    assert plain.row_of_ref("t:7") == 7 and plain.row_of_ref("t:0") == 0
    assert plain.row_of_ref("t:10") is None and plain.row_of_ref("7") is None


def test_scores_add_the_signals_term_with_the_persons_weights():
    rng = np.random.default_rng(4)
    signals = rng.standard_normal((120, 3)).astype(np.float32)
    with_signals, without = _catalog(signals=signals), _catalog()
    g = GlobalAdapter(A=rng.standard_normal((4, 16)).astype(np.float32) * 0.1,
                      B=rng.standard_normal((16, 4)).astype(np.float32) * 0.1, item_bias={"t:3": 0.7})
    u = PersonalAdapter.fresh(16, 3, seed=1)
    u.p = rng.standard_normal(16).astype(np.float32)
    u.signal_weights = np.array([0.8, -0.3, 0.1], np.float32)
    plain_scores = Scorer(without, g).scores(u)
    scorer = Scorer(with_signals, g)
    assert np.allclose(scorer.scores(u), plain_scores + signals @ u.signal_weights, atol=1e-5)
    rows = np.array([3, 50, 7])
    assert np.allclose(scorer.scores(u, rows), (plain_scores + signals @ u.signal_weights)[rows], atol=1e-5)
    # Without signals the weights change nothing; with zero weights the signals change nothing.
    u2 = u.copy()
    u2.signal_weights = np.array([5.0, 5.0, 5.0], np.float32)
    assert np.allclose(Scorer(without, g).scores(u2), plain_scores)
    u2.signal_weights[:] = 0
    assert np.allclose(scorer.scores(u2), plain_scores, atol=1e-5)
    # A person with no taste yet (p = 0) ranks purely by the public signals at the default weights.
    fresh = PersonalAdapter.fresh(16, 3)
    assert np.allclose(Scorer(with_signals, GlobalAdapter.identity(16)).scores(fresh), signals @ DEFAULT, atol=1e-5)


# -- the person's weights on the signals ----------------------------------------------------------


def test_signal_weights_are_saved_loaded_and_older_files_get_the_default(tmp_path):
    adapter = PersonalAdapter.fresh(8, 2, model_id="m")
    assert np.array_equal(adapter.signal_weights, DEFAULT.astype(np.float32))
    adapter.signal_weights = np.array([-0.7, 1.25, 0.5], np.float32)
    copy = adapter.copy()
    copy.signal_weights[0] = 9.0
    assert adapter.signal_weights[0] == np.float32(-0.7)  # a copy is independent
    digest = save_personal(adapter, tmp_path / "new.npz")
    loaded = load_personal(tmp_path / "new.npz", digest)
    assert np.array_equal(loaded.signal_weights, adapter.signal_weights) and loaded.signal_weights.dtype == np.float32
    old = _npz_bytes({"p": adapter.p, "A": adapter.A, "B": adapter.B, "prior": adapter.prior},
                     {"kind": "personal", "model_id": "m", "trained_on": 3})
    (tmp_path / "old.npz").write_bytes(old)
    before = load_personal(tmp_path / "old.npz")
    assert np.array_equal(before.signal_weights, DEFAULT.astype(np.float32)) and before.trained_on == 3
    before.signal_weights[0] = 42.0  # the default is a fresh array, not shared state
    assert PersonalAdapter.fresh(8, 2).signal_weights[0] == np.float32(DEFAULT[0])


@pytest.mark.parametrize("weights", [np.zeros(2), np.zeros(4), np.zeros((1, 3)), np.array([0.5, np.nan, 0.0]),
                                     np.array([np.inf, 0.0, 0.0])])
def test_signal_weights_of_the_wrong_shape_or_not_finite_are_refused(tmp_path, weights):
    adapter = PersonalAdapter.fresh(8, 2)
    data = _npz_bytes({"p": adapter.p, "A": adapter.A, "B": adapter.B, "prior": adapter.prior,
                       "signal_weights": weights}, {"kind": "personal"})
    (tmp_path / "bad.npz").write_bytes(data)
    with pytest.raises(AdapterError):
        load_personal(tmp_path / "bad.npz")


def _bpr(margin, weight):
    return float((weight * np.logaddexp(0.0, -margin)).sum() / weight.sum())


def test_the_signal_weights_gradient_matches_finite_differences_of_the_loss():
    rng = np.random.default_rng(2)
    signals = rng.standard_normal((80, 3)).astype(np.float32)
    catalog = _catalog(80, signals=signals, seed=2)
    g = GlobalAdapter(A=rng.standard_normal((4, 16)).astype(np.float32) * 0.1,
                      B=rng.standard_normal((16, 4)).astype(np.float32) * 0.1,
                      item_bias={f"t:{i}": float(rng.standard_normal()) for i in range(0, 80, 3)},
                      item_residual={f"t:{i}": rng.standard_normal(5).astype(np.float32) for i in range(0, 80, 4)},
                      W_v=rng.standard_normal((16, 5)).astype(np.float32) * 0.3)
    scorer = Scorer(catalog, g)
    u = PersonalAdapter.fresh(16, 3, seed=1)
    u.p = rng.standard_normal(16).astype(np.float32) * 0.5
    u.B = rng.standard_normal((16, 3)).astype(np.float32) * 0.1
    u.signal_weights = np.array([0.3, -0.4, 0.9])  # float64, so the finite differences are precise
    labels = {int(i): (1.0 if k % 3 else -1.0) for k, i in enumerate(catalog.ids[:12])}
    pairs = sample_pairs(labels, scorer, np.random.default_rng(0), 4)
    settings = TrainingSettings(l2_signal=0.05)
    loss, _, _, _, grad_w = gradients(u, scorer, pairs, settings)
    base = u.copy()
    base.signal_weights = np.zeros(3)
    fixed = scorer.scores(base).astype(np.float64)  # every score term but the signals: biases, residuals
    F = signals[pairs.win].astype(np.float64) - signals[pairs.lose]
    regular = float(settings.l2_user * np.sum((u.p - u.prior) ** 2) + settings.l2_adapter * np.sum(u.B ** 2))

    def objective(w):  # the BPR loss on the feed's own score differences, plus the pulls
        margin = fixed[pairs.win] - fixed[pairs.lose] + F @ w
        return _bpr(margin, pairs.weight) + regular + settings.l2_signal * float(np.sum((w - DEFAULT) ** 2))

    assert loss == pytest.approx(objective(u.signal_weights), abs=1e-5)
    eps = 1e-5
    numeric = [(objective(u.signal_weights + eps * e) - objective(u.signal_weights - eps * e)) / (2 * eps)
               for e in np.eye(3)]
    assert np.allclose(grad_w, numeric, rtol=1e-3, atol=1e-5), (grad_w, numeric)
    assert np.abs(grad_w).max() > 0.01  # a real gradient, not a vanishing one
    # Without signals in the catalog, w has no gradient at all (not even the pull).
    plain = Scorer(_catalog(80, seed=2), g)
    assert not gradients(u, plain, pairs, settings)[4].any()


def _popularity_catalog():
    popularity = np.random.default_rng(5).integers(0, 5000, 200).astype(float)
    features = signal_features(popularity, np.full(200, np.nan), np.full(200, np.nan))
    return _catalog(200, signals=features), np.argsort(popularity)


@pytest.mark.parametrize("taste", ["obscure", "popular"])
def test_a_persons_popularity_weight_follows_what_they_like(taste):
    catalog, by_popularity = _popularity_catalog()
    scorer = Scorer(catalog, GlobalAdapter.identity(16, rank=2))
    liked = by_popularity[:20] if taste == "obscure" else by_popularity[-20:]
    labels = {int(catalog.ids[row]): 1.0 for row in liked}
    trained, losses = fit(PersonalAdapter.fresh(16, 4), scorer, labels, TrainingSettings(epochs=60))
    w = trained.signal_weights
    assert losses[-1] < losses[0]
    if taste == "obscure":
        assert w[0] < DEFAULT[0] - 0.5 and w[0] < 0  # popularity now counts against an item
    else:
        assert w[0] > DEFAULT[0] + 0.5
    # The catalog has no rating or date signal: those weights stay where they started.
    assert np.allclose(w[1:], DEFAULT[1:], atol=1e-6)
    # One online step of a like moves the weight the same way.
    updated = online_update(PersonalAdapter.fresh(16, 4), scorer, labels, int(catalog.ids[liked[0]]),
                            np.random.default_rng(0), 0.5)
    assert (updated.signal_weights[0] < DEFAULT[0]) == (taste == "obscure")
    assert (updated.signal_weights[0] > DEFAULT[0]) == (taste == "popular")


def test_the_pull_holds_weights_at_the_default_when_signals_say_nothing_about_the_likes():
    catalog, _ = _popularity_catalog()
    scorer = Scorer(catalog, GlobalAdapter.identity(16, rank=2))
    labels = {int(i): 1.0 for i in catalog.ids[:20]}
    weak, _ = fit(PersonalAdapter.fresh(16, 4), scorer, labels, TrainingSettings(epochs=60))
    strong, _ = fit(PersonalAdapter.fresh(16, 4), scorer, labels, TrainingSettings(epochs=60, l2_signal=100.0))
    assert abs(strong.signal_weights[0] - DEFAULT[0]) < 0.05
    assert abs(strong.signal_weights[0] - DEFAULT[0]) < abs(weak.signal_weights[0] - DEFAULT[0])


def test_the_agent_ranks_a_newcomer_by_public_signals_and_learns_an_obscure_taste(encoder):
    items = [dataclasses.replace(item, signals=PublicSignals(popularity=float((i * 37) % 120) ** 2,
                                                             avg_rating=2.0 + (i % 7) * 0.4))
             for i, item in enumerate(catalog())]
    items[5] = dataclasses.replace(items[5], signals=PublicSignals())  # one item the source says nothing of
    agent = onboarded_agent(encoder, items)
    agent.config.set("feed.exploration", 0.0)
    agent.config.set("feed.diversity", 0.0)
    stored = {item.id: item.signals for item in agent.store.items()}
    ids = agent.catalog().ids
    raw = np.array([[np.nan if v is None else v for v in (stored[int(i)].popularity, stored[int(i)].avg_rating,
                                                          stored[int(i)].published)] for i in ids])
    features = agent.catalog().signals
    assert np.allclose(features, signal_features(raw[:, 0], raw[:, 1], raw[:, 2]), atol=1e-6)
    assert not features[list(ids).index(agent.store.resolve_item(f"test:{items[5].external_id}").id)].any()
    # No feedback and no taste sentence: the feed is the public signals at the default weights.
    expected = features @ DEFAULT.astype(np.float32)
    assert np.allclose(agent.scores(), expected, atol=1e-5)
    assert agent.recommend(1)[0].item.id == int(ids[np.argmax(expected)])
    by_popularity = sorted(stored, key=lambda i: stored[i].popularity if stored[i].popularity is not None else 0)
    for item_id in by_popularity[:12]:
        agent.feedback(item_id, "like")
    assert agent.personal_adapter().signal_weights[0] < 0 < DEFAULT[0]
    agent.retrain()
    assert agent.personal_adapter().signal_weights[0] < 0
    agent.close()
