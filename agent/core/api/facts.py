"""The facade's part that reads facts about the person's own data for the chat to state: where an item
stands in their ranking and why (`standing`), and what ownrec has learned about their taste
(`taste_summary`). A part of the facade which `Agent` (agent.core.api) is built from: the state it uses is
the agent's own. Every figure is read at the moment of asking; nothing here is generated."""

from __future__ import annotations

from collections import Counter

import numpy as np

from agent.core.llm.answers import ItemStanding, TasteSummary, TraitFact
from agent.core.llm.claims import PersonFacts, PersonHistory
from agent.core.ranker import EXPLAINING_LIKES, explain, reason_text
from agent.core.traits import clearest

SUMMARY_GENRES = 4
SUMMARY_EXAMPLES = 3
SUMMARY_TRAITS = 3
SUMMARY_MIN_LEAN = 0.05  # a reading this close to neutral says nothing worth telling
JUDGEMENT_WORDS = {True: "liked", False: "disliked", None: "rated in the middle"}


class FactsPart:
    def standing(self, item_id: int) -> ItemStanding:
        """Where item `item_id` stands for the person now: their latest judgement of it, or its place by the
        ranker's score among the items they have not judged, with the ranker's reason (the feed's words)."""
        with self._lock:
            item = self.store.item(int(item_id))
            rows = self._feedback_rows()
            history = rows.history
            judgements = history.latest_judgements()
            if item.id in judgements:
                return ItemStanding(item, JUDGEMENT_WORDS[judgements[item.id]], history.seen(item.id), None, 0,
                                    None, 0.0, "")
            scorer = self.scorer()
            catalog = scorer.catalog
            row = catalog.row(item.id)
            if row is None:
                return ItemStanding(item, None, history.seen(item.id), None, 0, "it has no text to rank it by yet",
                                    0.0, "")
            personal = self._feed_adapter(scorer)
            scores = scorer.scores(personal)
            excluded = np.zeros(len(catalog), bool)
            excluded[rows.excluded_rows()] = True
            candidates = int((~excluded).sum())
            if excluded[row]:
                return ItemStanding(item, None, history.seen(item.id), None, candidates,
                                    "you rated another entry of the catalog with the same text", float(scores[row]), "")
            rank = int((scores[~excluded] > scores[row]).sum()) + 1
            likes = history.latest_likes(EXPLAINING_LIKES, keep=lambda liked: catalog.row(liked) is not None)
            explanation = explain(scorer, personal, np.array([row]), [False], catalog.rows(likes))[0]
            because = self.store.item(int(catalog.ids[explanation.because_row])) \
                if explanation.because_row is not None else None
            reason = reason_text(explanation, item, because, query=None, taste=self.store.get_state("taste_description"),
                                 any_likes=bool(likes), wanted=history.wanted(item.id))
            return ItemStanding(item, None, history.seen(item.id), rank, candidates, None, float(scores[row]), reason,
                                because)

    def taste_summary(self) -> TasteSummary:
        """What ownrec has learned about the person: their feedback in figures, the genres of what they liked,
        their latest likes, and their clearest visible trait readings."""
        with self._lock:
            history = self._feedback_history()
            judgements = history.latest_judgements()
            liked = history.recent_likes()
            genres: Counter[str] = Counter()
            for item in self.store.items(liked):
                genres.update(set(str(g) for g in item.metadata.get("genres", []) or []))
            examples = self.store.items(liked[::-1][:SUMMARY_EXAMPLES])
            readings = self.traits.readings()
            facts = [TraitFact(r.name, float(r.value), r.low, r.high) for r in clearest(readings, SUMMARY_TRAITS, SUMMARY_MIN_LEAN)]
            return TasteSummary(
                likes=len(liked), dislikes=sum(1 for verdict in judgements.values() if verdict is False),
                judged=len(judgements), top_genres=genres.most_common(SUMMARY_GENRES), traits=facts,
                hidden=sum(1 for r in readings if r.hidden), taste=self.store.get_state("taste_description"),
                examples=list(examples))

    def person_facts(self) -> PersonFacts:
        """What a generated reply's claims about the person are checked against (`llm.claims`)."""
        with self._lock:
            history = self._feedback_history()
            judgements = history.latest_judgements()
            opened = frozenset(item for item in history.items() if item not in judgements and history.seen(item))
            genres: set[str] = set()
            for item in self.store.items(history.recent_likes()):
                genres.update(str(g) for g in item.metadata.get("genres", []) or [])
            readings = self.traits.readings()
            visible = tuple(TraitFact(r.name, float(r.value), r.low, r.high) for r in readings
                            if not r.hidden and r.value is not None)
            hidden = tuple(TraitFact(r.name, 0.5, r.low, r.high) for r in readings if r.hidden)
            return PersonFacts(PersonHistory(judgements, opened), frozenset(genres), visible, hidden)
