"""The default model's Q8_0 runtime copy (agent.core.llm.requantize): the conversion keeps the
model, and the cached copy is reused only while it checks out. A tiny GGUF built here stands in for
the model; the real one is loaded by tests/unit/test_llm.py."""

from __future__ import annotations

import json
import os

import gguf
import numpy as np
import pytest
from gguf.quants import dequantize, quantize

from agent.core.llm import requantize
from agent.core.llm.requantize import find_prepared, prepare_runtime_file, runtime_path

Q = gguf.GGMLQuantizationType


def _tiny_gguf(path, seed=0):
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_Q4_1))
    writer.add_token_list(["<a>", "b", "c"])
    writer.add_block_count(1)
    weights = (rng.standard_normal((8, 64)) * 0.05 + rng.normal(0, 0.01, (8, 1))).astype(np.float32)
    q41 = quantize(weights, Q.Q4_1)
    writer.add_tensor("blk.0.ffn_up.weight", q41, raw_shape=q41.shape, raw_dtype=Q.Q4_1)
    norm = rng.standard_normal(64).astype(np.float32)
    writer.add_tensor("blk.0.attn_norm.weight", norm)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dequantize(q41, Q.Q4_1), norm


def _tensor(reader, name):
    return next(t for t in reader.tensors if t.name == name)


def test_q4_1_weights_become_q8_0_holding_the_same_values_and_the_rest_is_copied(tmp_path):
    source = tmp_path / "tiny.Q4_1.gguf"
    weights, norm = _tiny_gguf(source)
    target = tmp_path / "tiny.Q8_0.gguf"
    digest = requantize.requantize(source, target)
    reader = gguf.GGUFReader(str(target))
    up = _tensor(reader, "blk.0.ffn_up.weight")
    assert up.tensor_type == Q.Q8_0 and [int(n) for n in up.shape] == [64, 8]
    values = dequantize(np.asarray(up.data), Q.Q8_0)
    block_scale = np.abs(weights.reshape(-1, 32)).max(axis=1, keepdims=True)
    # Q8_0 rounds each value to a 1/127 step of its block's largest magnitude (plus f16 scale rounding)
    assert np.all(np.abs(values.reshape(-1, 32) - weights.reshape(-1, 32)) <= block_scale / 254 * 1.01 + 1e-7)
    assert np.array_equal(np.asarray(_tensor(reader, "blk.0.attn_norm.weight").data), norm)
    assert reader.fields["general.file_type"].contents() == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert reader.fields["general.name"].contents() == "tiny"
    assert reader.fields["tokenizer.ggml.tokens"].contents() == ["<a>", "b", "c"]
    assert digest == requantize.sha256_file(target)
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_runtime_file_is_built_once_then_reused_and_rebuilt_when_damaged_or_stale(tmp_path):
    source = tmp_path / "tiny.Q4_1.gguf"
    _tiny_gguf(source)
    cache = tmp_path / "cache"
    path, how = prepare_runtime_file(source, "a" * 64, cache)
    assert how == "built" and path == runtime_path(cache, source.name) == cache / "tiny.Q8_0.gguf"
    record = json.loads((cache / "tiny.Q8_0.gguf.json").read_text())
    assert record["source_sha256"] == "a" * 64 and record["sha256"] == requantize.sha256_file(path)
    assert prepare_runtime_file(source, "a" * 64, cache) == (path, "cached")

    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[-5] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(damaged))
    assert find_prepared(source.name, "a" * 64, cache)[1].startswith("damaged")
    assert prepare_runtime_file(source, "a" * 64, cache) == (path, "built")
    assert path.read_bytes() == good

    # another source (a reinstalled package with another file) makes it stale
    assert find_prepared(source.name, "b" * 64, cache)[1] == "made from another source or recipe"
    assert prepare_runtime_file(source, "b" * 64, cache)[1] == "built"


def test_a_crash_while_writing_leaves_the_previous_copy_in_use(tmp_path, monkeypatch):
    source = tmp_path / "tiny.Q4_1.gguf"
    _tiny_gguf(source)
    cache = tmp_path / "cache"
    path, _ = prepare_runtime_file(source, "a" * 64, cache)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_runtime_file(source, "a" * 64, cache, force=True)
    assert path.read_bytes() == before and not list(cache.glob(".*.tmp"))
    monkeypatch.undo()
    assert prepare_runtime_file(source, "a" * 64, cache) == (path, "cached")


def test_an_unreadable_source_is_refused_without_touching_the_cache(tmp_path):
    source = tmp_path / "broken.Q4_1.gguf"
    source.write_bytes(b"GGUF" + os.urandom(64))
    with pytest.raises(requantize.RequantizeError, match="cannot read"):
        prepare_runtime_file(source, "a" * 64, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())
