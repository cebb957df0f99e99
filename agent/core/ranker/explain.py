"""Why each item is on the slate, read from its score, and said in words that are true.

An item's score is a sum of parts (`Scorer.parts`): the person's taste (the text term through both adapters,
steered by their latest likes), a chat request's term, how widely liked the item is (its item bias, learned
from public ratings or the federation), what people with tastes like the person's liked (its item residual
against their vector), and each public signal times the person's own weight on it. The score is linear, so
an item's lead over the catalog's average item is exactly the sum of each part's lead over that part's
average; the reason is the part with the largest lead (`explain`). Only then is it put in words
(`reason_text`), each naming a fact the app can check:
- taste: "because you liked X", X an item the person likes now (the one rule, `feedback.judgement`), the
  one closest to this item in the person's own item space (what the taste term measures), never the item
  itself or an item with its title; when several likes are about as close, the slate spreads its reasons
  over them instead of naming one film on every line. Without likes: their taste sentence, or their taste
  as ownrec reads it (trait edits and dislikes move it too);
- what people went on to like: "people who rated X (you liked it) rated this soon after: N in the public
  ratings", X
  the latest like whose public followers put the item highest, N the people who made that pair (a count in
  the public data);
- the item bias, the item residual and the public signals: "widely liked", "liked by people with tastes
  like yours", and the public figures themselves (how many people, the average rating, the year);
- exploring slots say they are exploring, and whether anything has been liked yet.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from agent.core.ranker.adapters import PersonalAdapter
from agent.core.ranker.model import SIGNALS, Scorer
from agent.core.store import Item

# When the likes closest to an item are within this cosine of the closest, any of them explains it about
# as well; the slate then names the one it has named least so far.
SPREAD_MARGIN = 0.05
# A part must lead the average item by more than this to be the reason (scores are a few units wide);
# below it, no part stands out.
MIN_LEAD = 1e-3
# When another part is the reason, the taste part is said too (with the like closest to the item) if it
# leads by at least this share of the reason's lead: a feed that public standing dominates still shows where
# the person's likes pull.
TASTE_TOO = 0.3
# The latest likes a reason may name (and the feed's exploration steers away from): a fixed number, so that a
# feed costs the same however long the history.
EXPLAINING_LIKES = 256


@dataclass(frozen=True)
class Explanation:
    kind: str               # a part of `Scorer.parts`, or "exploring", or "overall" (no part stands out)
    because_row: int | None = None  # the liked item's row the reason names, if any (taste, query, taste_too)
    # With a public signal: whether the item's own value is above the catalog's average. A person whose
    # weight on a signal is negative (they like obscure or older films) is served items below it.
    above: bool = True
    taste_too: bool = False  # another part is the reason, and the taste part leads by TASTE_TOO of it as well
    people: int = 0  # "co_liked": how many people in the public data rated the item soon after `because_row`


def _unit(H: np.ndarray) -> np.ndarray:
    return H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-12)


def explain(scorer: Scorer, personal: PersonalAdapter, rows: np.ndarray, exploring: list[bool],
            liked_rows: np.ndarray, query: np.ndarray | None = None, query_weight: float = 0.0) -> list[Explanation]:
    """One explanation per slate row, in slate order (`personal`: the adapter the slate was ranked with)."""
    rows = np.asarray(rows, np.int64)
    if len(rows) == 0:
        return []
    parts = scorer.parts(personal, rows, query, query_weight)
    average = scorer.average_parts(personal, query, query_weight)
    names = list(parts)
    lead = np.stack([parts[name] - average[name] for name in names], axis=1)
    liked_rows = np.asarray(liked_rows, np.int64)
    similarity = None
    if len(liked_rows):
        similarity = _unit(scorer.item_vectors(personal, rows)) @ _unit(scorer.item_vectors(personal, liked_rows)).T
    named: Counter[int] = Counter()
    out = []
    for k, row in enumerate(rows):
        if exploring[k]:
            out.append(Explanation("exploring", None))
            continue
        best = int(np.argmax(lead[k]))
        kind = names[best] if lead[k, best] > MIN_LEAD else "overall"
        because, above = None, True
        if kind in SIGNALS:
            above = bool(scorer.catalog.signals[row, SIGNALS.index(kind)] >= 0.0)  # z-scored: 0 is the average
        taste = lead[k, names.index("taste")]
        # Not after "co_liked": its like is the one the public data names, not the one closest in taste.
        taste_too = (kind not in ("taste", "query", "overall", "co_liked") and taste >= TASTE_TOO * lead[k, best]
                     and taste > MIN_LEAD)
        people = 0
        if kind == "co_liked":
            because, people = _leading_like(scorer, personal, int(row))
            if because is None:
                kind = "overall"
        elif (kind in ("taste", "query") or taste_too) and similarity is not None:
            because = _closest_like(scorer, int(row), liked_rows, similarity[k], named)
            if because is not None:
                named[because] += 1
        out.append(Explanation(kind, because, above, taste_too and because is not None, people))
    return out


def _leading_like(scorer: Scorer, personal: PersonalAdapter, row: int) -> tuple[int | None, int]:
    """The latest like whose public followers add the most to `row`'s score, and how many people made the pair."""
    term, co_liked = personal.co_liked, scorer.catalog.co_liked
    if term is None or co_liked is None:
        return None, 0
    best, best_share, best_people = None, 0.0, 0
    for like, share in zip(term.latest.tolist(), term.mix.tolist()):
        weight, people = co_liked.pair(like, row)
        if weight * share > best_share and like != row:
            best, best_share, best_people = int(like), weight * share, people
    return best, best_people


