"""Replies built from the person's own data, for the requests a language model cannot answer truthfully:
why an item stands where it does, what ownrec knows about the person, and anything off-topic. Each
sentence states a figure or a fact the facade read from the ranker, the store or the trait readings at
the moment of asking (`ItemStanding`, `TasteSummary`); nothing is generated.

Traits are said in the catalog's own words about content ("stories that are warm, kind and heartwarming"),
as where the person's likes sit between two poles: never as a judgement of the person's character.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.core.store import Item

OFF_TOPIC_REPLY = (
    "I can only help with your own catalog. Ask me for something to watch or read (“a funny film from the "
    "80s”), why an item is recommended (“why Heat?”), or what I have learned about your taste (“what do you "
    "know about me?”).")
WHY_WITHOUT_TITLE = (
    "Ask about one title, for example “why Heat?” or “why the second one?”: I can explain an item from the "
    "scores your ranker gives it.")


@dataclass(frozen=True)
class ItemStanding:
    """Where an item stands for the person now: their own latest judgement of it, its place among the
    items they have not judged by the ranker's score, and the ranker's reason."""

    item: Item
    judgement: str | None  # "liked" | "disliked" | "rated in the middle" | None (not judged)
    opened: bool  # the person opened it (a judgement of nothing)
    rank: int | None  # 1 = the ranker's highest score among the unjudged items; None when left out
    candidates: int  # how many unjudged items it was ranked among
    left_out: str | None  # why the feed leaves it out, when it does
    score: float
    reason: str  # the ranker's reason, as the feed words it (`ranker.reason_text`)
    because: Item | None = None  # the liked item the reason names


@dataclass(frozen=True)
class TraitFact:
    name: str
    value: float  # 0 (the low pole) .. 1 (the high pole)
    low: str  # the poles' words, about content
    high: str


@dataclass(frozen=True)
class TasteSummary:
    likes: int
    dislikes: int
    judged: int  # items with a like, a dislike or a rating
    top_genres: list[tuple[str, int]]  # the genres of the liked items, with how many liked items have each
    traits: list[TraitFact]  # the clearest visible readings (hidden traits never)
    hidden: int  # how many traits the person hid
    taste: str | None  # the sentence they described their taste with, if any
    examples: list[Item] = field(default_factory=list)  # liked items, latest first


def _title(item: Item) -> str:
    return f"{item.display_title} ({item.year})" if item.year else item.display_title


def why_reply(standing: ItemStanding, listed_reason: str | None = None) -> str:
    """Why `standing.item` is where it is. `listed_reason`: the reason given when this conversation listed it
    (the ranker's words at that moment), if it did."""
    title = _title(standing.item)
    if standing.judgement is not None:
        return f"You {standing.judgement} {title}, so your feed leaves it out."
    sentences = []
    if listed_reason:
        sentences.append(f"I listed {title} because of this: {listed_reason}.")
    if standing.left_out:
        sentences.append(f"{title} is left out of your feed: {standing.left_out}.")
    elif standing.rank is not None:
        sentences.append(f"Your ranker places {title} {_ordinal(standing.rank)} of the {standing.candidates:,} items "
                         f"you have not rated.")
        if not listed_reason:
            sentences.append(f"Its main reason: {standing.reason}.")
    if standing.opened:
        sentences.append("You have opened it; opening an item does not count as liking it.")
    return " ".join(sentences)


def about_me_reply(summary: TasteSummary) -> str:
    sentences = []
    if summary.judged == 0 and not summary.taste:
        sentences.append("I know nothing about your taste yet: rate a few items in your feed (l to like, d to "
                         "dislike), or describe your taste on the first screen or with `ownrec taste`.")
    else:
        if summary.judged:
            sentences.append(f"From your feedback: {summary.likes:,} liked, {summary.dislikes:,} disliked, "
                             f"{summary.judged:,} items judged in all.")
        if summary.top_genres:
            shown = ", ".join(f"{genre} ({count})" for genre, count in summary.top_genres)
            sentences.append(f"The genres of what you liked, most often first: {shown}.")
        if summary.examples:
            sentences.append("Your latest likes: " + ", ".join(_title(item) for item in summary.examples) + ".")
        if summary.taste:
            sentences.append(f"You described your taste as “{summary.taste}”.")
    for trait in summary.traits:
        pole, other = (trait.high, trait.low) if trait.value >= 0.5 else (trait.low, trait.high)
        sentences.append(f"{trait.name} {trait.value:.2f}: what you like sits nearer “{pole}” than “{other}”.")
    if not summary.traits and summary.judged:
        sentences.append("None of your trait readings is clear enough yet to tell you about.")
    if summary.traits:
        sentences.append("These readings are about what you like, not who you are; the Traits screen (t) and "
                         "`ownrec traits` show their evidence and let you correct, pin, hide or delete them.")
    if summary.hidden:
        sentences.append(f"You hid {summary.hidden} trait{'s' if summary.hidden != 1 else ''}: I do not use "
                         f"{'them' if summary.hidden != 1 else 'it'} here.")
    return " ".join(sentences)


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number:,}{suffix}"
