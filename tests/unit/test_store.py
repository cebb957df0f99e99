import sqlite3

import numpy as np
import pytest

from agent.core import paths
from agent.core.store import NewItem, Store, StoreError, UnknownItem
from agent.core.store.migrations import MIGRATIONS, apply_migrations


def _items(n=3, source="test"):
    return [NewItem(source, str(i), f"Title {i}", f"Title {i}. A story about {i}.", {"year": 2000 + i})
            for i in range(n)]


def test_migrations_are_recorded_and_applied_once():
    store = Store.open()
    names = [row["name"] for row in store.db["_migrations"].rows]
    assert names == [fn.__name__ for fn in MIGRATIONS]
    assert apply_migrations(store.db) == []
    assert {"items", "interactions", "embeddings", "adapters", "events", "state"} <= set(store.db.table_names())


def test_database_lives_in_ownrec_home_and_uses_wal(ownrec_home):
    store = Store.open()
    assert store.path == ownrec_home / "ownrec.db" == paths.database_path()
    assert store.db.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_a_failing_migration_leaves_no_partial_schema(monkeypatch):
    def m999_broken(db):
        db["half_done"].create({"id": int}, pk="id")
        raise RuntimeError("crash mid-migration")

    # A context of its own: undoing the whole monkeypatch would also undo OWNREC_HOME (conftest), and the
    # second open would reach the real data folder.
    with monkeypatch.context() as patched:
        patched.setattr("agent.core.store.migrations.MIGRATIONS", [*MIGRATIONS, m999_broken])
        with pytest.raises(RuntimeError):
            Store.open()
    store = Store.open()  # migrations before the broken one stay applied
    assert "half_done" not in store.db.table_names()
    assert "m999_broken" not in {row["name"] for row in store.db["_migrations"].rows}


def test_upsert_is_keyed_by_source_and_external_id():
    store = Store.memory()
    first = store.upsert_items(_items())
    assert (first.added, first.updated, first.unchanged) == (3, 0, 0)
    again = store.upsert_items(_items())
    assert (again.added, again.updated, again.unchanged) == (0, 0, 3)
    assert again.item_ids == first.item_ids
    changed = store.upsert_items([NewItem("test", "1", "Title 1", "New text", {"year": 2001})])
    assert changed.updated == 1 and store.item(first.item_ids[1]).text == "New text"
    assert store.upsert_items(_items(1, source="other")).added == 1


def test_a_failed_batch_writes_nothing():
    store = Store.memory()
    bad = [*_items(2), NewItem("test", "x", None, "no title", {})]  # title is NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        store.upsert_items(bad)
    assert store.item_count() == 0


def test_resolve_item_by_id_or_ref_and_clear_errors():
    store = Store.memory()
    ids = store.upsert_items(_items()).item_ids
    assert store.resolve_item(str(ids[2])).title == "Title 2"
    assert store.resolve_item("test:1").id == ids[1]
    link = store.upsert_items([NewItem("rss:My Feed", "https://example.org/a:b", "Post", "Post.", {})]).item_ids[0]
    assert store.resolve_item("rss:My Feed:https://example.org/a:b").id == link
    with pytest.raises(UnknownItem, match="no item 'test:99'"):
        store.resolve_item("test:99")
    with pytest.raises(UnknownItem):
        store.resolve_item("12345")


def test_search_uses_full_text_then_substring():
    store = Store.memory()
    store.upsert_items([NewItem("t", "1", "Alien", "Alien (1979). Horror, Sci-Fi.", {}),
                        NewItem("t", "2", "Aliens", "Aliens (1986). Action, Sci-Fi.", {}),
                        NewItem("t", "3", "Babe", "Babe (1995). Children's, Comedy.", {})])
    assert [i.title for i in store.search_items("alien")] == ["Alien", "Aliens"]
    assert [i.title for i in store.search_items("comedy")] == ["Babe"]
    assert store.search_items("zzz") == []


def test_feedback_kinds_are_checked_and_unknown_items_refused():
    store = Store.memory()
    item_id = store.upsert_items(_items(1)).item_ids[0]
    store.add_interaction(item_id, "rating", 4.5, at=100.0)
    assert store.interactions()[0].value == 4.5
    with pytest.raises(StoreError, match="unknown feedback kind"):
        store.add_interaction(item_id, "love")
    with pytest.raises(UnknownItem):
        store.add_interaction(999, "like")
    assert store.interaction_count() == 1


def test_embedding_cache_round_trips_float32():
    store = Store.memory()
    vectors = {"a": np.arange(4, dtype=np.float32), "b": np.ones(4, dtype=np.float32)}
    store.put_embeddings("m1", vectors)
    found = store.cached_embeddings("m1", ["a", "b", "c"])
    assert set(found) == {"a", "b"} and np.array_equal(found["a"], vectors["a"])
    assert store.cached_embeddings("m2", ["a"]) == {}


def test_adapter_versions_increase_per_kind():
    store = Store.memory()
    assert store.record_adapter("personal", "a.npz", "x" * 64, {}) == 1
    assert store.record_adapter("personal", "b.npz", "y" * 64, {}) == 2
    assert store.record_adapter("global", "g.npz", "z" * 64, {}) == 1
    assert [v["version"] for v in store.adapter_versions("personal")] == [2, 1]


def test_export_contains_feedback_with_item_refs():
    store = Store.memory()
    item_id = store.upsert_items(_items(1)).item_ids[0]
    store.add_interaction(item_id, "like", at=5.0, origin="tui")
    store.set_state("taste_description", "slow films")
    data = store.export()
    assert data["interactions"][0]["item_ref"] == "test:0"
    assert data["interactions"][0]["kind"] == "like" and data["interactions"][0]["origin"] == "tui"
    assert data["state"]["taste_description"] == "slow films"


def test_a_file_that_is_not_a_database_gives_a_clear_error(ownrec_home):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    paths.database_path().write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable ownrec database"):
        Store.open()


def test_interactions_after_a_row_are_what_was_recorded_since_in_recording_order():
    store = Store.open()
    ids = store.upsert_items(_items(3)).item_ids
    store.add_interactions([(ids[0], "like", None, 50.0, "test"), (ids[1], "rating", 4.5, 10.0, "test")])
    first = store.interactions_after(0)
    assert [(e.item_id, e.kind, e.value, e.at) for e in first] == [(ids[0], "like", None, 50.0),
                                                                  (ids[1], "rating", 4.5, 10.0)]
    store.add_interaction(ids[2], "open", at=5.0)  # older than the rest: still after them by id
    later = store.interactions_after(first[-1].id)
    assert [(e.item_id, e.kind, e.at) for e in later] == [(ids[2], "open", 5.0)]
    assert store.interactions_after(later[-1].id) == []
    assert sorted(store.interactions_after(0), key=lambda e: (e.at, e.id)) == store.interactions()


def test_same_text_items_are_the_twins_judged_items_bring_along():
    store = Store.open()
    ids = store.upsert_items(_items(3) + [NewItem("other", "x", "Title 1 again", "Title 1. A story about 1.", {}),
                                          NewItem("other", "y", "Title 1 once more", "Title 1. A story about 1.", {})]
                             ).item_ids
    assert store.same_text_items() == {ids[1]: (ids[3], ids[4]), ids[3]: (ids[1], ids[4]), ids[4]: (ids[1], ids[3])}
    store.add_interaction(ids[3], "skip")
    assert store.judged_item_ids() == {ids[3], *store.same_text_items()[ids[3]]}
