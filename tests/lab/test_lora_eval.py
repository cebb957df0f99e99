"""The reranking evaluation's "personal LoRA" row: a LoRA trained per user on that user's own
training ratings (agent.lab.evaluation.lora), loaded into the real llama.cpp model for that
user's judgements only."""

from __future__ import annotations

import numpy as np

from agent.lab.evaluation import rerank as rerank_eval
from agent.core.llm.adapter import read_header
from agent.core.llm.model import LLM
from agent.lab.evaluation.lora import per_user_lora


def test_the_rerank_evaluation_gets_a_row_with_each_users_own_lora(prepared_models_dir, llm_cache_dir, tmp_path):
    llm = LLM.load(threads=1, cache_dir=llm_cache_dir)
    folder = tmp_path / "adapters"
    results = rerank_eval.run_rerank_evaluation(users=2, seed=1, log=lambda _: None, top=5, llm=llm,
                                                lora_for_user=per_user_lora(2, folder, threads=1))
    assert results["lora_hook"] == "used"
    assert results["variants"]["personal LoRA"]["users_with_adapter"] == 2
    users = results["plan"]["user_ids"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"user-{u}.gguf" for u in users)
    for user in users:
        assert read_header(folder / f"user-{user}.gguf").metadata["ownrec.user"] == user
    base = [np.array(c["top_judge"]) for c in results["cases"]["base"]]
    personal = [np.array(c["top_judge"]) for c in results["cases"]["personal LoRA"]]
    assert [len(b) for b in base] == [len(p) for p in personal]
    # the same candidates judged with the user's adapter and without it: the adapter is really used
    assert max(float(np.abs(b - p).max()) for b, p in zip(base, personal)) > 1e-3
    assert llm.adapter is None  # and taken off again after that user


def test_the_lora_row_can_cover_the_first_users_only_beside_the_base_model_on_the_same_users(prepared_models_dir,
                                                                                            llm_cache_dir, tmp_path):
    llm = LLM.load(threads=1, cache_dir=llm_cache_dir)
    trained: list[int] = []

    def hook(user, agent):  # the base model as the "adapter": cheap, and the rows must then agree
        trained.append(user.user_id)
        return None

    results = rerank_eval.run_rerank_evaluation(users=3, seed=1, log=lambda _: None, top=5, llm=llm,
                                                lora_for_user=hook, apply_adapter=lambda model, path: None,
                                                lora_users=2)
    plan, variants, cases = results["plan"], results["variants"], results["cases"]
    assert len(plan["user_ids"]) == 3 and plan["lora_users"] == 2
    assert sorted(trained) == plan["lora_user_ids"] and len(trained) == 2  # the others never train
    assert set(plan["lora_user_ids"]) < set(plan["user_ids"])
    assert variants["base"]["users"] == 3
    assert variants["base, LoRA users"]["users"] == variants["personal LoRA"]["users"] == 2
    assert {c["user_id"] for c in cases["base"]} == set(plan["user_ids"])
    for name in ("base, LoRA users", "personal LoRA"):
        assert {c["user_id"] for c in cases[name]} == set(plan["lora_user_ids"])
    # the same judge without an adapter on the same users: identical figures, a paired difference of 0
    assert cases["personal LoRA"] == cases["base, LoRA users"]
    for protocol in rerank_eval.PROTOCOLS:
        paired = variants["personal LoRA"]["against_base_reranker"][protocol]
        assert paired["mean"] == 0.0 and paired["ci95"] == [0.0, 0.0]
        assert variants["personal LoRA"]["test"][protocol] == variants["base, LoRA users"]["test"][protocol]
    text = rerank_eval.to_markdown(results)
    assert "Base model on the 2 users of the personal-LoRA row" in text and "personal LoRA - base" in text
