"""The local SQLite store: items, feedback, the embedding cache, adapter versions, an event log.

Plain data crosses this boundary (dataclasses, dicts, numpy arrays); callers never see SQL.
Every multi-row change runs in one transaction (`Database.atomic`). One connection is shared by the
app's threads (the TUI's workers, the sync scheduler), so every method holds the store's lock
(`Store.lock`, re-entrant), and so does `transaction()` for as long as its block runs.
"""

from __future__ import annotations

import json
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import sqlite_utils

from agent.core import paths
from agent.core.store.damage import DatabaseDamaged, is_damage, quick_check
from agent.core.store.migrations import apply_migrations
from agent.core.store.signals import PublicSignals
from agent.core.store.records import (FEEDBACK_KINDS, Interaction, Item, NewItem, SearchError, StoreError, UnknownItem,
                                      UpsertResult, interaction_from_row, item_from_row, text_hash)

# Ledger states of uploads the coordinator's record shows were never summed: they spent no privacy. Every other
# state counts, "pending" (no word from the coordinator yet) included.
UNSPENT_LEDGER_STATES = ("aborted", "dropped")
SEARCH_MAX_CHARACTERS = 500  # far more than any title; a paste of a whole page is refused, not searched
REMOVALS_STATE = "feedback_removals"  # state key: how many feedback rows an undo has taken back


Method = TypeVar("Method", bound=Callable[..., Any])


