"""Encoding after an import goes a page at a time, and an import stopped after its rows were written (killed
before its items were encoded or the model retrained) is finished by the next import, the next feed or feedback,
or the next start, which say so. (Killed for real, at random moments: test_kill_safety.py.)"""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from agent.core.api import Agent
from agent.core.config import Config
from agent.core.importers import import_file
from agent.core.store import NewItem, Store, UnfinishedImports, text_hash


@pytest.fixture
def agent(encoder):
    return Agent(Store.open(), Config(), encoder)


def rated_csv(path, rows: int, every: int = 3):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "description", "rating"])
        for i in range(rows):
            writer.writerow([f"s{i}", f"Story {i}", f"A tale of the {['river', 'forest', 'tower'][i % 3]} number {i}.",
                             (i % 5) + 1 if i % every == 0 else ""])
    return path


def last_retrain(agent: Agent) -> dict:
    return next(version for version in agent.store.adapter_versions("personal") if '"retrain"' in version["meta"])


def test_encoding_goes_a_page_at_a_time_and_gives_the_vectors_of_one_call(agent, encoder):
    # Pages of distinct texts in text-hash order, each encoded in one call, as one pass over all texts did (the
    # int8 encoder's vectors depend on the batch a text is in, by float noise).
    texts = [f"Film {i:04d} about {['ships', 'cooks', 'spies'][i % 3]} in the year {1000 + i:04d}." for i in range(700)]
    agent.store.upsert_items(NewItem("t", str(i), f"Film {i}", text, {}) for i, text in enumerate(texts))
    pages = []
    read_page = agent.store.texts_without_embedding
    agent.store.texts_without_embedding = lambda *args: pages.append(len(rows := read_page(*args))) or rows
    progress = []
    assert agent.ensure_embeddings(lambda done, total: progress.append((done, total))) == 700
    assert pages == [256, 256, 188, 0]  # a page of texts in memory at a time (batch 32 x 8)
    assert progress == [(256, 700), (512, 700), (700, 700)]
    stored = agent.store.cached_embeddings(encoder.model_id, [text_hash(text) for text in texts])
    by_hash = sorted(texts, key=text_hash)
    expected = np.concatenate([encoder.encode(by_hash[start:start + 256]) for start in range(0, 700, 256)])
    assert np.array_equal(np.stack([stored[text_hash(text)] for text in by_hash]), expected)
    # Items repeating texts already encoded, in any page, cost nothing.
    agent.store.upsert_items(NewItem("again", str(i), "Again", texts[i], {}) for i in (3, 300, 650))
    assert agent.ensure_embeddings() == 0 and len(agent.catalog()) == 703


def test_an_import_stopped_after_its_rows_is_finished_by_the_next_import_which_says_so(agent, tmp_path):
    path = rated_csv(tmp_path / "history.csv", 60)
    # What a kill after the rows' commit leaves: the rows, none encoded, the model not retrained.
    stopped = import_file(agent.store, path)
    assert stopped.items_added == 60 and stopped.feedback_added == 20
    assert [entry["path"] for entry in UnfinishedImports(agent.store).entries()] == [str(path)]
    assert agent.store.adapter_versions("personal") == []
    said = []
    again = agent.import_file(path, say=said.append)
    assert again.items_added == 0 and again.feedback_added == 0  # the same file adds nothing ...
    (sentence,) = said
    assert re.fullmatch(r"finishing the import of history.csv, interrupted after its rows were saved at "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d: encoding 60 items, retraining your model on its feedback", sentence)
    assert len(agent.catalog()) == 60  # ... and its items are encoded, the model retrained on its feedback
    meta = json.loads(last_retrain(agent)["meta"])
    assert meta["through"] == agent.store.latest_interaction().id and meta["labels"] > 0
    assert UnfinishedImports(agent.store).entries() == []
    said.clear()
    agent.import_file(path, say=said.append)
    assert said == []  # finished: nothing more to say


def test_the_next_feed_or_feedback_finishes_it_and_a_catalog_alone_needs_no_retraining(agent, tmp_path):
    catalog = tmp_path / "catalog.csv"
    with open(catalog, "w", encoding="utf-8") as handle:
        handle.write("id,title\n" + "".join(f"c{i},Catalog entry {i}\n" for i in range(5)))
    import_file(agent.store, catalog)
    said = []
    assert agent.finish_interrupted_imports(say=said.append)
    assert said[0].endswith(": encoding 5 items") and said[0].startswith("finishing the import of catalog.csv")
    assert agent.store.adapter_versions("personal") == [] and len(agent.catalog()) == 5
    assert not agent.finish_interrupted_imports(say=said.append) and len(said) == 1
