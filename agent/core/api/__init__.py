"""`Agent`: the one entry point the CLI, the TUI and the lab's simulated people use, and the public types
that cross it. Plain data in, plain data out. Its parts for the chat LLM, the personal LoRA and sync are in
this package's `language`, `lora` and `sync` modules; nothing else imports them.

It owns the store, the settings, the encoder (loaded on first need) and the ranker state, and
keeps them consistent: items are encoded once per text, feedback updates the personal adapter
at once and retrains it fully every `ranker.retrain_every` events (in the background if the agent
was opened so: `refit.py`), and each new adapter version is saved atomically before it is used. A
lock serialises calls, so TUI workers may call it from threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.core import paths
from agent.core.config import Config
from agent.core.paths import Home
from agent.core.encoder import Encoder
from agent.core.ranker import (
    EXPLAINING_LIKES,
    CO_LIKED_ITEMS,
    RECENT_ITEMS,
    SIGNALS,
    AdapterError,
    Catalog,
    FeedbackHistory,
    FeedbackRows,
    GlobalAdapter,
    PersonalAdapter,
    Scorer,
    UNJUDGED_KINDS,
    TrainingSettings,
    build_slate,
    fit,
    mmr,
    load_personal,
    online_update,
    reason_text,
    save_personal,
    signal_features,
)
from agent.core.store import FEEDBACK_KINDS, Conversations, Interaction, Item, Store, StoreError
# What the CLI and the TUI see of the feed, the chat, its conversations and sync, so that they need no
# core module.
from agent.core.llm.chat import Answer, ChatError, ReplyStream
from agent.core.llm.model import LLMUnavailable
from agent.core.llm.portrait import Portrait
from agent.core.ranker import Recommendation
from agent.core.store import Conversation, ConversationNotFound, Message
from agent.core.sync.consent import HOW_TO_JOIN, WHAT_LEAVES, LedgerRow, PrivacyTotal, SyncSetupError, SyncStatus
from agent.core.sync.scheduler import RoundReport, SyncScheduler
# What the CLI and the TUI see of the traits and of LoRA training, so that they need no core module.
from agent.core.lora.job import Outcome as LoraOutcome
from agent.core.lora.job import TrainingJob as LoraTrainingJob
from agent.core.lora.job import TrainingSettings as LoraTrainingSettings
from agent.core.traits import NUDGE, REACHABLE, Evidence, TraitEdit, TraitError, TraitReading, Traits
from agent.core.api.facts import FactsPart
from agent.core.api.foundation import FoundationPart, PriorReport
from agent.core.api.imports import ImportPart
from agent.core.api.language import LanguageModelPart
from agent.core.api.lora import LoraPart
from agent.core.api.refit import RefitPart, one_blas_thread
from agent.core.api.sync import SyncPart
from agent.core.api.undo import UndoPart

if TYPE_CHECKING:
    from agent.core.llm import LLM

Progress = Callable[[int, int], None]

# How long the user vector of a taste sentence is: sets how firmly the sentence steers the
# feed before there is feedback (scores are dot products with unit-length item vectors). It must hold its
# own against release 0's item biases, which rank what the public chose before anything personal.
TASTE_PRIOR_NORM = 8.0
# How much a request in words counts against the person's taste when the ranker answers it.
QUERY_WEIGHT = 8.0
ADAPTER_VERSIONS_KEPT = 10


class FeedbackError(ValueError):
    pass


@dataclass(frozen=True)
class FeedbackResult:
    """One recorded judgement: how long the update took, whether it fully retrained the personal adapter
    (`retrained`), or started a full retraining in the background instead (`refitting`)."""

    interaction: Interaction
    update_ms: float
    retrained: bool
    refitting: bool = False


class Agent(LanguageModelPart, LoraPart, SyncPart, FoundationPart, RefitPart, UndoPart, FactsPart, ImportPart):
    def __init__(self, store: Store, config: Config, encoder: Encoder | None = None,
                 models_dir: Path | None = None, seed: int | None = None, llm: "LLM | None" = None,
                 home: Home | None = None, background_refit: bool = False) -> None:
        self.store = store
        self.config = config
        # The person's data folder: where the database is, unless told otherwise.
        self.home = home or (Home(store.path.parent) if store.path else Home.default())
        self._encoder = encoder
        self._models_dir = models_dir
        # One lock for the agent's caches and the store's one connection: the store's own.
        self._lock = store.lock
        self._catalog: Catalog | None = None
        self._scorer: Scorer | None = None
        self._personal: PersonalAdapter | None = None
        self._global: GlobalAdapter | None = None
        self._traits: Traits | None = None
        # What the ranker derives from the feedback history, kept up to date event by event (`_feedback_rows`).
        self._history: FeedbackHistory | None = None
        self._rows: FeedbackRows | None = None
        self._removals = 0  # the store's feedback_removals when the history was built (an undo restarts it)
        self._llm: LLM | None = None  # the chat LLM, once loaded (see the `llm` property)
        self._given_llm = llm  # a model the caller loaded, used instead of loading one from the settings
        self._rng = np.random.default_rng(seed)  # negative sampling in online updates
        self.background_refit = background_refit  # the periodic full refit in a thread (`refit.py`)
        if background_refit:
            one_blas_thread()

    @classmethod
    def open(cls, encoder: Encoder | None = None, *, home: Path | Home | None = None, llm: "LLM | None" = None,
             seed: int | None = None, background_refit: bool = False) -> "Agent":
        """The agent of the person whose data folder is `home` (default: OWNREC_HOME, else the user data
        directory). `background_refit`: run the periodic full refit in a thread (for an app that stays open)."""
        home = home if isinstance(home, Home) else Home(Path(home)) if home is not None else Home.default()
        home.folder()
        return cls(Store.open(home.database), Config(home.config), encoder, seed=seed, llm=llm, home=home,
                   background_refit=background_refit)

    def close(self) -> None:
        self.wait_for_refit()
        with self._lock:
            self.store.close()
            self._history = self._rows = None

    # -- models ---------------------------------------------------------------------------

    @property
    def encoder(self) -> Encoder:
        """The text encoder, loaded on first use (raises EncoderUnavailable with the fix)."""
        with self._lock:
            if self._encoder is None:
                self._encoder = Encoder.load(self._models_dir or paths.models_dir())
            return self._encoder

    def ensure_embeddings(self, progress: Progress | None = None) -> int:
        """Encode every item whose current text has no cached embedding; return how many texts.

        A page of texts at a time, each page's vectors committed before the next page is read: memory holds
        one page however many items are new, and a run cut short keeps what it encoded."""
        with self._lock:
            model_id = self.encoder.model_id
            total = self.store.count_without_embedding(model_id)
        if not total:
            return 0
        batch = int(self.config.get("encoder.batch_size"))
        page = max(batch * 8, 256)
        done, after = 0, ""
        while True:
            # Pages of distinct texts in text-hash order: the batches one pass over all texts made, so the int8
            # encoder's vectors (which depend a little on the batch a text is in) come out the same.
            with self._lock:
                rows = self.store.texts_without_embedding(model_id, after, page)
            if not rows:
                break
            after = rows[-1][0]
            texts = dict(rows)
            vectors = self.encoder.encode(list(texts.values()), batch_size=batch)
            with self._lock:
                self.store.put_embeddings(model_id, dict(zip(texts, vectors)))
            done += len(texts)
            if progress:
                progress(done, max(total, done))
        if progress and done < total:  # items removed meanwhile: the count ends where the work did
            progress(done, done)
        with self._lock:
            self._catalog = self._scorer = None
        return done

    def embed(self, texts: list[str]) -> np.ndarray:
        """Encode texts through the embedding cache (trait poles, taste sentences)."""
        from agent.core.store import text_hash

        with self._lock:
            model_id = self.encoder.model_id
            hashes = [text_hash(t) for t in texts]
            cached = self.store.cached_embeddings(model_id, hashes)
            missing = [t for t, h in zip(texts, hashes) if h not in cached]
            if missing:
                fresh = dict(zip([text_hash(t) for t in missing], self.encoder.encode(missing)))
                self.store.put_embeddings(model_id, fresh)
                cached.update(fresh)
            return np.stack([cached[h] for h in hashes]) if texts else np.zeros((0, self.encoder.dim), np.float32)

    @property
    def traits(self) -> "Traits":
        """The person's inferred traits and their edits (see agent.core.traits)."""
        with self._lock:
            if self._traits is None:
                self._traits = Traits(self.store, self.home.traits, embed=self.embed, scorer=self.scorer,
                                      personal_adapter=self.personal_adapter,
                                      save_personal_adapter=self._save_personal,
                                      labels=lambda: self._feedback_rows().labels)
            return self._traits

    def catalog(self) -> Catalog:
        with self._lock:
            if self._catalog is None:
                model_id = self.encoder.model_id
                rows = self.store.encoded_items(model_id)
                dim = self.encoder.dim
                if rows:
                    X = np.stack([vector for _, _, vector in rows]).reshape(len(rows), dim)
                    ids = np.array([r[0] for r in rows], np.int64)
                    refs = [r[1] for r in rows]
                    self._catalog = Catalog(ids, refs, X, self._public_signals(ids), self._co_liked(refs))
                else:
                    self._catalog = Catalog.empty(dim)
            return self._catalog

    def _public_signals(self, ids: np.ndarray) -> np.ndarray:
        """The catalog's public signals (`ranker.model.signal_features`) in the order of `ids`."""
        known = self.store.public_signals()
        raw = np.full((len(ids), 3), np.nan)
        for row, item_id in enumerate(ids.tolist()):
            signals = known.get(item_id)
            if signals is not None:
                raw[row] = [np.nan if v is None else v for v in (signals.popularity, signals.avg_rating,
                                                                 signals.published)]
        return signal_features(raw[:, 0], raw[:, 1], raw[:, 2])

    def scorer(self) -> Scorer:
        with self._lock:
            if self._scorer is None:
                self._scorer = Scorer(self.catalog(), self.global_adapter())
            return self._scorer

    def global_adapter(self) -> GlobalAdapter:
        """phi_g: the newest release of the pinned coordinator that verifies (signature and version), once
        sync has ever been on; else release 0, the public prior built on this device (`build_prior`); else
        the identity with zero item biases. A stored release or prior that fails its check is refused and
        logged, and the one before it is used."""
        with self._lock:
            if self._global is None:
                self._global = (self._verified_global_adapter() or self._prior_global_adapter()
                                or GlobalAdapter.identity(self.encoder.dim))
            return self._global

    def refresh_global_adapter(self) -> None:
        """Load phi_g again (a sync round stored a new release): the scorer built on the old one goes too."""
        with self._lock:
            self._global = self._scorer = None

    def personal_adapter(self) -> PersonalAdapter:
        with self._lock:
            if self._personal is None:
                self._personal = self._load_personal() or self._fresh_personal()
            return self._personal

    def _fresh_personal(self) -> PersonalAdapter:
        return PersonalAdapter.fresh(self.encoder.dim, int(self.config.get("ranker.adapter_rank")), self.encoder.model_id)

    def _load_personal(self) -> PersonalAdapter | None:
        for version in self.store.adapter_versions("personal"):
            try:
                adapter = load_personal(self.home.root / version["path"], version["sha256"])
            except AdapterError as error:
                # A torn or tampered file: fall back to the version before it, and say so.
                self.store.log_event("adapter_rejected", {"version": version["version"], "error": str(error)})
                continue
            if adapter.dim == self.encoder.dim:
                return adapter
        return None

    def _save_personal(self, adapter: PersonalAdapter, reason: str, meta: dict[str, Any] | None = None) -> int:
        self.home.adapters()
        relative = f"adapters/personal-{time.time_ns()}.npz"
        sha256 = save_personal(adapter, self.home.root / relative)
        with self.store.transaction():  # one commit for the new version and the oldest one's removal
            version = self.store.record_adapter("personal", relative, sha256, {"reason": reason, **(meta or {})})
            old = self.store.adapter_versions("personal")[ADAPTER_VERSIONS_KEPT:]
            for row in old:
                self.store.forget_adapter_version(row["id"])
        self._personal = adapter
        if reason != "feedback":  # a background refit under way must not overwrite this change (refit.py)
            self._adapter_rewrites += 1
        for row in old:  # after the commit: a file without its row is harmless, a row without its file is not
            (self.home.root / row["path"]).unlink(missing_ok=True)
        return version

    # -- onboarding ------------------------------------------------------------------------

    def needs_onboarding(self) -> bool:
        """Whether to greet the person with onboarding: not yet done, and nothing judged yet (someone who rated
        items from the command line or an import is no newcomer)."""
        with self._lock:
            return not self.store.get_state("onboarded", False) and not self._feedback_history().judged

    def describe_taste(self, text: str) -> None:
        """Seed the user vector from a sentence ("slow, thoughtful science fiction")."""
        text = text.strip()
        if not text:
            raise FeedbackError("describe your taste in a few words")
        with self._lock:
            vector = self.encoder.encode([text])[0] * TASTE_PRIOR_NORM
            adapter = self.personal_adapter().copy()
            adapter.p = adapter.p - adapter.prior + vector  # swap the old prior for the new one
            adapter.prior = vector.astype(np.float32)
            self.store.set_state("taste_description", text)
            self._save_personal(adapter, "taste description")

    def finish_onboarding(self, liked: list[str] | None = None, description: str | None = None) -> None:
        with self._lock:
            if description:
                self.describe_taste(description)
            for ref in liked or []:
                self.feedback(ref, "like", origin="onboarding")
            self.store.set_state("onboarded", True)
            self.store.log_event("onboarded", {"liked": len(liked or []), "described": bool(description)})

    def onboarding_choices(self, count: int = 24, shown: Collection[int] = ()) -> list[Item]:
        """`count` items to pick favourites from, none of those `shown` already (the screen's "more"): the best
        known first, by the catalog's public popularity (one of each set of items with the same text), or, in a
        catalog without it, a spread of the catalog (MMR over the raw item space)."""
        with self._lock:
            catalog = self.catalog()
            left = np.ones(len(catalog), bool)
            left[catalog.rows(shown)] = False
            if not left.any():
                return []
            popularity = catalog.signals[:, 0]
            if catalog.has_signals and np.ptp(popularity) > 0:
                twins = self.store.same_text_items()
                chosen: list[int] = []
                for row in np.argsort(-popularity, kind="stable"):
                    if len(chosen) == count:
                        break
                    if left[row]:
                        chosen.append(int(catalog.ids[row]))
                        left[catalog.rows(twins.get(chosen[-1], ()))] = False
                return self.store.items(chosen)
            rows = np.flatnonzero(left)
            sample = np.random.default_rng(7).choice(rows, size=min(len(rows), 600), replace=False)
            picks = mmr(np.zeros(len(sample)), catalog.X[sample], count, diversity=1.0)
            return self.store.items([int(catalog.ids[sample[p]]) for p in picks])

    # -- ranking ---------------------------------------------------------------------------

    def recommend(self, size: int | None = None, query: str | None = None) -> list[Recommendation]:
        """The person's feed (or, with a query, the ranker's answer to it). With `llm.rerank` on,
        the language model then reorders the top of the feed (agent.core.llm.rerank): prepared
        under the lock, run outside it. Without a usable model the ranker's order stands and the
        event log says why."""
        feed_rerank = None
        with self._lock:
            size = int(size or self.config.get("feed.size"))
            scorer = self.scorer()
            catalog = scorer.catalog
            # Left out: what was judged, and items with the same text as a judged one (catalogs repeat
            # entries: MovieLens lists some films twice).
            rows = self._feedback_rows()
            query_vector = self.encoder.encode([query])[0] if query else None
            personal = self._feed_adapter(scorer)
            # The likes reasons may name and exploration steers away from: the latest EXPLAINING_LIKES, so that a
            # feed costs the same however long the history.
            likes = rows.history.latest_likes(EXPLAINING_LIKES, keep=lambda item: catalog.row(item) is not None)
            entries = build_slate(
                scorer, personal, size,
                exclude_rows=rows.excluded_rows(), liked_rows=catalog.rows(likes),
                diversity=float(self.config.get("feed.diversity")),
                exploration=0.0 if query else float(self.config.get("feed.exploration")),
                seed=rows.history.count,
                query=query_vector, query_weight=QUERY_WEIGHT if query else 0.0,
            )
            wanted = [int(catalog.ids[e.row]) for e in entries]
            wanted += [int(catalog.ids[e.because_row]) for e in entries if e.because_row is not None]
            items = {item.id: item for item in self.store.items(dict.fromkeys(wanted))}
            taste = self.store.get_state("taste_description")
            any_likes = bool(likes)
            result = []
            for entry in entries:
                item = items[int(catalog.ids[entry.row])]
                because = items.get(int(catalog.ids[entry.because_row])) if entry.because_row is not None else None
                reason = reason_text(entry.explanation, item, because, query=query, taste=taste, any_likes=any_likes,
                                     wanted=rows.history.wanted(item.id))
                result.append(Recommendation(item, entry.score, reason, entry.exploring, because,
                                             seen=rows.history.seen(item.id)))
            # A query is the ranker's to answer: the judge's question ignores it.
            if query is None and self.config.get("llm.rerank"):
                from agent.core.llm.inputs import LLMSettings
                from agent.core.llm.rerank import prepare_feed_rerank

                settings = LLMSettings.read(self.config.get)
                feed_rerank = prepare_feed_rerank(self.store, result, llm=lambda: self.llm,
                                                  profile=self._judge_profile_without,
                                                  candidates=settings.rerank_candidates, weight=settings.rerank_weight)
        return result if feed_rerank is None else feed_rerank.run()

    def _feed_adapter(self, scorer: Scorer) -> PersonalAdapter:
        """The adapter the feed ranks with: steered by the latest likes in the catalog (`recent_likes`, oldest
        first; `Scorer.steer` takes the last RECENT_ITEMS, and CO_LIKED_ITEMS for what people went on to like), then with the hidden traits made neutral, so that a
        hidden trait cannot come back through what was liked last."""
        history = self._feedback_history()
        likes = history.latest_likes(max(RECENT_ITEMS, CO_LIKED_ITEMS),
                                     keep=lambda item: scorer.catalog.row(item) is not None)
        personal = scorer.steer(self.personal_adapter(), scorer.catalog.rows(likes))
        return self.traits.for_ranking(personal) if self.traits.has_hidden() else personal

    def _feedback_history(self) -> FeedbackHistory:
        """The feedback history as the ranker uses it, caught up with the store: the rows recorded since it last
        looked, by anyone (feedback, imports, the lab writing to the store), folded in."""
        removals = self.store.feedback_removals()
        if self._history is None or removals != self._removals:  # an undo took a row back: start again
            self._history, self._rows, self._removals = FeedbackHistory(), None, removals
        touched = self._history.add(self.store.interactions_after(self._history.last_id))
        if self._rows is not None:
            self._rows.update(touched)
        return self._history

    def _feedback_rows(self) -> FeedbackRows:
        """`_feedback_history` over the current catalog's rows (made again when the catalog is)."""
        history = self._feedback_history()
        catalog = self.catalog()
        if self._rows is None or self._rows.catalog is not catalog:
            self._rows = FeedbackRows(catalog, history, self.store.same_text_items())
        return self._rows

    def scores(self) -> np.ndarray:
        """The ranker's score of every catalog row, as the feed scores them before the slate is built."""
        with self._lock:
            return self.scorer().scores(self._feed_adapter(self.scorer()))

    def rated_count(self) -> int:
        """How many items the person has judged (opening an item is not a judgement)."""
        with self._lock:
            return len(self._feedback_history().judged)

    # -- feedback --------------------------------------------------------------------------

    def feedback(self, ref: str | int, kind: str, value: float | None = None, origin: str = "cli") -> FeedbackResult:
        """Record one piece of feedback and update the personal adapter at once."""
        if kind not in FEEDBACK_KINDS:
            raise FeedbackError(f"unknown feedback {kind!r}; use one of {', '.join(FEEDBACK_KINDS)}")
        if kind == "rating":
            if value is None or not 0.5 <= float(value) <= 5:
                raise FeedbackError("a rating is a number of stars from 0.5 to 5")
            value = float(value)
        elif value is not None:
            raise FeedbackError(f"{kind!r} takes no value")
        with self._lock:
            item = self.store.resolve_item(ref)
            self.scorer(), self.personal_adapter()  # loading is not part of the update's time
            started = time.perf_counter()
            interaction = self.store.add_interaction(item.id, kind, value, origin=origin)
            labels = self._feedback_rows().labels
            adapter = self.personal_adapter()
            if kind in UNJUDGED_KINDS:
                # Looking at an item is too weak a signal to re-rank on at once (the next full
                # retraining counts it); wanting one teaches nothing.
                return FeedbackResult(interaction, (time.perf_counter() - started) * 1000, False)
            pinned = self.traits.has_pins()
            held = self.traits.hold_directions(adapter) if pinned else None
            if item.id in labels and self.scorer().catalog.row(item.id) is not None:
                adapter = online_update(adapter, self.scorer(), labels, item.id, self._rng,
                                        float(self.config.get("ranker.learning_rate")), fixed=held)
            adapter.trained_on += 1
            due = adapter.trained_on % int(self.config.get("ranker.retrain_every")) == 0 or self._refit_due
            retrained = due and not self.background_refit
            settings = TrainingSettings(seed=adapter.trained_on)
            if retrained:
                adapter, _ = fit(adapter, self.scorer(), labels, settings, fixed=held)
            if pinned:
                adapter = self.traits.enforce_pins(adapter)
            meta = {"interaction": interaction.id}
            self._save_personal(adapter, "retrain" if retrained else "feedback", meta)
            refitting = due and not retrained and self._start_refit(adapter, settings, held, pinned, meta)
            elapsed = (time.perf_counter() - started) * 1000
            if retrained:
                self.traits.snapshot()
            return FeedbackResult(interaction, elapsed, retrained, refitting)

    def retrain(self) -> dict[str, Any]:
        """Fully retrain the personal adapter from all feedback (a background refit under way is dropped)."""
        with self._lock:
            self._refit_due = False
            labels = self._feedback_rows().labels
            started = time.perf_counter()
            adapter = self.personal_adapter()
            pinned = self.traits.has_pins()
            adapter, losses = fit(adapter, self.scorer(), labels, TrainingSettings(seed=len(labels)),
                                  fixed=self.traits.hold_directions(adapter) if pinned else None)
            if pinned:
                adapter = self.traits.enforce_pins(adapter)
            # What it learned from, for whoever checks that the model has every feedback row (`through`).
            version = self._save_personal(adapter, "retrain", {"labels": len(labels),
                                                               "through": self._feedback_history().last_id})
            self.traits.snapshot()
            return {"version": version, "labels": len(labels), "epochs": len(losses),
                    "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
                    "seconds": time.perf_counter() - started}

    # -- content -----------------------------------------------------------------------------

    def search(self, text: str, limit: int = 20) -> list[Item]:
        with self._lock:
            return self.store.search_items(text, limit)

    def item_count(self) -> int:
        """How many items the catalog holds."""
        return self.store.item_count()

    # -- your data ----------------------------------------------------------------------------

    def export(self) -> dict[str, Any]:
        """All personal data: feedback, items, settings, adapter parameters, event log."""
        with self._lock:
            data = self.store.export()
            data["config"] = {s.key: value for s, value, is_set in self.config.items() if is_set}
            adapter = self._load_personal()
            data["personal_adapter"] = None if adapter is None else {
                "p": adapter.p.tolist(), "prior": adapter.prior.tolist(), "A": adapter.A.tolist(),
                "B": adapter.B.tolist(), "model_id": adapter.model_id, "trained_on": adapter.trained_on,
                "signal_weights": dict(zip(SIGNALS, adapter.signal_weights.tolist())),
            }
            data["traits"] = self.traits.export()
            data["conversations"] = Conversations(self.store).export()
            data["format"] = "ownrec-export-1"
            return data

    @classmethod
    def export_readable(cls, home: Home | None = None) -> tuple[dict[str, Any], Any]:
        """`export()` of a damaged database: every row still readable, with `recovered_from_damage` saying
        what was lost; and the Recovery (agent.core.store.recover). The damaged file is not written."""
        from agent.core.api.salvage import damage_summary, readable_copy

        home = home or Home.default()
        with readable_copy(home) as (store, recovery):
            agent = cls(store, Config(home.config), home=home)
            data = agent.export()
            agent.wait_for_refit()
        return data | {"recovered_from_damage": damage_summary(home, recovery)}, recovery

    def forget_all(self) -> list[Path]:
        """Delete every piece of personal data: the database, adapters, settings and sync keys. Only
        ownrec's own files are removed, in case OWNREC_HOME points at a shared folder."""
        self.wait_for_refit()
        with self._lock:
            self.store.close()
            self._history = self._rows = None
            return self.home.remove_owned()


__all__ = ["HOW_TO_JOIN", "NUDGE", "REACHABLE", "WHAT_LEAVES", "Agent", "Answer", "ChatError", "Conversation",
           "ConversationNotFound", "Evidence", "FeedbackError", "FeedbackResult", "Interaction", "Item", "LLMUnavailable", "LedgerRow",
           "LoraOutcome", "LoraTrainingJob", "LoraTrainingSettings", "Message", "Portrait", "PriorReport", "PrivacyTotal",
           "Recommendation", "ReplyStream", "RoundReport", "StoreError", "SyncScheduler", "SyncSetupError",
           "SyncStatus", "TraitEdit", "TraitError", "TraitReading", "Traits"]