def _locked(method: Method) -> Method:
    @functools.wraps(method)
    def run(self: "Store", *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.DatabaseError as error:
                if is_damage(error):  # damage the check at open did not see (an index out of step, say)
                    raise DatabaseDamaged(self.path, [str(error)], at_open=False) from None
                raise

    return run  # type: ignore[return-value]


class Store:
    def __init__(self, db: sqlite_utils.Database, path: Path | None) -> None:
        self.db = db
        self.path = path
        self.lock = threading.RLock()

    @classmethod
    def open(cls, path: Path | None = None) -> "Store":
        """The store in `path`; DatabaseDamaged, before anything is written, when SQLite's check finds the
        file damaged."""
        path = Path(path) if path else paths.database_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(path), check_same_thread=False)
            if problems := quick_check(conn):
                conn.close()
                raise DatabaseDamaged(path, problems)
            db = sqlite_utils.Database(conn)
            db.execute("PRAGMA foreign_keys = ON")
            db.enable_wal()
            apply_migrations(db)
        except sqlite3.DatabaseError as error:
            raise StoreError(
                f"{path} is not a usable ownrec database ({error}). Move it aside and run "
                "`ownrec doctor`, or delete everything with `ownrec forget --all`."
            ) from None
        return cls(db, path)

    @classmethod
    def memory(cls) -> "Store":
        db = sqlite_utils.Database(memory=True)
        apply_migrations(db)
        return cls(db, None)

    @_locked
    def close(self) -> None:
        self.db.close()

    @_locked
    def checkpoint(self) -> None:
        """Write the write-ahead log into the database file, so that a copy of that file alone is whole."""
        self.db.execute("pragma wal_checkpoint(TRUNCATE)")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction, holding the store's lock until it commits or rolls back."""
        with self.lock, self.db.atomic():
            yield

    # -- items ---------------------------------------------------------------------------

    @_locked
    def upsert_items(self, items: Iterable[NewItem]) -> UpsertResult:
        """Add or update items keyed by (source, external_id), all in one transaction."""
        added = updated = unchanged = 0
        ids: list[int] = []
        now = time.time()
        with self.db.atomic():
            for new in items:
                digest = text_hash(new.text)
                metadata = json.dumps(new.metadata, sort_keys=True, ensure_ascii=False)
                signals = [new.signals.popularity, new.signals.avg_rating, new.signals.published]
                row = self.db.execute(
                    "select id, title, text_hash, metadata, popularity, avg_rating, published from items"
                    " where source = ? and external_id = ?",
                    [new.source, new.external_id],
                ).fetchone()
                if row is None:
                    cursor = self.db.execute(
                        "insert into items (source, external_id, title, text, text_hash, metadata, added_at,"
                        " popularity, avg_rating, published) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [new.source, new.external_id, new.title, new.text, digest, metadata, now, *signals],
                    )
                    ids.append(cursor.lastrowid)
                    added += 1
                elif (row[1], row[2], row[3], *row[4:]) != (new.title, digest, metadata, *signals):
                    self.db.execute(
                        "update items set title = ?, text = ?, text_hash = ?, metadata = ?, popularity = ?,"
                        " avg_rating = ?, published = ? where id = ?",
                        [new.title, new.text, digest, metadata, *signals, row[0]],
                    )
                    ids.append(row[0])
                    updated += 1
                else:
                    ids.append(row[0])
                    unchanged += 1
        return UpsertResult(added, updated, unchanged, ids)

    @_locked
    def item(self, item_id: int) -> Item:
        row = self.db.execute("select * from items where id = ?", [item_id]).fetchone()
        if row is None:
            raise UnknownItem(f"no item with id {item_id}")
        return item_from_row(dict(zip(self._columns("items"), row)))

    @_locked
    def resolve_item(self, ref: str | int) -> Item:
        """Find an item by local id (`42`) or by `source:external_id`."""
        text = str(ref).strip()
        if text.isdigit():
            return self.item(int(text))
        # Sources and external ids may both contain colons ("rss:My Feed", "https://..."):
        # try every split point.
        for at in [i for i, c in enumerate(text) if c == ":"]:
            rows = list(self.db["items"].rows_where("source = ? and external_id = ?", [text[:at], text[at + 1:]]))
            if rows:
                return item_from_row(rows[0])
        raise UnknownItem(
            f"no item {text!r}: use the id shown by `ownrec recommend` or `ownrec items search`, "
            "or source:external_id"
        )

    @_locked
    def items(self, ids: Iterable[int] | None = None) -> list[Item]:
        if ids is None:
            return [item_from_row(row) for row in self.db["items"].rows_where(order_by="id")]
        wanted = list(ids)
        by_id: dict[int, Item] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db["items"].rows_where(f"id in ({marks})", chunk):
                by_id[row["id"]] = item_from_row(row)
        return [by_id[i] for i in wanted if i in by_id]

    @_locked
    def item_ids(self) -> list[int]:
        """Every item's id, in order."""
        return [row[0] for row in self.db.execute("select id from items order by id")]

    @_locked
    def item_count(self) -> int:
        return self.db["items"].count

    @_locked
    def find_by_title(self, title: str, year: int | None = None,
                      where: Callable[[Item], bool] | None = None) -> Item | None:
        """Match an item by title (case-insensitive) and, when given, its year and the test `where`."""
        rows = [
            item_from_row(row)
            for row in self.db["items"].rows_where("lower(title) = lower(?)", [title.strip()], order_by="id")
        ]
        if year is not None:
            rows = [item for item in rows if item.year == year]
        if where is not None:
            rows = [item for item in rows if where(item)]
        return rows[0] if rows else None

    @_locked
    def search_items(self, query: str, limit: int = 20) -> list[Item]:
        """Full-text search over titles and texts; falls back to a substring match. SearchError for a query
        longer than SEARCH_MAX_CHARACTERS (SQLite's pattern matching slows to a crawl, then refuses) or one
        that is not text."""
        if len(query) > SEARCH_MAX_CHARACTERS:
            raise SearchError(f"a search is at most {SEARCH_MAX_CHARACTERS} characters, and this one has "
                              f"{len(query):,}: search for a few words of the title or description")
        if (bad := next((c for c in query if not c.isprintable() and not c.isspace()), None)) is not None:
            raise SearchError(f"the search has a character that is not text ({bad!r}, at character "
                              f"{query.index(bad) + 1}): type it again (if it came from the command line, check "
                              "that the terminal uses UTF-8)")
        words = [w for w in "".join(c if c.isalnum() else " " for c in query).split() if w]
        found: list[Item] = []
        if words:
            fts = " ".join(f'"{w}"*' for w in words)
            sql = (
                "select items.* from items join items_fts on items.rowid = items_fts.rowid "
                "where items_fts match ? order by bm25(items_fts, 10.0, 1.0) limit ?"
            )
            found = [item_from_row(dict(zip(self._columns("items"), row))) for row in self.db.execute(sql, [fts, limit])]
        if not found and query.strip():
            # The person's % and _ are characters to find, not LIKE's wildcards.
            literal = query.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found = [
                item_from_row(row)
                for row in self.db["items"].rows_where(
                    "title like ? escape '\\' or text like ? escape '\\'", [f"%{literal}%"] * 2, limit=limit
                )
            ]
        return found

    @_locked
    def item_labels(self) -> list[tuple[int, str, dict[str, Any]]]:
        """(id, title, metadata) of every item, by id: what the catalog's titles and genres are read
        from, without the texts."""
        return [(row[0], row[1], json.loads(row[2] or "{}"))
                for row in self.db.execute("select id, title, metadata from items order by id")]

    @_locked
    def catalog_signature(self) -> tuple:
        """Changes whenever an item is added, removed or retitled: for caches of the catalog's titles."""
        return tuple(self.db.execute("select count(*), max(id), total(length(title)), total(length(metadata))"
                                     " from items").fetchone())

    # -- feedback ------------------------------------------------------------------------

    @_locked
    def add_interactions(self, rows: Iterable[tuple[int, str, float | None, float, str]]) -> int:
        """Record feedback rows (item_id, kind, value, at, origin) in one transaction."""
        count = 0
        with self.db.atomic():
            for item_id, kind, value, at, origin in rows:
                if kind not in FEEDBACK_KINDS:
                    raise StoreError(f"unknown feedback kind {kind!r}; use one of {', '.join(FEEDBACK_KINDS)}")
                self.db.execute(
                    "insert into interactions (item_id, kind, value, at, origin) values (?, ?, ?, ?, ?)",
                    [item_id, kind, value, at, origin],
                )
                count += 1
        return count

    @_locked
    def add_interaction(self, item_id: int, kind: str, value: float | None = None,
                        at: float | None = None, origin: str = "cli") -> Interaction:
        self.item(item_id)  # a clear error for an unknown item, before the foreign key fires
        self.add_interactions([(item_id, kind, value, at if at is not None else time.time(), origin)])
        row = self.db.execute("select * from interactions order by id desc limit 1").fetchone()
        return interaction_from_row(dict(zip(self._columns("interactions"), row)))

    @_locked
    def remove_interaction(self, interaction_id: int) -> Interaction:
        """Take back one feedback row (an undo): it is deleted, the count of removals (`feedback_removals`)
        goes up so that caches of the history know to start again, and the event log keeps what was taken
        back. StoreError when there is no such row."""
        with self.db.atomic():
            row = self.db.execute("select id, item_id, kind, value, at, origin from interactions where id = ?",
                                  [int(interaction_id)]).fetchone()
            if row is None:
                raise StoreError(f"there is no feedback {interaction_id} to take back")
            removed = Interaction(*row)
            self.db.execute("delete from interactions where id = ?", [removed.id])
            self.db.execute("insert or replace into state (key, value) values (?, ?)",
                            [REMOVALS_STATE, json.dumps(self.feedback_removals() + 1)])
            self.db.execute("insert into events (at, kind, payload) values (?, ?, ?)",
                            [time.time(), "feedback_undone", json.dumps({"interaction": removed.id,
                                                                          "item_id": removed.item_id,
                                                                          "kind": removed.kind})])
        return removed

    @_locked
    def latest_interaction(self) -> Interaction | None:
        """The feedback row recorded last (by id), if any."""
        row = self.db.execute("select id, item_id, kind, value, at, origin from interactions"
                              " order by id desc limit 1").fetchone()
        return None if row is None else Interaction(*row)

    @_locked
    def feedback_removals(self) -> int:
        """How many feedback rows were ever taken back (`remove_interaction`)."""
        row = self.db.execute("select value from state where key = ?", [REMOVALS_STATE]).fetchone()
        return int(json.loads(row[0])) if row else 0

    @_locked
    def interactions(self) -> list[Interaction]:
        return [interaction_from_row(row) for row in self.db["interactions"].rows_where(order_by="at, id")]

    @_locked
    def interactions_after(self, interaction_id: int) -> list[Interaction]:
        """The feedback recorded after the row `interaction_id` (0: all of it), in the order recorded (by
        id, not by time): what a cache of the history has not seen yet. Feedback rows are never changed, and
        deleted only by an undo (`remove_interaction`), which a cache sees in `feedback_removals`."""
        return [Interaction(*row) for row in self.db.execute(
            "select id, item_id, kind, value, at, origin from interactions where id > ? order by id",
            [interaction_id])]

    @_locked
    def judged_item_ids(self) -> set[int]:
        """Every item the person has judged (opening an item is not a judgement), and every item with the
        same text as one of those: catalogs repeat entries (MovieLens lists some films twice)."""
        return {row[0] for row in self.db.execute(
            "select id from items where text_hash in (select items.text_hash from interactions"
            " join items on items.id = interactions.item_id where interactions.kind not in ('open', 'want'))")}

    @_locked
    def same_text_items(self) -> dict[int, tuple[int, ...]]:
        """Item id -> the other items with the same text, for every item whose text is not its own alone
        (the twins `judged_item_ids` adds)."""
        twins: dict[int, tuple[int, ...]] = {}
        for (ids,) in self.db.execute("select group_concat(id) from items group by text_hash having count(*) > 1"):
            group = sorted(int(part) for part in ids.split(","))
            for item in group:
                twins[item] = tuple(other for other in group if other != item)
        return twins

    @_locked
    def judged_count(self) -> int:
        """How many distinct items the person has judged (opening an item is not a judgement)."""
        return self.db.execute("select count(distinct item_id) from interactions where kind not in ('open', 'want')").fetchone()[0]

    @_locked
    def interaction_count(self) -> int:
        return self.db["interactions"].count

    @_locked
    def has_interaction(self, item_id: int, kind: str, at: float) -> bool:
        return bool(self.db.execute(
            "select 1 from interactions where item_id = ? and kind = ? and at = ?", [item_id, kind, at]
        ).fetchone())

    # -- embedding cache -----------------------------------------------------------------

    @_locked
    def cached_embeddings(self, model_id: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for digest, blob in self.db.execute(
                f"select text_hash, vector from embeddings where model_id = ? and text_hash in ({marks})",
                [model_id, *chunk],
            ):
                found[digest] = np.frombuffer(blob, dtype=np.float32)
        return found

    @_locked
    def texts_without_embedding(self, model_id: str, after: str = "", limit: int = 256) -> list[tuple[str, str]]:
        """(text hash, text) of up to `limit` distinct item texts, in text-hash order after the hash `after`,
        that `model_id` has not encoded yet: a page at a time, so that encoding a large catalog never holds
        all its texts (the order of the text-hash index, which one query over all texts always had)."""
        return self.db.execute(
            "select distinct items.text_hash, items.text from items left join embeddings"
            " on embeddings.text_hash = items.text_hash and embeddings.model_id = ?"
            " where embeddings.text_hash is null and items.text_hash > ? order by items.text_hash limit ?",
            [model_id, after, limit]).fetchall()

    @_locked
    def count_without_embedding(self, model_id: str) -> int:
        """How many distinct item texts `model_id` has not encoded yet."""
        return self.db.execute(
            "select count(distinct items.text_hash) from items left join embeddings"
            " on embeddings.text_hash = items.text_hash and embeddings.model_id = ?"
            " where embeddings.text_hash is null", [model_id]).fetchone()[0]

    @_locked
    def encoded_items(self, model_id: str) -> list[tuple[int, str, np.ndarray]]:
        """(item id, ref, vector) of every item whose text `model_id` has encoded, by id."""
        rows = self.db.execute(
            "select items.id, items.source, items.external_id, embeddings.vector from items"
            " join embeddings on embeddings.text_hash = items.text_hash and embeddings.model_id = ?"
            " order by items.id", [model_id]).fetchall()
        return [(row[0], f"{row[1]}:{row[2]}", np.frombuffer(row[3], dtype=np.float32)) for row in rows]

    @_locked
    def public_signals(self) -> dict[int, PublicSignals]:
        """The public signals of every item that has any, by item id."""
        rows = self.db.execute("select id, popularity, avg_rating, published from items where popularity is not null"
                               " or avg_rating is not null or published is not null").fetchall()
        return {row[0]: PublicSignals(*row[1:]) for row in rows}

    @_locked
    def add_prior(self, body: bytes, sha256: str, source: str, keep: int, co_liked: bytes | None = None,
                  co_liked_sha256: str | None = None) -> int:
        """Store a new public prior (and what people went on to like, built from the same data); keep the
        `keep` newest. Returns its version."""
        with self.db.atomic():
            row = self.db.execute("select max(version) from priors").fetchone()
            version = (row[0] or 0) + 1
            self.db["priors"].insert({"version": version, "created_at": time.time(), "source": source,
                                      "sha256": sha256, "body": body, "co_liked": co_liked,
                                      "co_liked_sha256": co_liked_sha256})
            self.db.execute("delete from priors where version <= ?", [version - keep])
        return version

    @_locked
    def priors(self) -> list[dict[str, Any]]:
        """The stored public priors, newest first: version, created_at, source, sha256, body, co_liked,
        co_liked_sha256 (None in a prior built before it existed)."""
        return list(self.db["priors"].rows_where(order_by="version desc"))

    @_locked
    def put_embeddings(self, model_id: str, vectors: dict[str, np.ndarray]) -> None:
        with self.db.atomic():
            self.db.conn.executemany(
                "insert or replace into embeddings (model_id, text_hash, vector) values (?, ?, ?)",
                [(model_id, digest, np.asarray(v, dtype=np.float32).tobytes()) for digest, v in vectors.items()],
            )

    # -- adapters, state, events ---------------------------------------------------------

    @_locked
    def record_adapter(self, kind: str, path: str, sha256: str, meta: dict[str, Any]) -> int:
        """Register a new adapter version (its file is already written); returns the version."""
        with self.db.atomic():
            row = self.db.execute("select max(version) from adapters where kind = ?", [kind]).fetchone()
            version = (row[0] or 0) + 1
            self.db["adapters"].insert(
                {"kind": kind, "version": version, "path": path, "sha256": sha256,
                 "created_at": time.time(), "meta": json.dumps(meta)}
            )
        return version

    @_locked
    def forget_adapter_version(self, row_id: int) -> None:
        """Drop one adapter version's row (its file is the caller's to delete)."""
        self.db["adapters"].delete(row_id)

    @_locked
    def adapter_versions(self, kind: str) -> list[dict[str, Any]]:
        return list(self.db["adapters"].rows_where("kind = ?", [kind], order_by="version desc"))

    @_locked
    def get_state(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("select value from state where key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else default

    @_locked
    def set_state(self, key: str, value: Any) -> None:
        with self.db.atomic():
            self.db.execute("insert or replace into state (key, value) values (?, ?)", [key, json.dumps(value)])

    @_locked
    def log_event(self, kind: str, payload: dict[str, Any] | None = None) -> None:
        with self.db.atomic():
            self.db.execute(
                "insert into events (at, kind, payload) values (?, ?, ?)",
                [time.time(), kind, json.dumps(payload or {}, ensure_ascii=False)],
            )

    @_locked
    def events(self, limit: int = 100) -> list[dict[str, Any]]:
        return list(self.db["events"].rows_where(order_by="id desc", limit=limit))

    # -- federated sync: the ledger of uploads and the releases verified (agent.core.sync) -------

    @_locked
    def sync_ledger(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The uploads, newest first (every coordinator), as the person is shown them."""
        sql = ("select at, round_id, state, bytes_sent, parameters, pre_clip_norm, clip_norm, noise_multiplier, "
               "noise_std, cohort_size, epsilon_server, epsilon_client, release_version, coordinator_key, "
               "epsilon_round_honest, epsilon_round_worst, settled_at, outcome "
               "from sync_ledger order by at desc, id desc")
        return list(self.db.query(sql + (f" limit {int(limit)}" if limit else "")))

    @_locked
    def sync_ledger_for(self, coordinator_key: str) -> list[dict[str, Any]]:
        """The state, noise multiplier, target delta and reported epsilon of every upload to one
        coordinator, oldest first."""
        return list(self.db.query(
            "select state, noise_multiplier, target_delta, epsilon_server from sync_ledger where coordinator_key = ? "
            "order by at, id", [coordinator_key]))

    @_locked
    def spent_noise_multipliers(self, coordinator_key: str) -> list[float]:
        """The noise multiplier of every upload to this coordinator that counts as spent: all but those to
        rounds whose inputs the coordinator's record shows it never summed (agent.core.sync.client)."""
        rows = self.db.execute("select noise_multiplier from sync_ledger where coordinator_key = ? "
                               f"and state not in {UNSPENT_LEDGER_STATES}", [coordinator_key]).fetchall()
        return [float(row[0]) for row in rows]

    @_locked
    def pending_uploads(self, coordinator_key: str) -> list[dict[str, Any]]:
        """The id and round of every upload to this coordinator not yet settled from its record, oldest first."""
        return list(self.db.query("select id, round_id from sync_ledger where coordinator_key = ? and "
                                  "state = 'pending' order by at, id", [coordinator_key]))

    @_locked
    def record_upload(self, row: dict[str, Any]) -> int:
        """Add one upload to the ledger, committed before this returns (the client sends nothing that could be
        summed before its row is on disk); its row id."""
        with self.db.atomic():
            table = self.db["sync_ledger"]
            table.insert(row)
            return int(table.last_pk)

    @_locked
    def update_upload(self, upload_id: int, changes: dict[str, Any]) -> None:
        with self.db.atomic():
            self.db["sync_ledger"].update(upload_id, changes)

    @_locked
    def store_release(self, coordinator_key: str, version: int, body: bytes) -> None:
        """Keep a verified release (a version already kept stays as it is)."""
        with self.db.atomic():
            self.db.execute("insert or ignore into sync_releases (coordinator_key, version, received_at, body) "
                            "values (?, ?, ?, ?)", [coordinator_key, version, time.time(), body])

    @_locked
    def newest_release_version(self, coordinator_key: str) -> int | None:
        return self.db.execute("select max(version) from sync_releases where coordinator_key = ?",
                               [coordinator_key]).fetchone()[0]

    @_locked
    def stored_releases(self, coordinator_key: str) -> list[tuple[int, bytes]]:
        """(version, signed body) of every release kept from this coordinator, newest first."""
        rows = self.db.execute("select version, body from sync_releases where coordinator_key = ? "
                               "order by version desc", [coordinator_key]).fetchall()
        return [(int(version), bytes(body)) for version, body in rows]

    @_locked
    def stored_release(self, coordinator_key: str, version: int) -> bytes | None:
        """The signed body of one kept release, or None."""
        row = self.db.execute("select body from sync_releases where coordinator_key = ? and version = ?",
                              [coordinator_key, version]).fetchone()
        return None if row is None else bytes(row[0])

    @_locked
    def events_of(self, kinds: Iterable[str], limit: int | None = 100) -> list[dict[str, Any]]:
        """The events of these kinds, newest first."""
        kinds = list(kinds)
        sql = (f"select id, at, kind, payload from events where kind in ({', '.join('?' * len(kinds))}) "
               "order by id desc" + (f" limit {int(limit)}" if limit else ""))
        return list(self.db.query(sql, kinds)) if kinds else []

    @_locked
    def release_count(self) -> int:
        """How many releases are kept, from every coordinator."""
        return self.db.execute("select count(*) from sync_releases").fetchone()[0]

    # -- export --------------------------------------------------------------------------

    @_locked
    def health(self) -> dict[str, Any]:
        """SQLite's integrity check, the journal mode and the migrations applied, for `ownrec doctor`."""
        return {"integrity": self.db.execute("pragma integrity_check").fetchone()[0],
                "journal_mode": self.db.execute("pragma journal_mode").fetchone()[0],
                "migrations": [row["name"] for row in self.db["_migrations"].rows]}

    @_locked
    def export(self) -> dict[str, Any]:
        """Everything personal in the store, as plain JSON-able data."""
        return {
            "interactions": [
                {key: value for key, value in row.items() if key not in ("source", "external_id")}
                | {"item_ref": f"{row['source']}:{row['external_id']}"}
                for row in self.db.query(
                    "select interactions.*, items.source, items.external_id, items.title from interactions"
                    " join items on items.id = interactions.item_id order by interactions.at, interactions.id"
                )
            ],
            "items": [
                {**row, "metadata": json.loads(row["metadata"] or "{}")}
                for row in self.db["items"].rows_where(order_by="id")
            ],
            "adapters": list(self.db["adapters"].rows_where(order_by="kind, version")),
            "state": {row["key"]: json.loads(row["value"]) for row in self.db["state"].rows},
            "events": [
                {**row, "payload": json.loads(row["payload"] or "{}")}
                for row in self.db["events"].rows_where(order_by="id")
            ],
            # what this device uploaded to the federation, round by round (the releases it
            # downloaded are public and not personal)
            "sync_ledger": list(self.db["sync_ledger"].rows_where(order_by="id")),
        }

    def _columns(self, table: str) -> list[str]:
        return [column.name for column in self.db[table].columns]