def _closest_like(scorer: Scorer, row: int, liked_rows: np.ndarray, similarity: np.ndarray,
                  named: Counter[int]) -> int | None:
    """The liked row that explains `row`: the closest in the person's item space, or, among those within
    SPREAD_MARGIN of it, the one named least so far; never the item itself or one with the same text."""
    X = scorer.catalog.X
    allowed = (liked_rows != row) & (X[liked_rows] @ X[row] < 1.0 - 1e-5)  # not itself, nor a twin (same text)
    if not allowed.any():
        return None
    sims = np.where(allowed, similarity, -np.inf)
    top = float(sims.max())
    near = [int(liked_rows[j]) for j in np.argsort(-sims, kind="stable") if sims[j] >= top - SPREAD_MARGIN]
    return min(near, key=lambda r: named[r])  # stable: the closest among the least named


def reason_text(explanation: Explanation, item: Item, because: Item | None, *, query: str | None,
                taste: str | None, any_likes: bool, wanted: bool = False) -> str:
    """The reason in words. Every figure is the item's own public data; every liked item is one the person
    likes now. `wanted`: the item is on the person's want list, said as a fact, not as why it ranks here (a
    want teaches the ranker nothing)."""
    text = _main_reason(explanation, item, because, query=query, taste=taste, any_likes=any_likes)
    if explanation.taste_too and because is not None:
        text += f"; close to {because.display_title}, which you liked"
    return text + ("; on your want list" if wanted else "")


def _main_reason(explanation: Explanation, item: Item, because: Item | None, *, query: str | None,
                 taste: str | None, any_likes: bool) -> str:
    kind = explanation.kind
    if kind == "exploring":
        return ("exploring: unlike what you have liked so far" if any_likes
                else "exploring: you have not liked anything yet, so ownrec tries something different")
    if kind == "query":
        return f"matches “{query}”" + (f"; close to {because.display_title}, which you liked" if because else "")
    if kind == "taste":
        if because is not None:
            return f"because you liked {because.display_title}"
        if taste and not any_likes:
            return f"fits “{taste}”"
        return "fits your taste as ownrec reads it from your ratings and settings"
    signals, above = item.signals, explanation.above
    if kind == "popularity" and signals.popularity is not None:
        return f"{'popular with' if above else 'little known: seen by'} {_count(signals.popularity)} people"
    if kind == "rating" and signals.avg_rating is not None:
        count = f" by {_count(signals.popularity)} people" if signals.popularity else " on average"
        return f"{'well rated' if above else 'rated below average'}: {signals.avg_rating:.1f} of 5{count}"
    if kind == "recency" and signals.published is not None:
        return f"{'recent' if above else 'older'}: from {item.year or _date(signals.published)}"
    if kind == "co_liked" and because is not None:
        return (f"people who rated {because.display_title} (you liked it) rated this soon after: "
                f"{_count(explanation.people)} in the public ratings")
    if kind == "liked_widely":
        return "widely liked by others"
    if kind == "people_like_you":
        return "liked by people whose tastes are like yours"
    if not any_likes and not taste:
        return "a starting point: rate it to teach ownrec"
    return "fits you on several counts, none of which stands out"


def _count(value: float) -> str:
    return f"{int(round(value)):,}"


def _date(published: float) -> str:
    if not math.isfinite(published):
        return "an unknown date"
    return datetime.fromtimestamp(published, tz=timezone.utc).strftime("%Y-%m-%d")
