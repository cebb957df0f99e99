"""The personal LoRA: torch training, GGUF export, llama.cpp loading, versions and the CLI.

Real models throughout: SmolLM2 in torch (dequantized from the GGUF, loaded once per module) and
the same GGUF in llama.cpp, each on one thread (on two cores that other work keeps busy, a
two-thread pool stalls at every barrier: ten times slower, not twice as fast). llama.cpp runs the Q4_1 weights with 8-bit activations while torch
runs their float32 dequantization, so absolute logits differ slightly; the checks compare the
*change* an adapter causes on each side.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.core import paths
from agent.core.api import Agent
from agent.core.llm import judge
from agent.core.llm.adapter import (
    AdapterRefused,
    BaseModel,
    LoraWeights,
    check_adapter,
    read_adapter,
    write_adapter,
)
from agent.core.llm.model import LLM, default_model_path
from agent.core.lora import versions
from agent.core.lora.base import load_base
from agent.core.lora.examples import synthetic_examples
from agent.core.lora.job import TrainingSettings
from agent.core.lora.train import PATIENCE, Tokenized, evaluate, p_yes, split_rows, train_examples
from helpers import agent_from_template

PROFILE = judge.Profile(("Star Voyage (1979)", "Robot Dawn (1984)", "Orbit (1995)"),
                        ("Paris Kisses (1992)", "Wedding Season (1997)"), (("Dark", 0.7),))
ITEM = "Fargo (1996). Crime, Drama, Thriller. A pregnant police chief investigates roadside murders."

LIKED = [("Star Voyage", "Star Voyage (1979). Sci-Fi, Adventure. A starship crew explores a distant galaxy."),
         ("Robot Dawn", "Robot Dawn (1984). Sci-Fi, Action. Androids rise against their makers on Mars."),
         ("Orbit", "Orbit (1995). Sci-Fi, Thriller. Astronauts stranded on a failing space station."),
         ("Alien Tide", "Alien Tide (1988). Sci-Fi, Horror. An alien hunts the crew of a cargo spaceship.")]
DISLIKED = [("Paris Kisses", "Paris Kisses (1992). Romance, Comedy. Two strangers fall in love in Paris."),
            ("Wedding Season", "Wedding Season (1997). Romance. A bridesmaid falls for the groom's brother."),
            ("Summer Hearts", "Summer Hearts (1985). Romance, Drama. A summer love affair by the sea."),
            ("Love Letters", "Love Letters (1994). Romance. Old letters reunite two lovers after decades.")]
HELD_OUT_LIKED_STYLE = ["Galaxy Wars (1983). Sci-Fi, Action. Rebels fight an empire across the stars.",
                        "Red Planet (2000). Sci-Fi. The first crewed mission to Mars goes wrong."]
TRAIN_PROFILE = judge.Profile(tuple(t for t, _ in LIKED), tuple(t for t, _ in DISLIKED))


@pytest.fixture(scope="module")
def torch_base():
    base = load_base(threads=1)  # kept in-process: the CLI test below reuses it instead of loading again
    base.reset_lora(0)
    return base


@pytest.fixture(scope="module")
def llm(llm_cache_dir) -> LLM:
    return LLM.load(threads=1, cache_dir=llm_cache_dir)


@pytest.fixture
def clean_llm(llm):
    llm.clear_adapter()
    yield llm
    llm.clear_adapter()


def _margin(logits: np.ndarray, base) -> float:
    return float(logits[base.yes_id] - logits[base.no_id])


def _random_lora(torch_base, std: float, targets: tuple[str, ...] | None = None, seed: int = 1) -> LoraWeights:
    """The starting LoRA (random A) with a random B on `targets` (all four when None)."""
    torch_base.reset_lora(0)
    weights = torch_base.weights()
    rng = np.random.default_rng(seed)
    for key, (A, B) in weights.pairs.items():
        if targets is None or key[1] in targets:
            weights.pairs[key] = (A, rng.normal(0, std, B.shape).astype(np.float32))
    return weights


def _deltas(torch_base, llm, weights: LoraWeights, path: Path, ids: list[int], permute: bool = True):
    """(torch delta, llama.cpp delta) of the next-token logits that `weights` cause."""
    torch_base.reset_lora(0)
    torch_before = torch_base.last_logits(ids)
    torch_base.load_weights(weights)
    torch_after = torch_base.last_logits(ids)
    torch_base.reset_lora(0)
    llm.clear_adapter()
    llama_before = llm.next_token_logits(ids)
    write_adapter(path, weights, torch_base.base, permute=permute)
    llm.set_adapter(path)
    llama_after = llm.next_token_logits(ids)
    llm.clear_adapter()
    return torch_after - torch_before, llama_after - llama_before


# -- tokens ---------------------------------------------------------------------------------------


def test_transformers_and_llama_cpp_tokenize_the_judge_prompt_alike(torch_base, llm):
    for profile, text in [(PROFILE, ITEM), (judge.Profile(), "Amélie (2001). Comedy, Romance. « Le fabuleux » — 東京"),
                          (TRAIN_PROFILE, LIKED[0][1])]:
        hf = judge.tokens(torch_base.tokenize, profile, text)
        llama = judge.tokens(llm.tokenize, profile, text)
        assert hf == llama
        assert hf[0][0] == llm.tokenize("<|im_start|>")[0]  # no BOS in front: the GGUF adds none
    assert torch_base.tokenize(judge.YES) == llm.tokenize(judge.YES) == [torch_base.yes_id]
    assert torch_base.tokenize(judge.NO) == llm.tokenize(judge.NO) == [torch_base.no_id]


# -- export and loading ---------------------------------------------------------------------------


def test_a_zero_adapter_leaves_llama_cpp_logits_unchanged(torch_base, clean_llm, tmp_path):
    ids = torch_base.judge_ids(PROFILE, ITEM)
    before = clean_llm.next_token_logits(ids)
    torch_base.reset_lora(0)
    zero = torch_base.weights()
    assert all(not B.any() and A.any() for A, B in zero.pairs.values())  # B = 0, A random: as training starts
    path = tmp_path / "zero.gguf"
    write_adapter(path, zero, torch_base.base)
    loaded = clean_llm.set_adapter(path)
    assert loaded is not None and clean_llm.adapter is loaded
    assert loaded.info.rank == 8 and loaded.info.tensors == 30 * 4 * 2
    np.testing.assert_allclose(clean_llm.next_token_logits(ids), before, atol=1e-4, rtol=0)


def test_an_adapter_changes_llama_cpp_logits_the_way_torch_predicts(torch_base, clean_llm, tmp_path):
    ids = torch_base.judge_ids(PROFILE, ITEM)
    weights = _random_lora(torch_base, 0.3)
    torch_delta, llama_delta = _deltas(torch_base, clean_llm, weights, tmp_path / "random.gguf", ids)
    assert np.abs(torch_delta).mean() > 0.5  # the adapter really moves the logits
    assert np.corrcoef(torch_delta, llama_delta)[0, 1] > 0.95
    torch_margin, llama_margin = _margin(torch_delta, torch_base), _margin(llama_delta, torch_base)
    assert abs(torch_margin) > 0.5
    assert np.sign(torch_margin) == np.sign(llama_margin)
    assert abs(llama_margin - torch_margin) < 0.35 * abs(torch_margin)


def test_without_the_rotary_permutation_llama_cpp_diverges(torch_base, clean_llm, tmp_path):
    """Only Q and K are adapted: exactly the tensors the permutation concerns. The same check
    that passes with it fails without it, so the test above can fail."""
    ids = torch_base.judge_ids(PROFILE, ITEM)
    weights = _random_lora(torch_base, 0.3, ("attn_q", "attn_k"))
    right = _deltas(torch_base, clean_llm, weights, tmp_path / "permuted.gguf", ids)
    wrong = _deltas(torch_base, clean_llm, weights, tmp_path / "unpermuted.gguf", ids, permute=False)
    assert np.corrcoef(*right)[0, 1] > 0.9
    assert np.corrcoef(*wrong)[0, 1] < 0.6
    # the file holds B permuted; reading it back undoes that exactly
    back = read_adapter(tmp_path / "permuted.gguf", torch_base.base)
    for key, (A, B) in weights.pairs.items():
        np.testing.assert_array_equal(back.pairs[key][0], A)
        np.testing.assert_array_equal(back.pairs[key][1], B)
    raw = read_adapter(tmp_path / "unpermuted.gguf", torch_base.base)  # read as if permuted
    assert not np.array_equal(raw.pairs[(0, "attn_q")][1], weights.pairs[(0, "attn_q")][1])


@pytest.fixture(scope="module")
def good_adapter(torch_base, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("adapters") / "good.gguf"
    write_adapter(path, _random_lora(torch_base, 0.1), torch_base.base)
    torch_base.reset_lora(0)
    return path


def _shrunk(base: BaseModel) -> BaseModel:
    return BaseModel(base.architecture, base.model_id, base.layers, 512, 8, 4, 64)


@pytest.mark.parametrize("make, message", [
    (lambda base, good, tmp: write_adapter(tmp, LoraWeights.zeros(_shrunk(base), 4), _shrunk(base)) and tmp,
     "has shape (4, 512); the loaded model needs (4, 576)"),
    (lambda base, good, tmp: write_adapter(tmp, LoraWeights.zeros(base), BaseModel(
        "gemma3", base.model_id, base.layers, base.embedding, base.heads, base.kv_heads, base.head_dim)) and tmp,
     "was made for a gemma3 model; the loaded model is llama"),
    (lambda base, good, tmp: write_adapter(tmp, LoraWeights.zeros(base), BaseModel(
        "llama", "SmolLM2-360M-Instruct-Q8_0-0123456789ab", base.layers, base.embedding, base.heads,
        base.kv_heads, base.head_dim)) and tmp,
     "was trained on SmolLM2-360M-Instruct-Q8_0-0123456789ab; the loaded model is SmolLM2-135M-Instruct"),
    (lambda base, good, tmp: tmp.write_bytes(good.read_bytes()[: good.stat().st_size // 2]) and tmp,
     "is truncated"),
    (lambda base, good, tmp: tmp.write_bytes(good.read_bytes()[:200]) and tmp, "truncated or corrupt"),
    (lambda base, good, tmp: tmp.write_text("not a model at all\n" * 10) and tmp, "is not a GGUF model"),
    (lambda base, good, tmp: default_model_path(), "is a GGUF model, not a LoRA adapter"),
])
def test_an_adapter_for_another_base_is_refused_and_the_model_is_unchanged(torch_base, clean_llm, good_adapter,
                                                                          tmp_path, make, message):
    ids = torch_base.judge_ids(PROFILE, ITEM)
    good = good_adapter
    clean_llm.set_adapter(good)
    before = clean_llm.next_token_logits(ids)
    bad = make(torch_base.base, good, tmp_path / "bad.gguf")
    with pytest.raises(AdapterRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        clean_llm.set_adapter(bad)
    assert clean_llm.adapter is not None and clean_llm.adapter.path == good
    np.testing.assert_array_equal(clean_llm.next_token_logits(ids), before)
    with pytest.raises(AdapterRefused):
        check_adapter(bad, clean_llm.base_description())


# -- training -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(torch_base):
    """A few steps on a small synthetic history: sci-fi liked, romance disliked."""
    examples = synthetic_examples(LIKED, DISLIKED, TRAIN_PROFILE)
    torch_base.reset_lora(0)
    before = p_yes(torch_base, TRAIN_PROFILE, HELD_OUT_LIKED_STYLE)
    # All eight trained on: this measures what training does to the model (holding out is tested apart; with
    # two of eight held out the unseen films' p_yes is noise)
    result = train_examples(torch_base, examples, TrainingSettings(steps=8, batch=4, learning_rate=2e-3, threads=1,
                                                                   held_out_share=0.0))
    after = p_yes(torch_base, TRAIN_PROFILE, HELD_OUT_LIKED_STYLE)
    torch_base.reset_lora(0)
    return result, before, after


def test_training_lowers_the_loss_and_raises_p_yes_on_liked_style_items(trained):
    result, before, after = trained
    assert result.step == 8 and not result.cancelled and len(result.losses) == 8
    assert result.loss_after < result.loss_before - 0.15, (result.loss_before, result.loss_after)
    assert (after > before + 0.1).all(), (before, after)


def test_the_trained_adapter_moves_llama_cpp_as_it_moves_torch(trained, torch_base, clean_llm, tmp_path):
    result = trained[0]
    ids = torch_base.judge_ids(TRAIN_PROFILE, HELD_OUT_LIKED_STYLE[0])
    torch_delta, llama_delta = _deltas(torch_base, clean_llm, result.weights, tmp_path / "trained.gguf", ids)
    torch_margin, llama_margin = _margin(torch_delta, torch_base), _margin(llama_delta, torch_base)
    assert torch_margin > 0.4  # toward "Yes" for a sci-fi film
    assert llama_margin > 0.5 * torch_margin and abs(llama_margin - torch_margin) < 0.35 * torch_margin
    assert np.corrcoef(torch_delta, llama_delta)[0, 1] > 0.9


def test_examples_are_split_by_seed_and_a_few_say_they_are_too_few():
    from agent.core.lora.train import FEW_EXAMPLES, few_examples_warning, split_rows

    labels = [1.0] * 20 + [0.0] * 10
    train, held = split_rows(labels, seed=3)
    assert sorted(train + held) == list(range(30)) and split_rows(labels, seed=3) == (train, held)
    assert [labels[i] for i in held].count(1.0) == 4 and [labels[i] for i in held].count(0.0) == 2  # both answers
    assert split_rows(labels, seed=4) != (train, held)
    assert split_rows([1.0, 0.0, 1.0, 0.0], seed=3) == ([0, 1, 2, 3], [])  # too few to hold any out
    assert few_examples_warning(FEW_EXAMPLES, 4) is None
    assert "only 8 examples: too few to learn a taste from (the held-out figure rests on 2 of them)" in \
        few_examples_warning(8, 2)
    assert "none could be held out" in few_examples_warning(4, 0)


def test_training_holds_examples_out_keeps_the_best_and_stops_when_they_stop_improving(torch_base):
    examples = synthetic_examples(LIKED, DISLIKED, TRAIN_PROFILE)  # 8 examples: 2 held out, 6 trained on
    data = Tokenized.of(torch_base, examples)
    _, held_rows = split_rows(data.labels, 0)
    settings = TrainingSettings(steps=40, batch=4, learning_rate=2e-2, checkpoint_every=2, threads=1)
    result = train_examples(torch_base, data, settings)
    assert result.held_out == 2 and result.warning and "too few" in result.warning
    # what is kept is the LoRA that did best on the held-out examples, and it is what the model now holds
    assert result.held_out_after <= result.held_out_before
    assert evaluate(torch_base, data, rows=held_rows) == pytest.approx(result.held_out_after, abs=1e-5)
    # six examples are learnt by heart long before 40 steps: the held-out loss stops improving, and it stops
    assert result.stopped_early and result.step < 40 and result.best_step <= result.step - 2 * PATIENCE
    torch_base.reset_lora(0)


def test_cancel_then_resume_ends_where_an_uninterrupted_run_ends(torch_base, tmp_path):
    data = Tokenized.of(torch_base, synthetic_examples(LIKED[:2], DISLIKED[:2], TRAIN_PROFILE))
    settings = TrainingSettings(steps=4, batch=2, checkpoint_every=3, learning_rate=2e-3, seed=7, threads=1)
    whole = train_examples(torch_base, data, settings, evaluate_loss=False)

    checkpoint = tmp_path / "checkpoint.pt"
    cancel = threading.Event()
    seen = []

    def progress(step, total, loss):
        seen.append((step, total))
        if step == 2:
            cancel.set()

    first = train_examples(torch_base, data, settings, checkpoint=checkpoint, progress=progress, cancel=cancel,
                           evaluate_loss=False)
    assert first.cancelled and first.step == 2 and first.weights is None and seen == [(1, 4), (2, 4)]
    assert checkpoint.is_file()  # saved on cancel, before the every-3-steps checkpoint
    # resumes with the checkpoint's own examples and settings (batch, learning rate, seed)
    second = train_examples(torch_base, Tokenized([], [], [], "", {}), TrainingSettings(steps=4, threads=1),
                            checkpoint=checkpoint, evaluate_loss=False)
    assert (second.settings.batch, second.settings.learning_rate, second.settings.seed) == (2, 2e-3, 7)
    assert not second.cancelled and second.resumed_from == 2 and second.step == whole.step == 4
    assert second.losses == pytest.approx(whole.losses[2:], abs=1e-5)
    for key, (A, B) in whole.weights.pairs.items():
        np.testing.assert_allclose(second.weights.pairs[key][1], B, atol=1e-6)
        np.testing.assert_allclose(second.weights.pairs[key][0], A, atol=1e-6)
    assert np.abs(whole.weights.pairs[(0, "attn_v")][1]).max() > 0  # it did learn something
    torch_base.reset_lora(0)


# -- versions, the agent and the CLI --------------------------------------------------------------


@pytest.fixture
def demo_agent(demo_database, encoder, ownrec_home, llm):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    agent = agent_from_template(demo_database, encoder, llm)
    for item_id, kind in [(50, "like"), (181, "like"), (172, "like"), (98, "dislike")]:  # Star Wars... and Silence
        agent.store.add_interaction(item_id, kind)
    agent.store.add_interaction(1, "rating", 2.0)
    yield agent
    llm.clear_adapter()
    agent.close()


def test_examples_come_from_feedback_and_never_show_the_judged_item(demo_agent):
    found = demo_agent.lora_examples(seed=3)
    assert (found.positives, found.negatives, found.weak_negatives) == (3, 2, 2)
    judged = [e for e in found.examples if e.kind == "judged"]
    assert sorted(e.enjoyed for e in judged) == [False, False, True, True, True]
    for example in found.examples:
        assert example.title not in example.profile.liked + example.profile.disliked
        assert len(example.profile.liked) == 2 and len(example.profile.disliked) == 1  # the same for every example
    weak = [e for e in found.examples if e.kind == "weak"]
    assert all(not e.enjoyed and e.weight == 0.5 for e in weak)
    assert sum(e.weight for e in found.examples if e.enjoyed) == sum(e.weight for e in found.examples if not e.enjoyed)
    assert demo_agent.lora_examples(seed=3) == found  # deterministic


def test_a_profile_without_an_item_is_the_profile_that_excludes_it(demo_agent):
    for item_id in range(1, 13):
        demo_agent.store.add_interaction(item_id, "like")  # more likes than the profile shows
    wide = demo_agent.judge_profile(extra=1)
    assert len(wide.liked) == judge.LIKED_SHOWN + 1
    for item_id in (12, 5, 50, 98, 400):  # newest like, older like, ..., the dislike, an unrated item
        title = demo_agent.store.item(item_id).display_title
        assert wide.without(title) == demo_agent.judge_profile(exclude={item_id})
    assert demo_agent.judge_profile().liked == wide.liked[: judge.LIKED_SHOWN]  # unchanged without `extra`


def test_a_background_job_publishes_a_version_the_agents_llm_uses(demo_agent, torch_base, llm):
    assert demo_agent.llm is llm  # the module's model, loaded as the app would
    reports = []
    # the torch model is torch_base: load_base keeps the one loaded in this process
    job = demo_agent.start_lora_training(TrainingSettings(steps=2, batch=2, threads=1),
                                         progress=lambda step, total, loss: reports.append((step, total)))
    outcome = job.wait(timeout=300)
    assert outcome is not None and outcome.version == 1 and reports == [(1, 2), (2, 2)]
    assert job.status()["running"] is False and job.status()["step"] == 2
    row = versions.versions(demo_agent.store)[0]
    assert row["meta"]["examples"] == 7 and row["path"].startswith("adapters/lora-") and outcome.path.is_file()
    assert versions.is_enabled(demo_agent.store) and not versions.checkpoint_path(demo_agent.home).exists()
    assert llm.adapter is not None and llm.adapter.path == outcome.path  # hot-swapped into the running model
    assert llm.adapter.info.ownrec_meta()["steps"] == 2
    assert demo_agent.switch_lora(False) is None
    assert llm.adapter is None
    assert demo_agent.switch_lora(True) == 1
    assert llm.adapter.path == outcome.path
    # a damaged file is never handed to llama.cpp: a fresh agent's LLM runs without it
    outcome.path.write_bytes(outcome.path.read_bytes()[:-10] + b"0123456789")
    llm.clear_adapter()
    fresh = Agent.open(encoder=demo_agent.encoder, llm=llm)
    assert fresh.llm is llm and llm.adapter is None
    assert any(e["kind"] == "llm_lora_skipped" and "sha256" in e["payload"] for e in demo_agent.store.events())
    torch_base.reset_lora(0)


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args, input=None: runner.invoke(cli, list(args), input=input, catch_exceptions=False)


def test_lora_commands(demo_agent, torch_base, run, tmp_path):
    assert run("config", "set", "llm.threads", "1").exit_code == 0
    assert "no personal LoRA yet" in run("lora", "status").output
    refused = run("lora", "on")
    assert refused.exit_code == 1 and "there is no personal LoRA yet" in refused.output
    assert json.loads(run("lora", "status", "--json").output)["enabled"] is False

    trained = run("lora", "train", "--steps", "1", "--batch", "2", "--json")
    assert trained.exit_code == 0, trained.output
    outcome = json.loads(trained.output[trained.output.index("{"):])
    assert outcome["version"] == 1 and outcome["step"] == 1 and outcome["positives"] == 3
    status = json.loads(run("lora", "status", "--json").output)
    assert status["enabled"] and status["active_version"] == 1 and status["checkpoint"] is None
    assert status["versions"][0]["intact"] and status["versions"][0]["base_model_id"].startswith("SmolLM2-135M")

    assert run("lora", "off").exit_code == 0
    assert json.loads(run("lora", "status", "--json").output)["active_version"] is None
    assert "personal LoRA on (v1)" in run("lora", "on").output

    out = tmp_path / "export"
    exported = run("lora", "export", str(out))
    assert exported.exit_code == 0, exported.output
    gguf_copy = out / "ownrec-lora-v1.gguf"
    assert gguf_copy.read_bytes() == (paths.data_dir() / status["versions"][0]["path"]).read_bytes()
    modelfile = (out / "Modelfile").read_text()
    assert f"FROM {default_model_path()}" in modelfile and "ADAPTER ./ownrec-lora-v1.gguf" in modelfile
    again = run("lora", "export", str(out))
    assert again.exit_code == 1 and "already exist" in again.output
    assert gguf_copy.read_bytes() == (paths.data_dir() / status["versions"][0]["path"]).read_bytes()

    assert "deleted 1 version" in run("lora", "reset", "--yes").output
    assert not list(paths.adapters_dir().glob("lora-*.gguf"))
    assert json.loads(run("lora", "status", "--json").output) == {
        "enabled": False, "active_version": None, "versions": [], "checkpoint": None}
    nothing = run("lora", "export", str(tmp_path / "elsewhere"))
    assert nothing.exit_code == 1 and "no personal LoRA to export" in nothing.output
    assert not (tmp_path / "elsewhere").exists()
    torch_base.reset_lora(0)


def test_training_without_likes_says_what_to_do(ownrec_home, demo_database, encoder, run):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(demo_database, paths.database_path())
    result = run("lora", "train", "--steps", "1")
    assert result.exit_code == 1 and "like or rate (4 stars or more) a few items first" in result.output
    assert versions.checkpoint_path(paths.Home.default()).exists() is False
