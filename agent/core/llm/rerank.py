"""LLM reranking: the ranker's top candidates rescored by the LLM's answer to `judge`'s question.

Each candidate's judge score is log P("Yes") - log P("No") at the first answer token of the
prompt `judge.prefix(profile) + judge.suffix(item text)`; the softmax normaliser cancels, so it
is the difference of the two logits. All of one person's candidates share the prefix (system
prompt and profile), so it is evaluated once and its KV cache reused: with llama-cpp-python's
`Llama`, `eval(tokens)` first drops every KV cell at or beyond `n_tokens` and then decodes
`tokens` at positions `n_tokens...`, so setting `n_tokens` back to the prefix length and
evaluating a candidate's suffix scores that candidate as if its whole prompt had been evaluated
from scratch (the tests check it). The logits of the last evaluated token are read with
`llama_get_logits_ith(ctx, -1)`: `Llama.eval` keeps no logits of its own unless the model was
loaded with `logits_all`.

The prefix stays in the context between calls: a call whose prefix tokens equal the context's
leading tokens (`Llama.input_ids[:n_tokens]`, which `eval` and chat generation keep in step
with the KV cache) evaluates only the suffixes, so a person's next feed skips the prefix; after
a chat, or a LoRA swap (which must `reset()` the context), the prefix is evaluated again.

Tokens are made exactly as the personal LoRA's training makes them (`judge.tokens`: prefix and
suffix tokenized separately, no BOS, special tokens parsed). The context is not thread-safe:
everything here runs under `LLM.lock`.

The blend with the ranker (`blend`) is z(ranker score) + w * z(judge score) within the candidate
list: both scores are on arbitrary scales, and standardising within the list is what makes one
weight mean the same for every person and every feed. Reranking only reorders.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agent.core.llm import judge

if TYPE_CHECKING:
    from agent.core.llm.model import LLM
    from agent.core.ranker import Recommendation
    from agent.core.store import Store

MOVED_UP = "moved up by the language model"
UNAVAILABLE_STATE = "rerank_unavailable"  # store state: the last problem logged, so it is logged once


@dataclass(frozen=True)
class JudgeScores:
    """One call's result: a score per candidate (higher: "Yes" likelier), and how it ran."""

    scores: np.ndarray
    prefix_tokens: int
    prefix_reused: bool  # the prefix was already in the context: only the suffixes were evaluated
    suffix_tokens: int
    seconds: float


def _tokenize(llm: "LLM", text: str) -> list[int]:
    return llm.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def answer_tokens(llm: "LLM") -> tuple[int, int]:
    """The first token of "Yes" and of "No": the first answer token decides."""
    yes, no = _tokenize(llm, judge.YES), _tokenize(llm, judge.NO)
    if not yes or not no or yes[0] == no[0]:
        raise ValueError(f"{llm.name}: cannot tell {judge.YES!r} from {judge.NO!r} at the first token")
    return yes[0], no[0]


def _last_logits(llm: "LLM") -> np.ndarray:
    import llama_cpp

    pointer = llama_cpp.llama_get_logits_ith(llm.llama.ctx, -1)
    return np.ctypeslib.as_array(pointer, shape=(llm.llama.n_vocab(),))


def _common_length(llm: "LLM", tokens: list[int]) -> int:
    """How many leading `tokens` the context already holds."""
    held = llm.llama.input_ids[: min(llm.llama.n_tokens, len(tokens))]
    wanted = np.asarray(tokens[: len(held)], dtype=held.dtype)
    mismatch = np.flatnonzero(held != wanted)
    return int(mismatch[0]) if len(mismatch) else len(held)


def judge_scores(llm: "LLM", profile: judge.Profile, item_texts: Sequence[str], *,
                 reuse_prefix: bool = True) -> JudgeScores:
    """log P(Yes) - log P(No) for each item, the prefix evaluated once. `reuse_prefix=False`
    starts from an empty context (what a first call costs)."""
    if not item_texts:
        return JudgeScores(np.zeros(0), 0, False, 0, 0.0)
    tokenize = lambda text: _tokenize(llm, text)  # noqa: E731
    prefix_ids = tokenize(judge.prefix(profile))
    suffixes = [tokenize(judge.suffix(text)) for text in item_texts]
    yes, no = answer_tokens(llm)
    limit = llm.llama.n_ctx()
    if len(prefix_ids) + max(len(s) for s in suffixes) > limit:
        raise ValueError(f"the judge prompt needs {len(prefix_ids) + max(len(s) for s in suffixes)} tokens, "
                         f"more than the {limit}-token context")
    llama = llm.llama
    scores = np.empty(len(suffixes), np.float64)
    with llm.lock:
        started = time.perf_counter()
        if not reuse_prefix:
            llama.reset()
        held = _common_length(llm, prefix_ids)
        reused = held == len(prefix_ids)
        llama.n_tokens = held  # eval drops the cells from here on
        llama.eval(prefix_ids[held:])
        for index, suffix_ids in enumerate(suffixes):
            llama.n_tokens = len(prefix_ids)
            llama.eval(suffix_ids)
            logits = _last_logits(llm)
            scores[index] = float(logits[yes]) - float(logits[no])
        seconds = time.perf_counter() - started
    return JudgeScores(scores, len(prefix_ids), reused, sum(len(s) for s in suffixes), seconds)


