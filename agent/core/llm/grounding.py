"""Keep generated text honest: every title it names must be an item of the catalog that the
ranker put on the shortlist. A sentence that names anything else is removed whole.

`ground(text, shortlist, catalog)` returns (safe_text, mentioned_item_ids, removed_spans). It
works sentence by sentence, and a verdict depends only on that sentence and the ones before it
(a repeat of an earlier sentence is dropped), so a stream can release each sentence as soon as
it is complete (`SentenceGate`) and the concatenation of what it released is exactly
`ground(full text).safe_text`.

What counts as naming a title, in a sentence:
- a quoted or emphasised span ("…", “…”, «…», *…*, **…**, _…_) and the head of a list line
  ("1. Heat (1995) - …"): matched against the catalog as a whole;
- a run of capitalised words ("The Silent Horizon", "Star Wars", "Usual Suspects, The"):
  catalog titles are found inside it; what is left is a made-up title if it holds two or more
  capitalised words outside the known vocabulary (genres, the request's own words, common
  words), or one followed by a year in parentheses;
- shortlist titles written in lower case ("the usual suspects") count as mentions.
Matching ignores case, accents, punctuation, a year in parentheses and articles at either end
("The Usual Suspects" = "Usual Suspects, The" = "usual suspects").

Policy for a title that exists in the catalog but is not on the shortlist: the sentence is
removed (reason "not on the shortlist"): the person gets recommendations only from their ranker,
never the model's free pick (which may be something they disliked or a hidden trait's pull).
Items the prompt showed as context (`context` ids, e.g. "because you liked X") may be named.
Names of people and places written as two capitalised words are treated like made-up titles:
the model cannot check them either, so the sentence goes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ARTICLES = frozenset({"the", "a", "an", "la", "le", "les", "l", "il", "el", "los", "las", "das", "der", "die",
                      "den", "det", "lo", "un", "une"})
CONNECTORS = frozenset({"of", "the", "a", "an", "and", "in", "on", "to", "for", "with", "at", "from", "by", "de",
                        "la", "le", "du", "des", "der", "die", "das", "von", "van", "y", "et", "vs", "&", "or"})
# Capitalised words that start sentences, and capitalised words that are not titles.
STARTERS = frozenset("""i if it its this that these those they their there here the a an my our your you we he
she also and but so for in on as at both each some enjoy try watch consider check based given since because
another finally first next then plus hope happy sure yes no of all with what which while when why how or
just maybe perhaps great good nice lastly overall instead other others many most any one two three
everyone everybody someone somebody anyone nobody everything something nothing anything whatever who whoever
let lets thanks thank please remember note dont do does did is are was were be can could would should will
might must may not like love feel looking look go get take make see find pick choose start begin after before
during from to into by about above below under over between among without within through however therefore
thus still yet though although even only ever never always often sometimes usually again once well
""".split())
COMMON_PROPER = frozenset("""monday tuesday wednesday thursday friday saturday sunday january february march april
may june july august september october november december english american british french german italian
spanish japanese chinese european hollywood oscar oscars academy award awards golden globe ai tv dvd ownrec
smollm film films movie movies book books item items list title titles genre genres top pick picks
recommendation recommendations note tip tips
""".split())
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "vol", "no", "mt", "ft", "prof", "gen",
                           "lt", "sgt", "capt", "col", "etc", "inc", "ltd", "co"})

_YEAR_PARENS = re.compile(r"\(\s*(?:1[89]|20)\d\d\s*\)")
_APOSTROPHES = re.compile(r"[’'`´]")
_NON_WORD = re.compile(r"[^0-9a-z]+")
_TRAILING_ARTICLE = re.compile(r"^(?P<body>.+?),\s*(?P<article>the|a|an|la|le|les|l|il|el|das|der|die|det)\s*$")
_WORD = re.compile(r"[0-9A-Za-zÀ-ÖØ-öø-ÿ][0-9A-Za-zÀ-ÖØ-öø-ÿ'’\-]*|&")
_EXPLICIT = [re.compile(p) for p in (
    r"“([^”\n]{1,120})”", r"\"([^\"\n]{1,120})\"", r"«([^»\n]{1,120})»", r"‘([^’\n]{1,120})’",
    r"\*\*([^*\n]{1,120})\*\*", r"(?<![\w*])\*([^*\s][^*\n]{0,119})\*(?![\w*])", r"(?<![\w_])_([^_\n]{1,120})_(?![\w_])",
)]
_LIST_HEAD = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•])\s+(?P<head>[^\n]+?)(?=\s+[-–—]\s|\s*[(:]|\s*$)")
_YEAR_AFTER_TITLE = re.compile(r"\(\s*(?:1[89]|20)\d\d\s*\)")
_YEAR_AFTER_TITLE_PREFIX = re.compile(r"\(\s*(?:[12](?:[0-9](?:\d\d?)?)?)?")
_LIST_NUMBER = re.compile(r"(?:^|\n)[ \t]*\d{1,2}$")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c)).lower()


def title_key(text: str) -> str:
    """The comparable form of a title: lower case, no accents, punctuation or year, and no
    article at either end ("Usual Suspects, The (1995)" -> "usual suspects")."""
    text = _APOSTROPHES.sub("", _fold(text)).replace("&", " and ")
    text = _YEAR_PARENS.sub(" ", text).strip(" \t*_\"“”«»‘.,;:!?")
    match = _TRAILING_ARTICLE.match(text)
    if match:
        text = match["body"]
    words = _NON_WORD.sub(" ", text).split()
    if len(words) > 1 and words[0] in ARTICLES:
        words = words[1:]
    return " ".join(words)


def _plain_words(text: str) -> list[str]:
    return _NON_WORD.sub(" ", _APOSTROPHES.sub("", _fold(text))).split()


def title_variants(title: str) -> list[str]:
    """A catalog title and its alternates: "Seven (Se7en)" -> "Seven (Se7en)", "Seven", "Se7en"."""
    variants = [title]
    outside = re.sub(r"\s*\([^)]*\)", "", title).strip()
    if outside and outside != title:
        variants.append(outside)
    for inner in re.findall(r"\(([^)]*)\)", title):
        inner = re.sub(r"^\s*a\.?k\.?a\.?\s+", "", inner, flags=re.I).strip()
        if len(title_key(inner)) >= 4 and not re.fullmatch(r"\s*(?:1[89]|20)\d\d\s*", inner):
            variants.append(inner)
    return variants


class TitleIndex:
    """Catalog titles by their comparable form (`title_key`). Several items may share one."""

    def __init__(self, entries: Iterable[tuple[int, str]] = ()) -> None:
        self.by_key: dict[str, set[int]] = {}
        self.max_words = 1
        for item_id, title in entries:
            self.add(item_id, title)

    def add(self, item_id: int, title: str) -> None:
        for variant in title_variants(title):
            key = title_key(variant)
            if key:
                self.by_key.setdefault(key, set()).add(int(item_id))
                self.max_words = max(self.max_words, len(key.split()) + 1)  # +1: a leading article

    @classmethod
    def from_items(cls, items: Iterable[Any]) -> "TitleIndex":
        index = cls()
        for item in items:
            item = getattr(item, "item", item)  # a Recommendation
            index.add(item.id, item.title)
            if item.display_title != item.title:
                index.add(item.id, item.display_title)
        return index

    @classmethod
    def from_store(cls, store) -> "TitleIndex":
        index = cls()
        for item_id, title, metadata in store.item_labels():
            index.add(item_id, title)
            shown = metadata.get("display_title")
            if shown and shown != title:
                index.add(item_id, shown)
        return index

    def find(self, text: str) -> set[int]:
        return self.by_key.get(title_key(text), set())

    def mentions(self, text: str) -> list[tuple[int, str, set[int]]]:
        """Catalog titles written anywhere in `text`, in any case: (first word, title key, ids), longest
        first and not overlapping, then in text order. What a request names ("why is star wars in my feed")."""
        words = _plain_words(text)
        taken = [False] * len(words)
        found = []
        for size in range(min(len(words), self.max_words), 0, -1):
            for first in range(len(words) - size + 1):
                if any(taken[first : first + size]):
                    continue
                key = " ".join(words[first : first + size])
                ids = self.by_key.get(key)
                if ids and (size > 1 or key not in STARTERS | CONNECTORS | COMMON_PROPER):
                    found.append((first, key, set(ids)))
                    taken[first : first + size] = [True] * size
        return sorted(found)

    def __len__(self) -> int:
        return len(self.by_key)


@dataclass(frozen=True)
class RemovedSpan:
    start: int  # offsets into the generated text
    end: int
    text: str  # the sentence that was removed
    title: str  # what it named, as written
    reason: str  # "not in the catalog" | "not on the shortlist"


@dataclass(frozen=True)
class Grounding:
    safe_text: str
    mentioned: list[int]  # shortlist items the text names, in order of first mention
    removed: list[RemovedSpan]

    def __iter__(self):  # unpacks as (safe_text, mentioned_item_ids, removed_spans)
        return iter((self.safe_text, self.mentioned, self.removed))


# -- sentences ----------------------------------------------------------------------------------


def sentence_ends(text: str, final: bool = True) -> list[int]:
    """Offsets where sentences end (each sentence keeps its trailing whitespace). Sentences
    are found one after another, each from where the last ended, and a boundary is decided
    only once the next non-space character is known: a prefix of a text always splits as the
    text does. With final=True the end of the text closes the last sentence."""
    ends: list[int] = []
    start = 0
    while (end := _next_end(text, start)) is not None:
        ends.append(end)
        start = end
    if final and start < len(text):
        ends.append(len(text))
    return ends


def _next_end(text: str, start: int) -> int | None:
    for gap in re.compile(r"\s+").finditer(text, start):
        gap_start, end = gap.span()
        if gap_start == start or end == len(text):
            continue
        if "\n" in gap.group():
            return end
        before = text[start:gap_start].rstrip(")]\"'’”*_")
        if not before or before[-1] not in ".!?…":
            continue
        following = text[end]
        if following == "(":  # a year after a title that ends in "!" or "?" ("That Thing You Do! (1996)") is the title's
            if _YEAR_AFTER_TITLE.match(text, end):
                continue
            if _YEAR_AFTER_TITLE_PREFIX.fullmatch(text, end):
                return None  # undecided until the rest of the text shows whether a year follows
        if not (following.isupper() or following.isdigit() or following in "\"“‘«*([-•"):
            continue
        word = re.search(r"([\w.]*)[.!?…]+$", before)
        stem = word.group(1) if word else ""
        if before[-1] == "." and (stem.lower() in ABBREVIATIONS or re.fullmatch(r"(?:[A-Za-z]\.)*[A-Za-z]", stem)):
            continue  # "Mr. Holland's Opus", "E.T. the Extra-Terrestrial"
        if before[-1] == "." and _LIST_NUMBER.search(before[:-1]):
            continue  # "1. Heat": a list number, not the end of a sentence
        return end
    return None


# -- one sentence -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    mentioned: list[int]
    title: str | None = None  # the offending title, if the sentence must go
    reason: str = ""


class _Checker:
    def __init__(self, index: TitleIndex, allowed: set[int], context: set[int], vocabulary: set[str],
                 shortlist_keys: list[tuple[str, int]]) -> None:
        self.index = index
        self.allowed = allowed
        self.context = context
        self.vocabulary = vocabulary
        self.shortlist_keys = shortlist_keys

    def _resolve(self, ids: set[int], sentence_initial_single: bool = False) -> tuple[int | None, bool]:
        """(the shortlist id it names or None, whether it is acceptable)."""
        named = sorted(ids & self.allowed)
        if named:
            return named[0], True
        if ids & self.context:
            return None, True
        return None, sentence_initial_single  # a sentence-initial single word is too weak to convict

    def _is_vocabulary(self, text: str) -> bool:
        words = _plain_words(text)
        return all(w in self.vocabulary or w in STARTERS or w in COMMON_PROPER or w in CONNECTORS or w.isdigit()
                   for w in words)

    def check(self, sentence: str) -> _Verdict:
        mentioned: list[int] = []

        def mention(item_id: int | None) -> None:
            if item_id is not None and item_id not in mentioned:
                mentioned.append(item_id)

        # 1. quoted or emphasised spans and list heads: the whole span is a title, or nothing.
        spans = [m.group(1) for pattern in _EXPLICIT for m in pattern.finditer(sentence)]
        head = _LIST_HEAD.match(sentence)
        if head and len(head["head"].split()) <= 10:
            spans.append(head["head"])
        for span in spans:
            if not title_key(span) or self._is_vocabulary(span):
                continue
            ids = self.index.find(span)
            if not ids:
                ids = self._inner_titles(span)
            if not ids:
                return _Verdict(mentioned, span.strip(), "not in the catalog")
            item_id, ok = self._resolve(ids)
            if not ok:
                return _Verdict(mentioned, span.strip(), "not on the shortlist")
            mention(item_id)

        # 2. runs of capitalised words.
        for run in _capitalised_runs(sentence):
            verdict = self._check_run(sentence, run, mention)
            if verdict is not None:
                return _Verdict(mentioned, verdict[0], verdict[1])

        # 3. shortlist titles in any case.
        folded = " " + " ".join(_plain_words(sentence)) + " "
        for key, item_id in self.shortlist_keys:
            if f" {key} " in folded:
                mention(item_id)
        return _Verdict(mentioned)

    def _inner_titles(self, span: str) -> set[int]:
        found: set[int] = set()
        for run in _capitalised_runs(span):
            for _, _, ids in self._windows(span, run):
                found |= ids
        return found

    def _windows(self, sentence: str, run: list[re.Match]) -> list[tuple[int, int, set[int]]]:
        """Catalog titles inside a run, longest first, not overlapping: (first, last+1, ids)."""
        taken = [False] * len(run)
        found = []
        for size in range(min(len(run), self.index.max_words), 0, -1):
            for first in range(0, len(run) - size + 1):
                if any(taken[first : first + size]):
                    continue
                words = run[first : first + size]
                if size == 1 and (words[0].group().isdigit() or words[0].group().lower() in CONNECTORS):
                    continue
                if not words[0].group()[0].isupper() and not words[0].group()[0].isdigit():
                    continue
                ids = self.index.find(sentence[words[0].start() : words[-1].end()])
                if ids:
                    found.append((first, first + size, ids))
                    taken[first : first + size] = [True] * size
        return sorted(found)

    def _check_run(self, sentence: str, run: list[re.Match], mention) -> tuple[str, str] | None:
        first_word = _first_word_start(sentence)
        covered = [False] * len(run)
        for first, last, ids in self._windows(sentence, run):
            single_initial = last - first == 1 and run[first].start() == first_word
            if last - first == 1 and self._is_vocabulary(run[first].group()):
                continue  # "Drama", "Comedy": a genre word, even if some item is called that
            item_id, ok = self._resolve(ids, sentence_initial_single=single_initial)
            if not ok:
                return sentence[run[first].start() : run[last - 1].end()], "not on the shortlist"
            if item_id is None and single_initial and not (ids & self.context):
                continue  # "Speed matters." is not about the film
            mention(item_id)
            covered[first:last] = [True] * (last - first)
        # What no catalog title explains: contiguous leftovers of capitalised words.
        segment: list[re.Match] = []
        for position, word in enumerate(run + [None]):
            if word is not None and not covered[position]:
                segment.append(word)
                continue
            problem = self._made_up(sentence, segment, first_word)
            if problem:
                return problem, "not in the catalog"
            segment = []
        return None

    def _made_up(self, sentence: str, segment: list[re.Match], first_word: int) -> str | None:
        """A made-up title (or an unverifiable name) among capitalised words no catalog title
        explains: two or more unknown ones; one in mid-sentence ("enjoy Zorblax tonight", "The
        Matrix"); or one opening the sentence as its subject ("Zorblax is ...", "Zorblax!")."""
        unknown = [w for w in segment if (w.group()[0].isupper() or w.group()[0].isdigit())
                   and not self._is_vocabulary(w.group())]
        if not unknown:
            return None
        text = sentence[segment[0].start() : segment[-1].end()]
        if len(unknown) >= 2 or unknown[0].start() != first_word:
            return text
        if _SUBJECT_AFTER.match(sentence[unknown[0].end():]):
            return text
        return None


_SUBJECT_AFTER = re.compile(r"\s*(?:\((?:1[89]|20)\d\d\)|[!:]|(?:is|was|are|were|has|offers|features|follows|tells|"
                            r"stars|delivers|brings|remains|captures|explores)\b)")


def _first_word_start(sentence: str) -> int:
    match = re.match(r"[\s\-*•\"“«‘(\[]*(?:\d{1,2}[.)]\s+)?[\s*\"“«‘]*", sentence)
    return match.end() if match else 0


def _capitalised_runs(sentence: str) -> list[list[re.Match]]:
    """Maximal runs of capitalised words, joined by spaces, colons, hyphens or connectors;
    "Usual Suspects, The" keeps its trailing article."""
    words = list(_WORD.finditer(sentence))
    runs: list[list[re.Match]] = []
    current: list[re.Match] = []
    for position, word in enumerate(words):
        text = word.group()
        capital = text[0].isupper() or text[0].isdigit()
        if current:
            gap = sentence[current[-1].end() : word.start()]
            previous = current[-1].group()
            abbreviation = gap.strip(" ") == "." and (previous.lower() in ABBREVIATIONS or len(previous) == 1)
            joined = ((gap.strip(" ") in ("", ":", "-", "–", "&") or abbreviation) and "\n" not in gap
                      and not previous.endswith(("!", "?")))
            trailing_article = (gap.strip() == "," and text.lower() in ("the", "a", "an") and capital
                                and (position + 1 == len(words) or not words[position + 1].group()[0].isupper()
                                     or sentence[word.end() : words[position + 1].start()].strip()))
            if (joined and (capital or text.lower() in CONNECTORS)) or trailing_article:
                current.append(word)
                continue
            runs.append(current)
            current = []
        if capital:
            current.append(word)
    if current:
        runs.append(current)
    trimmed = []
    for run in runs:
        while run and not (run[-1].group()[0].isupper() or run[-1].group()[0].isdigit()):
            run = run[:-1]
        if run:
            trimmed.append(run)
    return trimmed


# -- the whole text -----------------------------------------------------------------------------


def _ids(items: Iterable[Any]) -> list[Any]:
    return [getattr(item, "item", item) for item in items]


def _vocabulary(words: Iterable[str]) -> set[str]:
    vocabulary: set[str] = set()
    for text in words:
        vocabulary.update(_plain_words(text))
    return vocabulary


class Grounder:
    """`ground` with its inputs prepared once, for checking a stream sentence by sentence.

    Beyond the title check, a kept sentence is tidied: a year written after a shortlist title
    is corrected to the catalog's ("Heat (2003)" -> "Heat (1995)"), and echoes of the prompt's
    item ids ("[id 12]") are dropped. A sentence the text already said is dropped as a repeat
    (small models loop); `repeated` tells the caller it may stop generating."""

    def __init__(self, shortlist: Iterable[Any], catalog: TitleIndex | Iterable[Any],
                 vocabulary: Iterable[str] = (), context: Iterable[Any] = (), claims: Any = None) -> None:
        items = _ids(shortlist)
        # Context: ids, or items (then a year written after one of their titles is corrected too).
        shown = [c for c in context if not isinstance(c, int)]
        context = {c if isinstance(c, int) else c.id for c in context}
        self.claims = claims  # `claims.Claims`: what a sentence says besides titles, checked after them
        index = catalog if isinstance(catalog, TitleIndex) else TitleIndex.from_items(catalog)
        extra = TitleIndex.from_items(items)  # shortlist items are catalog items by definition
        if any(not ids <= index.by_key.get(key, set()) for key, ids in extra.by_key.items()):
            merged = TitleIndex()
            merged.by_key = {key: set(ids) for key, ids in index.by_key.items()}
            for key, ids in extra.by_key.items():
                merged.by_key.setdefault(key, set()).update(ids)
            merged.max_words = max(index.max_words, extra.max_words)
            index = merged
        self.index = index
        self.years = {item.id: item.year for item in [*items, *shown] if getattr(item, "year", None)}
        shortlist_keys = []
        for key, ids in extra.by_key.items():
            if len(key.split()) >= 2 or len(key) >= 6:
                shortlist_keys.extend((key, item_id) for item_id in sorted(ids))
        self.allowed = {item.id for item in items}
        self.dated = self.allowed | {item.id for item in shown}  # titles whose year `_tidy` corrects
        self.checker = _Checker(index, self.allowed, set(context), _vocabulary(vocabulary), shortlist_keys)

    def check(self, text: str, offset: int, seen: set[str]) -> tuple[str, list[int], RemovedSpan | None]:
        """One sentence, given the sentences kept before it: (text to show, ids, removal)."""
        key = " ".join(_plain_words(text))
        if key and key in seen:
            return "", [], RemovedSpan(offset, offset + len(text), text, "", "repeated")
        verdict = self.checker.check(text)
        if verdict.title is not None:
            return "", [], RemovedSpan(offset, offset + len(text), text, verdict.title, verdict.reason)
        problem = self.claims.problem(text, verdict.mentioned) if self.claims is not None else None
        if problem:
            return "", [], RemovedSpan(offset, offset + len(text), text, "", problem)
        if key:
            seen.add(key)
        return self._renumber(self._tidy(text), seen), verdict.mentioned, None

    @staticmethod
    def _renumber(text: str, seen: set[str]) -> str:
        """Numbered lines count from 1 in what is shown, whatever was held back before them."""
        match = _LIST_LINE.match(text)
        if not match or not isinstance(seen, Kept):
            return text
        seen.list_number += 1
        return f"{match['indent']}{seen.list_number}{text[match.end('number'):]}"

    def _tidy(self, text: str) -> str:
        text = _ID_ECHO.sub("", text)
        for year in reversed(list(_YEAR_PARENS.finditer(text))):
            before = _plain_words(text[: year.start()])
            for first in range(max(0, len(before) - self.index.max_words), len(before)):
                ids = self.index.by_key.get(title_key(" ".join(before[first:])), set()) & self.dated
                if ids:
                    years = sorted({self.years[i] for i in ids if i in self.years})
                    written = int(year.group().strip("() "))
                    if years and written not in years:
                        text = f"{text[: year.start()]}({years[0]}){text[year.end():]}"
                    break
        return text

    def ground(self, text: str) -> Grounding:
        safe: list[str] = []
        mentioned: list[int] = []
        removed: list[RemovedSpan] = []
        seen = Kept()
        start = 0
        for end in sentence_ends(text, final=True):
            kept, named, problem = self.check(text[start:end], start, seen)
            safe.append(kept)
            mentioned.extend(i for i in named if i not in mentioned)
            if problem:
                removed.append(problem)
            start = end
        return Grounding("".join(safe), mentioned, removed)


_SPACE_THEN_TEXT = re.compile(r"\s\S")
_LIST_LINE = re.compile(r"^(?P<indent>\s*)(?P<number>\d{1,2})(?=[.)]\s)")


class Kept(set):
    """The sentences kept so far (their folded words, to drop repeats), and the last list number shown."""

    list_number = 0
_ID_ECHO = re.compile(r"[ \t]*(?:\[\s*(?:id|#)?\s*:?\s*\d+\s*\]|\(\s*(?:id|#)\s*:?\s*\d+\s*\))", re.I)


def ground(text: str, shortlist: Iterable[Any], catalog: TitleIndex | Iterable[Any],
           vocabulary: Iterable[str] = (), context: Iterable[int] = ()) -> Grounding:
    """Check generated `text` against the `shortlist` (items or Recommendations) and the
    `catalog` (a TitleIndex, or items). `vocabulary`: words that are not titles (genres, the
    request). `context`: ids of items the prompt showed that may be named without being
    recommended. Returns Grounding(safe_text, mentioned, removed), which unpacks as a tuple."""
    return Grounder(shortlist, catalog, vocabulary, context).ground(text)


class SentenceGate:
    """Releases generated text sentence by sentence, each one checked before it goes out:
    feed() tokens as they come, and it returns what may be shown now; close() flushes the
    last sentence. The released text always equals `ground(everything fed).safe_text`."""

    def __init__(self, grounder: Grounder) -> None:
        self.grounder = grounder
        self.raw = ""
        self._start = 0  # where the unreleased sentence begins in raw
        self.mentioned: list[int] = []
        self.removed: list[RemovedSpan] = []
        self.released = ""
        self.unfinished = ""  # a last sentence dropped by close(cut_off=True)
        self.repeated = False  # the text began to repeat itself: the caller may stop generating
        self._seen = Kept()

    def feed(self, piece: str) -> str:
        self.raw += piece
        # A sentence can only end where whitespace meets the next visible character.
        if not _SPACE_THEN_TEXT.search(self.raw, max(self._start, len(self.raw) - len(piece) - 1)):
            return ""
        return self._release(final=False)

    def close(self, cut_off: bool = False) -> str:
        """Release the last sentence. With cut_off (generation stopped at its token limit), a
        last sentence without closing punctuation is dropped rather than shown unfinished."""
        if cut_off and not re.search(r"[.!?…][)\]\"'’”*_]*\s*$", self.raw[self._start :]):
            self.unfinished = self.raw[self._start :]
            self._start = len(self.raw)
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        out = []
        while True:
            end = _next_end(self.raw, self._start)
            if end is None and final and self._start < len(self.raw):
                end = len(self.raw)
            if end is None:
                break
            kept, named, problem = self.grounder.check(self.raw[self._start : end], self._start, self._seen)
            out.append(kept)
            self.mentioned.extend(i for i in named if i not in self.mentioned)
            if problem:
                self.removed.append(problem)
                self.repeated = self.repeated or problem.reason == "repeated"
            self._start = end
        text = "".join(out)
        self.released += text
        return text

    @property
    def result(self) -> Grounding:
        return Grounding(self.released, list(self.mentioned), list(self.removed))
