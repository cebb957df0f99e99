"""Checks on what a generated sentence claims besides its titles (`grounding` checks those): a sentence
that claims something the person's data contradicts, or that cannot be checked, is dropped whole.

- genres: a catalog genre said in a sentence that names shortlist items must be a genre of one of them (or
  one the request asked for or against): "Withnail and I - Comedy, Horror" goes when the catalog says
  Comedy;
- the person's history: "you liked / loved / enjoyed X" (or "X, which you liked") needs X liked now (the one rule), "you rated /
  watched / saw X" needs X judged or opened, "you disliked X" needs X disliked; such a claim about
  something it cannot check (a pronoun, a genre the likes do not have) goes too;
- traits: a trait's name with a figure must state the reading's own value, a pole's words must be the pole
  the person leans to, and a hidden trait is never mentioned;
- years: a year said outside a title's parentheses must be a named item's (or, naming none, a shortlist
  item's) or one the request asked for;
- public figures: "N people", "N in the public ratings" or "X of 5" must be a figure of an item the sentence
  names (or, naming none, of a shortlist item): its number of public ratings, its average, or a figure of its
  reason ("Psycho ... popular with 239 people" said of The Frighteners goes);
- an echo of the instructions ("You are ownrec, a recommender ...") is not a reply.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.core.llm.answers import TraitFact
from agent.core.llm.grounding import STARTERS, TitleIndex, title_key

_HISTORY_CLAIM = re.compile(
    r"\byou (?:have |ve |had |d )?(?:already |also |really |previously |once |just |recently )?"
    r"(liked|loved|enjoyed|rated|watched|saw|seen|read|disliked|hated)\b|\byour (?:favou?rites?|likes)\b")
_LIKED_WORDS = {"liked", "loved", "enjoyed", "favourite", "favorite", "favourites", "favorites", "likes"}
_DISLIKED_WORDS = {"disliked", "hated"}
_NUMBER = re.compile(r"(?<![\d.])(?:0?\.\d+|[01]\.\d+)(?![\d.])")
_BARE_YEAR = re.compile(r"(?<![\d'’])((?:1[89]|20)\d\d)(?!s|\d)")
_FIGURE_CLAIM = re.compile(r"(\d[\d,]*)\s+(?:people|persons|viewers|readers|raters|ratings|in the public ratings)\b"
                           r"|(\d\.\d+)\s*(?:of|out of|/)\s*5\b", re.IGNORECASE)
_FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?")
ECHO_WORDS = 5  # a run of this many words from the instructions is an echo
OBJECT_REACH = 3  # words between a history verb and the title it claims ("you liked the film X")


def _figure(text: str) -> float:
    return round(float(text.replace(",", "")), 1)


def _words(text: str) -> list[str]:
    return title_key(f"x {text} x").split()[1:-1]  # folded like titles, articles kept


@dataclass(frozen=True)
class PersonHistory:
    """What "you liked / rated X" is checked against: each judged item's latest judgement (True liked, False
    disliked, None a middling rating) and the items opened."""

    judgements: dict[int, bool | None]
    opened: frozenset[int] = frozenset()


@dataclass(frozen=True)
class PersonFacts:
    """What the facade reads for the checks: the history, the genres of the liked items, and the trait
    readings (visible ones with their values; hidden ones only to keep them out)."""

    history: PersonHistory
    liked_genres: frozenset[str]
    traits: tuple[TraitFact, ...]
    hidden_traits: tuple[TraitFact, ...]


class Claims:
    def __init__(self, *, genres_of: dict[int, Sequence[str]], catalog_genres: Iterable[str],
                 asked_genres: Iterable[str], person: PersonFacts, index: TitleIndex, instructions: str = "",
                 years_of: dict[int, int | None] | None = None, asked_years: tuple[int | None, int | None] = (None, None),
                 request: str = "", figures_of: dict[int, Iterable[str]] | None = None) -> None:
        history, liked_genres = person.history, person.liked_genres
        traits, hidden_traits = person.traits, person.hidden_traits
        self.genres_of = {item: {g.lower() for g in genres} for item, genres in genres_of.items()}
        self.genre_forms = {}
        for genre in catalog_genres:
            key = " ".join(_words(genre))
            forms = {key, key + "s"} | ({key[:-1] + "ies"} if key.endswith("y") else set())
            self.genre_forms[genre] = forms
        self.asked = {g.lower() for g in asked_genres}
        self.history = history
        self.liked = {i for i, verdict in history.judgements.items() if verdict is True}
        self.disliked = {i for i, verdict in history.judgements.items() if verdict is False}
        self.liked_genres = {g.lower() for g in liked_genres}
        self.traits, self.hidden = list(traits), list(hidden_traits)
        self.index = index
        self.keys_of: dict[int, list[str]] = {}
        for key, ids in index.by_key.items():
            for item in ids & self.genres_of.keys():
                self.keys_of.setdefault(item, []).append(key)
        self.years_of = years_of  # None: years are not checked
        self.asked_years = asked_years
        self.request_years = {int(y) for y in _BARE_YEAR.findall(request)}
        # Per shortlist item, the figures it may be given: its public count and average, its reason's numbers.
        self.figures_of = None if figures_of is None else {
            item: {_figure(f) for text in texts for f in _FIGURE.findall(text)} for item, texts in figures_of.items()}
        self.request_figures = {_figure(f) for f in _FIGURE.findall(request)}  # "a film for 2 people"
        words = _words(instructions)
        self.echoes = {" ".join(words[k : k + ECHO_WORDS]) for k in range(len(words) - ECHO_WORDS + 1)}

    def problem(self, sentence: str, mentioned: Sequence[int]) -> str | None:
        """Why `sentence` must go, or None. `mentioned`: the shortlist items it names."""
        words = _words(sentence)
        folded = " " + " ".join(words) + " "
        if any(" ".join(words[k : k + ECHO_WORDS]) in self.echoes for k in range(len(words) - ECHO_WORDS + 1)):
            return "echoes the instructions"
        return (self._traits(folded, sentence.lower()) or self._history(sentence) or self._genres(folded, mentioned)
                or self._years(sentence, mentioned) or self._figures(sentence, mentioned))

    def _figures(self, sentence: str, mentioned: Sequence[int]) -> str | None:
        if self.figures_of is None:
            return None
        items = mentioned or list(self.figures_of)
        allowed = set().union(*(self.figures_of.get(item, set()) for item in items)) | self.request_figures
        for claim in _FIGURE_CLAIM.finditer(sentence):
            if _figure(claim.group(1) or claim.group(2)) not in allowed:
                return "gives a public figure that is not the item's"
        return None

    def _years(self, sentence: str, mentioned: Sequence[int]) -> str | None:
        """A year said outside a title's parentheses ("the film was released in 1957") must be the year of an item
        the sentence names, or of a shortlist item when it names none, or one the request asked for."""
        if self.years_of is None:
            return None
        bare = re.sub(r"\(\s*(?:1[89]|20)\d\d\s*\)", " ", sentence)  # a title's year: corrected, not held back
        items = mentioned or list(self.years_of)
        allowed = {self.years_of.get(item) for item in items} | self.request_years
        low, high = self.asked_years
        for year in (int(y) for y in _BARE_YEAR.findall(bare)):
            if year in allowed or ((low is not None or high is not None) and (low or 0) <= year <= (high or 9999)):
                continue
            return "gives a year the catalog does not"
        return None

    def _genres(self, folded: str, mentioned: Sequence[int]) -> str | None:
        if not mentioned:
            return None
        for item in mentioned:  # the titles' own words are not genre claims ("Star Wars" is no War film)
            for key in self.keys_of.get(item, ()):
                folded = folded.replace(f" {key} ", " ")
        allowed = set().union(*(self.genres_of.get(item, set()) for item in mentioned)) | self.asked
        for genre, forms in self.genre_forms.items():
            if genre.lower() not in allowed and any(f" {form} " in folded for form in forms):
                return f"called an item {genre}, which the catalog does not"
        return None

    def _history(self, sentence: str) -> str | None:
        lowered = " ".join(_words(sentence))
        for claim in _HISTORY_CLAIM.finditer(lowered):
            verb = claim.group(1) or claim.group().split()[-1]
            after = lowered[claim.end():]
            # The claim's object: the first title right after the verb ("since you liked X, try Y" claims X only),
            # or, in "X, which you liked" (the feed's reasons word it so), the title right before.
            before = re.match(r"^(.*?)\s*\b(?:which|that)\s*$", lowered[:claim.start()])
            if before:
                words = len(before.group(1).split())
                named = [ids for first, key, ids in self.index.mentions(before.group(1))
                         if first + len(key.split()) == words and (len(key.split()) > 1 or key not in STARTERS)][-1:]
            else:
                named = [ids for first, key, ids in self.index.mentions(after)
                         if first <= OBJECT_REACH and (len(key.split()) > 1 or key not in STARTERS)][:1]
            if verb in _LIKED_WORDS:
                ok_ids = self.liked
            elif verb in _DISLIKED_WORDS:
                ok_ids = self.disliked
            else:
                ok_ids = set(self.history.judgements) | set(self.history.opened)
            if named:
                if not all(ids & ok_ids for ids in named):
                    return f"says you {verb} something you did not"
                continue
            genres = [g.lower() for g, forms in self.genre_forms.items() if any(f" {f} " in f" {after} " for f in forms)]
            if verb in _LIKED_WORDS and genres and all(g in self.liked_genres for g in genres):
                continue
            return "a claim about your history it cannot check"
        return None

    def _traits(self, folded: str, lowered: str) -> str | None:
        for trait in self.hidden:
            if any(f" {' '.join(_words(text))} " in folded for text in (trait.name, trait.low, trait.high)):
                return "mentions a hidden trait"
        for trait in self.traits:
            lean, other = (trait.high, trait.low) if trait.value >= 0.5 else (trait.low, trait.high)
            if f" {' '.join(_words(other))} " in folded and f" {' '.join(_words(lean))} " not in folded:
                return f"gives the wrong pole of {trait.name}"
            for at in (m.end() for m in re.finditer(rf"\b{re.escape(trait.name.lower())}\b", lowered)):
                figures = [float(m.group()) for m in _NUMBER.finditer(lowered[at : at + 24])]
                if figures and all(abs(f - trait.value) > 0.015 for f in figures):
                    return f"gives {trait.name} a value it does not have"
        return None
