"""The coordinator's storage: one small interface, SQLite by default, PostgreSQL for several workers.

What is stored (and nothing else): registered device public keys, the enrolment token each was admitted
with (tokens are stored as hashes, `admission`), rate-limit buckets, and the request nonces seen within
the replay window; per round its public configuration, the participants' public keys and progress,
the sealed share envelopes (ciphertext the coordinator cannot open), the masked input vectors, the
shares revealed in the unmasking stage (deleted once the round ends), and the unmasked cohort sum;
the signed releases of the global adapter; for the metrics, when each stage of a round ended and how many
completed it, and how many requests were refused for each reason. No individual update is ever stored unmasked.

Both backends run the same SQL (written with `?` placeholders; the PostgreSQL backend rewrites them).
`write()` is one transaction holding the coordinator-wide lock: SQLite takes its database write lock
at BEGIN IMMEDIATE (and a process lock, since the connection is shared by threads); PostgreSQL locks
the single row of `coordinator_lock` FOR UPDATE, so several uvicorn workers sharing one database apply
stage transitions one at a time and always see each other's committed state.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

SCHEMA = [
    """create table if not exists coordinator_lock (id integer primary key, held_at double precision)""",
    """create table if not exists coordinator_settings (key text primary key, value {blob} not null)""",
    """create table if not exists devices (
        device_id text primary key, public_key {blob} not null, registered_at double precision not null)""",
    # Admission (`admission`): only a hash of each code; which token enrolled which device; rate-limit buckets.
    """create table if not exists enrolment_tokens (
        token_id text primary key, token_hash text not null unique, created_at double precision not null,
        expires_at double precision not null, max_devices bigint not null, devices bigint not null,
        revoked_at double precision, note text)""",
    """create table if not exists device_enrolments (
        device_id text primary key, token_id text not null, enrolled_at double precision not null)""",
    """create table if not exists rate_limits (
        bucket text primary key, level double precision not null, updated_at double precision not null)""",
    """create table if not exists request_nonces (
        device_id text not null, nonce text not null, seen_at double precision not null,
        primary key (device_id, nonce))""",
    """create table if not exists rounds (
        round_id text primary key, state text not null, created_at double precision not null,
        deadline double precision not null, config text, base_version bigint not null,
        released_version bigint, reason text, sum_vector {blob}, summands bigint)""",
    """create table if not exists participants (
        round_id text not null, idx bigint not null, device_id text not null, stage bigint not null,
        channel_public {blob}, mask_public {blob}, primary key (round_id, idx), unique (round_id, device_id))""",
    """create table if not exists envelopes (
        round_id text not null, sender bigint not null, receiver bigint not null, nonce {blob} not null,
        ciphertext {blob} not null, primary key (round_id, sender, receiver))""",
    # Each client fetches the envelopes addressed to it: without this, every fetch scans the round's n*k rows.
    """create index if not exists envelopes_by_receiver on envelopes (round_id, receiver)""",
    """create table if not exists masked_inputs (
        round_id text not null, idx bigint not null, vector {blob} not null, primary key (round_id, idx))""",
    """create table if not exists revealed_shares (
        round_id text not null, holder bigint not null, owner bigint not null, kind bigint not null,
        value {blob} not null, primary key (round_id, holder, owner))""",
    """create table if not exists releases (
        version bigint primary key, round_id text, created_at double precision not null,
        noise_multiplier double precision, clamp_probability double precision, epsilon double precision,
        delta double precision, body {blob} not null)""",
    # Observability (`observability`, `metrics`): each stage's end, written with the state change that ends it,
    # and the refused requests counted by reason, so every worker's /metrics reports the same totals.
    """create table if not exists round_stage_ends (
        round_id text not null, stage text not null, ended_at double precision not null,
        seconds double precision not null, survivors bigint not null, primary key (round_id, stage))""",
    """create table if not exists refusal_counts (
        code text not null, status bigint not null, refusals bigint not null, primary key (code, status))""",
    # Privacy per device (`periods`), written when a cohort's sum is computed: each period its update was
    # summed in, and all its steps in one canonical text, so the most any device spent is one grouped read
    # of a row per device, however many rounds the coordinator has run.
    """create table if not exists device_steps (
        device_id text not null, period text not null, noise_multiplier double precision not null,
        clamp_probability double precision not null, primary key (device_id, period))""",
    """create table if not exists device_privacy (device_id text primary key, steps text not null)""",
    """create index if not exists device_privacy_by_steps on device_privacy (steps)""",
]
# Columns added after the first release of the schema: added to an existing database when it is opened.
ADDED_COLUMNS = [
    ("rounds", "noise_multiplier", "double precision"),  # the cohort's z, once its sum was computed
    ("rounds", "clamp_probability", "double precision"),  # ...and its quantization clamp's failure probability
    # The composition step its sum counts in (`periods`): the base version it trained on; for rounds summed
    # before concurrent cohorts, their own round id (each was a step of its own).
    ("rounds", "period", "text"),
]
# Indexes, created after the added columns exist. A device's rounds are read at every check-in (already in a
# cohort, already in the period, its privacy spent): without the first, each check-in scans every
# participant of every round ever; the second serves the count of summed cohorts (`periods.SpentCache`); the
# third, the cohorts of the current period, read at every check-in, status and upload.
INDEXES = [
    "create index if not exists participants_by_device on participants (device_id)",
    "create index if not exists rounds_by_period on rounds (period)",
    "create index if not exists rounds_by_version on rounds (base_version, state)",
]
# Rows of `coordinator_lock`: 1 was the coordinator-wide lock of old; MEMBERSHIP serialises who joins which
# cohort and the publishing of releases.
LOCK_IDS = {"membership": 2}


class Transaction(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]: ...
    for_update: str  # " for update" on PostgreSQL (lock the rows a select reads), "" on SQLite
    def lock(self, name: str) -> None: ...  # one of LOCK_IDS, until the transaction ends
    def lock_round(self, round_id: str) -> None: ...  # that round's row, until the transaction ends


class Storage(Protocol):
    url: str

    def write(self) -> Any: ...  # context manager yielding a Transaction (locks: Transaction.lock*)
    def read(self) -> Any: ...   # context manager yielding a Transaction (no lock)
    def close(self) -> None: ...


class _Cursor:
    """A Transaction over a DB-API connection; `rewrite` maps `?` placeholders to the driver's."""

    def __init__(self, connection: Any, rewrite: bool) -> None:
        self._connection = connection
        self._rewrite = rewrite
        # Only PostgreSQL has concurrent writers to lock against; a SQLite write holds the whole database.
        self.for_update = " for update" if rewrite else ""

    def lock(self, name: str) -> None:
        if self._rewrite:
            self.execute("select held_at from coordinator_lock where id = ? for update", [LOCK_IDS[name]])

    def lock_round(self, round_id: str) -> None:
        if self._rewrite:
            self.execute("select state from rounds where round_id = ? for update", [round_id])

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._rewrite else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = self._connection.execute(self._sql(sql), tuple(params))
        return cursor.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._connection.cursor().executemany(self._sql(sql), [tuple(r) for r in rows])

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        row = self._connection.execute(self._sql(sql), tuple(params)).fetchone()
        return None if row is None else tuple(_plain(v) for v in row) if self._rewrite else row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        rows = self._connection.execute(self._sql(sql), tuple(params)).fetchall()
        # sqlite3 already gives tuples of plain values (blobs as bytes): only a driver's rows need converting.
        return [tuple(_plain(v) for v in row) for row in rows] if self._rewrite else rows


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


