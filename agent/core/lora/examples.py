"""Training examples for the personal LoRA, from the person's own feedback. No torch.

Each example is the judge's question (agent.core.llm.judge) about one item with the answer the
person gave: a like or a rating >= 4 is "Yes", a dislike or a rating <= 2 is "No" (the latest
judgement of an item counts). Items the person never touched are sampled as weak "No"s (half
weight) so that a history of likes alone still teaches something, and so that both answers
carry the same total weight.

The profile in each prompt never names the item being judged. Leaving out that one title would
make the profile one title shorter exactly when the item was judged, a cue the model could learn
instead of taste; so every example leaves out one title of each list: its own if it is there,
otherwise a random one (`_profile_for`).

The examples are read from the person's store; the profile is given as a callable (the facade
builds it from the feedback and the clearest traits), called only once there is enough feedback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

from agent.core.llm import judge
from agent.core.ranker.feedback import latest_judgements
from agent.core.store import Interaction, Store

WEAK_WEIGHT = 0.5
MAX_JUDGED = 200  # the latest judgements; older ones add time, not much taste


class NotEnoughFeedback(ValueError):
    pass


@dataclass(frozen=True)
class Example:
    profile: judge.Profile
    item_text: str
    enjoyed: bool
    weight: float = 1.0
    kind: str = "judged"  # "judged" (the person's answer) or "weak" (a sampled unrated item)
    title: str = ""


@dataclass(frozen=True)
class ExampleSet:
    examples: tuple[Example, ...]
    positives: int
    negatives: int
    weak_negatives: int

    def counts(self) -> dict[str, int]:
        return {"examples": len(self.examples), "positives": self.positives, "negatives": self.negatives,
                "weak_negatives": self.weak_negatives}

    def fingerprint(self) -> str:
        """Identifies the data a checkpoint was trained on."""
        data = [[asdict(e.profile), e.item_text, e.enjoyed, e.weight] for e in self.examples]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def judged_items(interactions: list[Interaction]) -> list[tuple[int, bool]]:
    """(item id, enjoyed) per item with a clear latest judgement, latest first."""
    latest = latest_judgements(interactions)
    return [(item_id, enjoyed) for item_id, enjoyed in latest.items() if enjoyed is not None][:MAX_JUDGED]


def examples_from_feedback(store: Store, profile: Callable[[], judge.Profile], seed: int = 0) -> ExampleSet:
    """The person's examples from the feedback in `store` (see the module doc); `profile()` gives
    their profile with one extra title per list (`judge.profile_of(..., extra=1)`).
    NotEnoughFeedback without a like and a dislike or unrated item to contrast it with."""
    with store.lock:  # one consistent read: the store's connection is shared with the app's threads
        return _examples_from_feedback(store, profile, seed)


def _examples_from_feedback(store: Store, profile: Callable[[], judge.Profile], seed: int) -> ExampleSet:
    judged = judged_items(store.interactions())
    positives = sum(1 for _, enjoyed in judged if enjoyed)
    if positives == 0:
        raise NotEnoughFeedback("the personal LoRA learns what you enjoy: like or rate (4 stars or more) "
                                "a few items first")
    negatives = len(judged) - positives
    rng = np.random.default_rng(seed)
    touched = {event.item_id for event in store.interactions()}
    untouched = [item_id for item_id in store.item_ids() if item_id not in touched]
    weak_count = min(2 * max(positives - negatives, 0), len(untouched))  # half weight each: balances
    weak_ids = [int(i) for i in rng.choice(untouched, size=weak_count, replace=False)] if weak_count else []
    if negatives + weak_count == 0:
        raise NotEnoughFeedback("nothing to contrast your likes with: the catalog has no unrated items and "
                                "you disliked nothing")
    wide = profile()
    items = {item.id: item for item in store.items([i for i, _ in judged] + weak_ids)}
    examples = [Example(_profile_for(wide, items[i].display_title, rng), items[i].text, enjoyed,
                        title=items[i].display_title) for i, enjoyed in judged]
    examples += [Example(_profile_for(wide, items[i].display_title, rng), items[i].text, False,
                         WEAK_WEIGHT, "weak", items[i].display_title) for i in weak_ids]
    return ExampleSet(tuple(examples), positives, negatives, weak_count)


def _profile_for(profile: judge.Profile, title: str, rng: np.random.Generator) -> judge.Profile:
    """The profile without `title`, and without one random other title in each list that does
    not hold it, so that every example's profile has the same length (see the module doc)."""
    liked = _drop_one(profile.liked, title, rng)
    disliked = _drop_one(profile.disliked, title, rng)
    return judge.Profile(liked[: judge.LIKED_SHOWN], disliked[: judge.DISLIKED_SHOWN], profile.traits)


def _drop_one(titles: tuple[str, ...], title: str, rng: np.random.Generator) -> tuple[str, ...]:
    if title in titles:
        return tuple(t for t in titles if t != title)
    if not titles:
        return titles
    drop = int(rng.integers(len(titles)))
    return titles[:drop] + titles[drop + 1 :]


def synthetic_examples(liked: Iterable[tuple[str, str]], disliked: Iterable[tuple[str, str]],
                       profile: judge.Profile) -> ExampleSet:
    """Examples from (title, text) pairs with one fixed profile: for tests and the benchmark."""
    yes = [Example(profile.without(t), text, True, title=t) for t, text in liked]
    no = [Example(profile.without(t), text, False, title=t) for t, text in disliked]
    return ExampleSet(tuple(yes + no), len(yes), len(no), 0)
