"""What kind of request the person made, so that each is answered from the right source.

- "why": "why Heat?", "why did you recommend Star Wars?", "why the second one?": answered from the
  ranker's own explanation of that item (`answers.why_reply`), never from the language model's guess;
- "about_me": "what do you know about me?", "describe my taste": answered from the trait readings and
  the person's own feedback, in words about content, never about the person's character;
- "off_topic": a question that asks for nothing in the catalog ("what's the capital of France?"):
  declined politely, with what ownrec can do instead;
- "recommend": everything else, answered from the ranker's shortlist. A request that refines the one
  before it in the same conversation ("but less scary", "something older", "nothing sentimental")
  keeps that request's filters and adds its own (`refine`).

Reading is by patterns on the folded words: it is deterministic and says nothing it cannot check. A
request it cannot place is a recommendation request (the ranker answers any text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from agent.core.llm.understand import (DECADE_WORDS, Filters, Vocabulary, fold, keyword_genres, keyword_years,
                                       words_of)

KINDS = ("recommend", "why", "about_me", "off_topic")

_WHY = re.compile(r"^(?:and |so |but |ok |okay )?(?:why(?! not\b)|how come|what makes you think|explain why)\b")
_ABOUT_ME = re.compile(
    r"\b(?:(?:know|think|learned|learnt|inferred|believe|say|tell me)\s+(?:about|of)\s+me"
    r"|describe\s+(?:me|my)|about\s+me\b|who\s+am\s+i|what\s+am\s+i\s+like|what\s+kind\s+of\s+\w+\s+am\s+i"
    r"|my\s+(?:taste|tastes|personality|profile|traits|preferences))\b")
_QUESTION_START = {"what", "whats", "who", "whos", "where", "wheres", "when", "how", "hows", "is", "are", "can",
                   "could", "do", "does", "did", "will", "would", "should", "which", "tell", "explain", "define"}
_GREETINGS = {"hi", "hello", "hey", "thanks", "thank", "you", "bye", "goodbye", "good", "morning", "afternoon",
              "evening", "night", "ok", "okay", "cheers", "yo", "there", "howdy", "hiya", "greetings"}
# Words that ask for something from a catalog of films, books or feeds: a request with any of them is for
# the ranker, however it is phrased.
_INTENT = set("""recommend recommendation recommendations suggest suggestion suggestions watch watching watched read
reading see seeing show shows showing film films movie movies book books novel novels series episode episodes
documentary documentaries something anything similar like likes liked mood tonight weekend evening want wanted
looking find give pick picks another else other others more less older newer classic classics genre genres story
stories plot director actor actress starring cast cinema title titles list feed rate rated article articles post
posts podcast podcasts author authors watchlist fun funny sad light lighter dark darker shorter longer short long
same again instead""".split())
# A request that opens with one of these continues the one before it.
_REFINE_START = {"but", "less", "more", "nothing", "no", "not", "without", "older", "newer", "earlier", "later",
                 "shorter", "longer", "only", "and", "also", "instead", "same", "another", "something", "anything",
                 "else", "maybe", "rather", "except", "lighter", "darker", "fewer", "funnier", "scarier", "happier",
                 "sadder", "cheerier", "calmer", "slower", "faster"}
_RELATIVE = {"older": "older", "earlier": "older", "oldest": "older", "newer": "newer", "later": "newer",
             "recent": "newer", "newest": "newer", "modern": "newer"}
_LENGTH = {"shorter": "shorter", "short": "shorter", "quick": "shorter", "quicker": "shorter", "brief": "shorter",
           "longer": "longer", "long": "longer", "epic": "longer"}
_ORDINALS = {"first": 0, "second": 1, "third": 2, "fourth": 3, "fifth": 4, "sixth": 5, "seventh": 6, "eighth": 7,
             "ninth": 8, "tenth": 9, "last": -1, "1st": 0, "2nd": 1, "3rd": 2, "4th": 3, "5th": 4}


@dataclass(frozen=True)
class Request:
    kind: str  # one of KINDS
    text: str
    # "why": the item it asks about, as an index into the previous answer's items ("the second one"), if any.
    ordinal: int | None = None
    refines: bool = False  # continues the previous request of the conversation
    relative_years: str | None = None  # "older" | "newer": than what was shown last, or the catalog's middle
    length: str | None = None  # "shorter" | "longer"


def _is_question(text: str, words: list[str]) -> bool:
    return text.rstrip().endswith("?") or (bool(words) and words[0] in _QUESTION_START)


def _asks_for_catalog(text: str, words: list[str], vocabulary: Vocabulary, names_title: bool) -> bool:
    wanted, unwanted = keyword_genres(text, vocabulary)
    low, high = keyword_years(text)
    return bool(set(words) & _INTENT or wanted or unwanted or low is not None or high is not None or names_title
                or set(words) & set(DECADE_WORDS))


def classify(text: str, vocabulary: Vocabulary, names_title: bool = False, continuing: bool = False) -> Request:
    """The kind of `text`. `names_title`: whether it names a catalog title of two words or more (the caller
    checks the catalog); `continuing`: whether it follows an earlier request of the same conversation."""
    request = " ".join(text.split())
    folded = " ".join(words_of(request))
    words = folded.split()
    if _WHY.match(folded):
        ordinal = next((_ORDINALS[w] for w in words if w in _ORDINALS), None)
        number = re.search(r"\b(?:number|no|#)\s*(\d{1,2})\b", fold(request))
        if number:
            ordinal = int(number.group(1)) - 1
        return Request("why", request, ordinal=ordinal)
    if _ABOUT_ME.search(folded):
        return Request("about_me", request)
    if words and set(words) <= _GREETINGS:  # "good morning" greets, even in a catalog with a film of that name
        return Request("off_topic", request)
    if not _asks_for_catalog(request, words, vocabulary, names_title):
        if _is_question(request, words) or (words and set(words) <= _GREETINGS):
            return Request("off_topic", request)
    relative = next((_RELATIVE[w] for w in words if w in _RELATIVE), None)
    length = next((_LENGTH[w] for w in words if w in _LENGTH and _length_meant(words, w)), None)
    refines = continuing and bool(words) and (words[0] in _REFINE_START or words[:2] in (["what", "about"],
                                                                                           ["how", "about"]))
    return Request("recommend", request, refines=refines, relative_years=relative, length=length)


def _length_meant(words: list[str], word: str) -> bool:
    """"a short film", "something shorter": a length; "a long time ago", "short stories" (a form): not."""
    at = words.index(word)
    after = words[at + 1] if at + 1 < len(words) else ""
    return after not in {"time", "ago", "while", "story", "stories", "term", "shot", "list"}


# -- refinements ----------------------------------------------------------------------------------


def refine(filters: Filters, request: Request, previous: dict[str, Any] | None,
           shown_years: Sequence[int], vocabulary: Vocabulary) -> tuple[Filters, list[str]]:
    """The filters for `request`: its own, on top of the previous request's when it refines that one, and
    "older"/"newer" as a year bound against what was shown last (or the catalog's middle year). Also the
    notes to tell the person about what could not be applied."""
    notes: list[str] = []
    if request.relative_years and filters.year_min is None and filters.year_max is None:
        years = [int(y) for y in shown_years if y]
        if request.relative_years == "older":
            bound = min(years) - 1 if years else vocabulary.year_middle
            years_filter = {"year_min": None, "year_max": bound}
        else:
            bound = max(years) + 1 if years else vocabulary.year_middle
            years_filter = {"year_min": bound, "year_max": None}
        if bound is not None:  # replaces the earlier request's years: "older" than what it showed
            filters = replace(filters, **years_filter, sources={**filters.sources, "years": "relative"})
    if request.refines and previous:
        filters = _carry_over(filters, previous)
    if request.length:
        notes.append(f"I cannot choose by length yet, so these are not {request.length} ones." if vocabulary.lengths
                     else f"Your catalog does not say how long its items are, so I could not pick {request.length} ones.")
    return filters, notes


_NEGATED_CLAUSE = re.compile(
    r"(?:\b(?:but|and|yet)\s+)?\b(?:no|not|nothing|without|avoid|except|less|fewer|never|none)\b(?:\s+(?:too|very|so|as|of|the|a|an))*"
    r"(?:\s+[\w'’-]+(?:\s+(?:or|and|nor)\s+[\w'’-]+)?)?", re.I)
_FILLER = {*_REFINE_START, *_RELATIVE, *_LENGTH, "one", "ones", "please", "a", "an", "the", "bit", "little", "lot",
           "much", "even", "than", "that", "this", "those", "these", "them", "it", "those", "same", "thing", "things"}


def ranking_query(text: str, previous_query: str | None = None) -> str:
    """The text the ranker is asked with: the request without what it asks against (an embedding of "nothing
    scary" sits near scary things: the filters take care of that), and, for a refinement, the query it refines
    with whatever the refinement adds."""
    positive = " ".join(_NEGATED_CLAUSE.sub(" ", text).split()).strip(" ,.;:!?-")
    adds = [w for w in words_of(positive) if w not in _FILLER]
    if previous_query is None:
        return positive if adds else ""
    return f"{previous_query} {positive}".strip() if adds else previous_query


def _carry_over(filters: Filters, previous: dict[str, Any]) -> Filters:
    excluded = tuple(dict.fromkeys([*previous.get("exclude_genres", []), *filters.exclude_genres]))
    genres = filters.genres or tuple(g for g in previous.get("genres", []) if g not in excluded)
    has_years = filters.year_min is not None or filters.year_max is not None
    low = filters.year_min if has_years else previous.get("year_min")
    high = filters.year_max if has_years else previous.get("year_max")
    sources = {**{k: "earlier request" for k in previous.get("sources", {})}, **filters.sources}
    return Filters(tuple(genres), excluded, low, high, filters.mood, sources)


def same_series(key: str, anchors: set[str]) -> bool:
    """Whether title key `key` is one of the anchors' or opens with one ("alien" -> "alien 3", "aliens",
    "alien resurrection"): a request for something like a film is not answered with its sequels."""
    return any(re.match(rf"{re.escape(anchor)}s?(?: |$)", key) for anchor in anchors)