class SQLiteStorage:
    """One connection shared by the server's threads, serialised by a lock (SQLite has one writer anyway)."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                           timeout=30.0)
        self._connection.execute("pragma journal_mode = wal")
        self._connection.execute("pragma synchronous = normal")
        self._lock = threading.RLock()
        with self.write() as tx:
            for statement in SCHEMA:
                tx.execute(statement.format(blob="blob"))
            for table, column, kind in ADDED_COLUMNS:
                if column not in {row[1] for row in tx.all(f"pragma table_info({table})")}:
                    tx.execute(f"alter table {table} add column {column} {kind}")
            for statement in INDEXES:
                tx.execute(statement)
            for lock_id in (1, *LOCK_IDS.values()):
                tx.execute("insert or ignore into coordinator_lock (id, held_at) values (?, 0)", [lock_id])

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        with self._lock:
            self._connection.execute("begin immediate")
            try:
                yield _Cursor(self._connection, rewrite=False)
            except BaseException:
                self._connection.execute("rollback")
                raise
            self._connection.execute("commit")

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        with self._lock:
            yield _Cursor(self._connection, rewrite=False)

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class PostgresStorage:
    """A small pool of psycopg 3 connections (at most `max_connections` per process, each lent to one
    transaction at a time: uvicorn's thread pool has 40 threads a worker, and a connection per thread would
    take PostgreSQL's whole allowance with a few workers); a write locks only the rows it names (the module
    docstring). Transactions never nest, so a thread holds at most one connection."""

    def __init__(self, url: str, max_connections: int = 10) -> None:
        import psycopg  # imported here: SQLite deployments need not have it

        self._psycopg = psycopg
        self.url = url
        self._idle: list[Any] = []
        self._connections: list[Any] = []
        self._available = threading.BoundedSemaphore(max_connections)
        self._guard = threading.Lock()
        with self.write() as tx:
            tx.execute("select pg_advisory_xact_lock(4242)")  # two workers starting together create the schema once
            for statement in SCHEMA:
                tx.execute(statement.format(blob="bytea"))
            for table, column, kind in ADDED_COLUMNS:
                tx.execute(f"alter table {table} add column if not exists {column} {kind}")
            for statement in INDEXES:
                tx.execute(statement)
            for lock_id in (1, *LOCK_IDS.values()):
                tx.execute("insert into coordinator_lock (id, held_at) values (?, 0) on conflict do nothing", [lock_id])

    @contextmanager
    def _lent(self) -> Iterator[Any]:
        with self._available:
            with self._guard:
                connection = self._idle.pop() if self._idle else None
            if connection is None or connection.closed:
                connection = self._psycopg.connect(self.url, autocommit=True)
                with self._guard:
                    self._connections.append(connection)
            try:
                yield connection
            finally:
                with self._guard:
                    self._idle.append(connection)

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        with self._lent() as connection, connection.transaction():
            yield _Cursor(connection, rewrite=True)

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        with self._lent() as connection, connection.transaction():
            yield _Cursor(connection, rewrite=True)

    def close(self) -> None:
        with self._guard:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
            self._idle.clear()


def open_storage(url: str) -> SQLiteStorage | PostgresStorage:
    """`sqlite:///path/to/file` (relative or absolute) or `postgresql://user@host:port/db`."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"a SQLite URL is sqlite:///path/to/file.sqlite3, not {url!r}")
        return SQLiteStorage(Path(path))
    if parsed.scheme in ("postgresql", "postgres"):
        return PostgresStorage(url)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or postgresql://...")