def judge_scores_uncached(llm: "LLM", profile: judge.Profile, item_texts: Sequence[str]) -> np.ndarray:
    """The same scores with every prompt evaluated from an empty context: the reference the
    cached path must equal, and the cost without prefix caching."""
    yes, no = answer_tokens(llm)
    scores = np.empty(len(item_texts), np.float64)
    with llm.lock:
        for index, text in enumerate(item_texts):
            prefix_ids, suffix_ids = judge.tokens(lambda t: _tokenize(llm, t), profile, text)
            llm.llama.reset()
            llm.llama.eval(prefix_ids + suffix_ids)
            logits = _last_logits(llm)
            scores[index] = float(logits[yes]) - float(logits[no])
    return scores


# -- blending -------------------------------------------------------------------------------------


def zscores(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Standardised within the list; a list with no spread is all zeros."""
    x = np.asarray(values, np.float64)
    if len(x) == 0:
        return x
    spread = float(x.std())
    return (x - x.mean()) / spread if spread > 1e-12 else np.zeros_like(x)


def blend(ranker_scores: Sequence[float] | np.ndarray, judged: Sequence[float] | np.ndarray,
          weight: float) -> np.ndarray:
    """z(ranker) + weight * z(judge), within the candidate list."""
    return zscores(ranker_scores) + weight * zscores(judged)


def rerank_order(ranker_scores: Sequence[float] | np.ndarray, judged: Sequence[float] | np.ndarray,
                 weight: float) -> list[int]:
    """Positions of the candidates, best blended score first; ties keep the input order."""
    combined = blend(ranker_scores, judged, weight)
    return [int(i) for i in np.argsort(-combined, kind="stable")]


# -- the feed -------------------------------------------------------------------------------------


@dataclass
class FeedRerank:
    """A feed's rerank, prepared under the store's lock (profile, candidates, the loaded LLM) and
    run outside it, so a 2-second LLM pass does not block feedback."""

    store: "Store"  # where a failure is logged
    llm: "LLM"
    profile: judge.Profile
    recommendations: list["Recommendation"]
    positions: list[int]  # which entries of `recommendations` are reranked
    weight: float

    def run(self) -> list["Recommendation"]:
        candidates = [self.recommendations[i] for i in self.positions]
        try:
            result = judge_scores(self.llm, self.profile, [r.item.text for r in candidates])
        except (RuntimeError, ValueError) as error:  # a failed llama.cpp decode, a prompt too long
            _log_unavailable(self.store, f"reranking failed ({error})", "the feed keeps the ranker's order")
            return self.recommendations
        order = rerank_order([r.score for r in candidates], result.scores, self.weight)
        reranked = list(self.recommendations)
        for new_place, old_place in enumerate(order):
            recommendation = candidates[old_place]
            if new_place < old_place:
                recommendation = dataclasses.replace(recommendation, reason=f"{recommendation.reason}; {MOVED_UP}")
            reranked[self.positions[new_place]] = recommendation
        return reranked


def prepare_feed_rerank(store: "Store", recommendations: list["Recommendation"], *, llm: Callable[[], "LLM"],
                        profile: Callable[[frozenset[int]], judge.Profile], candidates: int, weight: float
                        ) -> FeedRerank | None:
    """What reranking this feed needs, or None when it cannot run (the LLM unavailable: logged once
    in `store`'s event log, with the fix). Exploration slots stay where the slate put them; the first
    `candidates` other entries are reranked with `weight` (llm.rerank_candidates, llm.rerank_weight).
    `llm()` loads the model and `profile(excluded item ids)` makes the judge's profile, only when a
    rerank can run."""
    from agent.core.llm.model import LLMUnavailable

    positions = [i for i, r in enumerate(recommendations) if not r.exploring][:candidates]
    if len(positions) < 2:
        return None
    try:
        model = llm()
    except LLMUnavailable as error:
        _log_unavailable(store, error.problem, error.fix)
        return None
    excluded = frozenset(r.item.id for r in recommendations)
    return FeedRerank(store, model, profile(excluded), recommendations, positions, weight)


def _log_unavailable(store: "Store", problem: str, fix: str) -> None:
    """Record in the event log why the feed was not reranked, once per distinct problem."""
    with store.lock:
        if store.get_state(UNAVAILABLE_STATE) != problem:
            store.set_state(UNAVAILABLE_STATE, problem)
            store.log_event("rerank_skipped", {"problem": problem, "fix": fix})


__all__ = ["JudgeScores", "FeedRerank", "answer_tokens", "blend", "judge_scores",
           "judge_scores_uncached", "prepare_feed_rerank", "rerank_order", "zscores"]
