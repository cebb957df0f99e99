"""Numbered schema migrations, applied in order and recorded in `_migrations`.

Add a migration by appending a function; never edit one that has shipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlite_utils

MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["items"].create(
        {
            "id": int,
            "source": str,  # where the item came from: "movielens-100k", "csv:films.csv", "rss:feed.xml"
            "external_id": str,  # its id in that source
            "title": str,
            "text": str,  # what the encoder reads
            "text_hash": str,  # sha256 of text: the embedding cache key
            "metadata": str,  # JSON object: year, genres, url, author, ...
            "added_at": float,
        },
        pk="id",
        not_null={"source", "external_id", "title", "text", "text_hash"},
    )
    db["items"].create_index(["source", "external_id"], unique=True)
    db["items"].create_index(["text_hash"])
    db["items"].enable_fts(["title", "text"], create_triggers=True, tokenize="porter")

    db["interactions"].create(
        {
            "id": int,
            "item_id": int,
            "kind": str,  # like | dislike | skip | rating | open
            "value": float,  # the rating (0.5-5 stars) for kind=rating, else NULL
            "at": float,  # unix time of the feedback itself (an import keeps the original date)
            "origin": str,  # "tui", "cli", "import:letterboxd", ...
        },
        pk="id",
        foreign_keys=[("item_id", "items", "id")],
        not_null={"item_id", "kind", "at"},
    )
    db["interactions"].create_index(["item_id"])
    db["interactions"].create_index(["at"])

    db["embeddings"].create(
        {"model_id": str, "text_hash": str, "vector": bytes},
        pk=("model_id", "text_hash"),
    )

    db["adapters"].create(
        {
            "id": int,
            "kind": str,  # "personal" (never leaves the device) | "global" (from the federation)
            "version": int,
            "path": str,  # relative to the data directory
            "sha256": str,
            "created_at": float,
            "meta": str,  # JSON: training counts, loss, model id
        },
        pk="id",
        not_null={"kind", "version", "path", "sha256", "created_at"},
    )
    db["adapters"].create_index(["kind", "version"], unique=True)

    db["events"].create(
        {"id": int, "at": float, "kind": str, "payload": str},
        pk="id",
        not_null={"at", "kind"},
    )

    db["state"].create({"key": str, "value": str}, pk="key")


@migration
def m002_traits(db: sqlite_utils.Database) -> None:
    db["trait_state"].create(
        {
            "trait_id": str,
            "pinned": int,
            "pinned_value": float,  # the reading training must keep while pinned
            "hidden": int,
            "evidence_since": float,  # after `forget`: only feedback from then on is evidence
        },
        pk="trait_id",
    )
    db["trait_edits"].create(
        {
            "id": int,
            "at": float,
            "trait_id": str,
            "action": str,  # set | pin | unpin | hide | show | reset | forget
            "detail": str,  # JSON: values before and after, and the change made to p_u (for undo)
            "undone": int,
        },
        pk="id",
        not_null={"at", "trait_id", "action"},
    )
    db["trait_edits"].create_index(["trait_id", "id"])
    db["trait_snapshots"].create(
        {"id": int, "at": float, "trait_id": str, "value": float, "confidence": float},
        pk="id",
        not_null={"at", "trait_id", "value", "confidence"},
    )
    db["trait_snapshots"].create_index(["trait_id", "at"])


@migration
def m003_conversations(db: sqlite_utils.Database) -> None:
    # `ownrec ask`: what was asked and what the person was shown (see agent.core.store.conversations).
    db["conversations"].create(
        {"id": int, "title": str, "created": float, "updated": float},
        pk="id",
        not_null={"title", "created", "updated"},
    )
    db["messages"].create(
        {
            "id": int,
            "conversation_id": int,
            "role": str,  # user | assistant
            "text": str,  # for the assistant: the checked reply, as shown
            "items": str,  # JSON list: the ranker's items shown with the reply ({id, ref, title, score, reason})
            "created": float,
            "meta": str,  # JSON: filters, mentioned ids, removed sentences, timings, model id
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
        not_null={"conversation_id", "role", "text", "created"},
    )
    db["messages"].create_index(["conversation_id", "id"])


@migration
def m004_sync_ledger(db: sqlite_utils.Database) -> None:
    # Federated sync (agent.core.sync.client): one row per upload, shown to the person, and the signed
    # global adapter releases this device verified.
    db["sync_ledger"].create(
        {
            "id": int,
            "at": float,
            "coordinator_key": str,  # hex Ed25519 key the coordinator signs releases with
            "round_id": str,
            "state": str,  # uploaded | released | aborted | cancelled (m007: pending | released | withheld | aborted | dropped)
            "bytes_sent": int,  # request bodies and headers sent in the round
            "parameters": int,
            "pre_clip_norm": float,
            "clip_norm": float,
            "noise_multiplier": float,
            "noise_std": float,  # what this client added per coordinate: z*C/sqrt(min survivors)
            "cohort_size": int,
            "target_delta": float,
            "epsilon_server": float,  # as the coordinator reports it (over all its releases)
            "delta_server": float,
            "epsilon_client": float,  # as this client computes it (over the rounds it took part in)
            "release_version": int,
        },
        pk="id",
        not_null={"at", "coordinator_key", "round_id", "state"},
    )
    db["sync_releases"].create(
        {"coordinator_key": str, "version": int, "received_at": float, "body": bytes},
        pk=("coordinator_key", "version"),
        not_null={"received_at", "body"},
    )


@migration
def m005_public_signals(db: sqlite_utils.Database) -> None:
    # What is public about an item (its source's counts, average rating, date), kept beside the item and
    # apart from the person's own feedback. NULL where the source does not say.
    for column in ("popularity", "avg_rating", "published"):
        db["items"].add_column(column, float)
    # Release 0, the public prior (agent.federation.prior), kept in the database so that a copy of this one
    # file carries it; its sha256 as recorded when it was built.
    db["priors"].create(
        {"version": int, "created_at": float, "source": str, "sha256": str, "body": bytes},
        pk="version",
        not_null={"created_at", "sha256", "body"},
    )


@migration
def m006_message_state(db: sqlite_utils.Database) -> None:
    # A reply is stored as it streams: "streaming" while it is written, "complete" when it ended, "interrupted"
    # when it was stopped (Esc, the app closed) with the text shown so far. Earlier replies were stored whole.
    db["messages"].add_column("state", str, not_null_default="complete")


@migration
def m007_sync_round_epsilon(db: sqlite_utils.Database) -> None:
    # Each upload's epsilon for its round alone: with every other member of the cohort honest (the distributed
    # noise z*C the accounting counts), and in the worst case, this device's own noise the only noise in the
    # sum (its privacy floor, agent.federation.accounting.device_noise). Earlier rows have neither.
    for column in ("epsilon_round_honest", "epsilon_round_worst"):
        db["sync_ledger"].add_column(column, float)


@migration
def m008_sync_ledger_settlement(db: sqlite_utils.Database) -> None:
    # A ledger row is now written as "pending" before the masked input leaves the device, and settled from the
    # coordinator's signed record of the round (agent.core.sync.client): "released" or "withheld" (summed, so
    # spent), "aborted" or "dropped" (never summed). The states that meant "the end was not seen here" become
    # pending, to be settled at the next contact like any other.
    if "settled_at" in db["sync_ledger"].columns_dict:
        return  # a database that ran this before it was renumbered after m007_sync_round_epsilon (as m007)
    db["sync_ledger"].add_column("settled_at", float)
    db["sync_ledger"].add_column("outcome", str)  # the coordinator's word on the round, as shown in the log
    db.execute("update sync_ledger set state = 'pending' where state in ('uploaded', 'cancelled', 'unknown')")
    db.execute("update sync_ledger set settled_at = at where state != 'pending'")


@migration
def m009_prior_co_liked(db: sqlite_utils.Database) -> None:
    # What people went on to like after each item (agent.core.ranker.co_liked), built with release 0 from the
    # same public interactions and kept beside it, with its own sha256. NULL in a prior built before it.
    db["priors"].add_column("co_liked", bytes)
    db["priors"].add_column("co_liked_sha256", str)


def apply_migrations(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations not yet recorded; return the names applied. Each runs in its own
    transaction together with its record, so a crash leaves the schema at a known version."""
    table = db["_migrations"]
    if not table.exists():
        table.create({"name": str, "applied_at": float}, pk="name")
    done = {row["name"] for row in table.rows}
    applied = []
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with db.atomic():
            fn(db)
            table.insert({"name": fn.__name__, "applied_at": time.time()})
        applied.append(fn.__name__)
    return applied
