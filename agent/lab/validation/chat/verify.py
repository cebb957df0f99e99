"""An independent check of what the chat said: each checkable statement of an answer is found in its text
and verified against the person's data, read afresh through the store and the facade.

Nothing here calls agent.core.llm.claims or grounding: a verifier built on the checks it verifies would pass
whatever they miss. Titles are matched with a normaliser of its own, and every figure is recomputed.

Statements checked (one claim each):
- a catalog title named in the reply: a catalog item, and on the items shown, liked now, or (for "why") the
  item asked about;
- "Title (1995)": a catalog title, of that year; a capitalised title with a year the catalog lacks fails;
- a genre word in a sentence that names titles: a genre of one of them, or one the request asked about;
- "you liked / loved / enjoyed / rated / watched X", "X, which you liked": true in the history now;
- a trait's name with a figure: the reading's value; a pole's words: the pole the person leans to (or
  "nearer “lean” than “other”"); a hidden trait: never named;
- each item's reason that names a liked item: liked now, and not the item itself;
- an off-topic request: no items;
- "why X": the judgement, the rank among the unjudged items and their count, recomputed from the scores;
- "what do you know about me?": the counts of likes, dislikes and judged items, the liked genres' counts,
  the hidden traits' count.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.core.ranker.feedback import DISLIKED_STARS, LIKED_STARS

if TYPE_CHECKING:
    from agent.core.api import Agent

_ARTICLES = {"the", "a", "an"}
_STOP = {"i", "it", "you", "a", "an", "the", "this", "that", "and", "or", "if", "so", "for", "in", "on", "of", "to",
         "my", "your", "here", "there", "try", "also", "both", "as", "at", "but", "no", "yes", "one", "two", "me"}
GENRE_FORMS = {
    "Action": ["action"], "Adventure": ["adventure", "adventures"], "Animation": ["animation", "animated"],
    "Children's": ["children s", "childrens"], "Comedy": ["comedy", "comedies"], "Crime": ["crime"],
    "Documentary": ["documentary", "documentaries"], "Drama": ["drama", "dramas"], "Fantasy": ["fantasy"],
    "Film-Noir": ["film noir", "noir"], "Horror": ["horror"], "Musical": ["musical", "musicals"],
    "Mystery": ["mystery", "mysteries"], "Romance": ["romance", "romances", "romantic"],
    "Sci-Fi": ["sci fi", "science fiction"], "Thriller": ["thriller", "thrillers"], "War": ["war"],
    "Western": ["western", "westerns"],
}
_YEAR_AFTER = re.compile(r"[!?.…]?\s*\((\d{4})\)")
_HISTORY = re.compile(r"\byou(?: have| ve| had| d)?(?: (?:already|also|really|previously|once|just|recently|"
                      r"clearly|obviously))? (liked|loved|enjoyed|adored|rated|watched|saw|seen|disliked|hated)\b")
_REVERSED = re.compile(r"\b(?:which|that) you(?: have| ve)? (liked|loved|enjoyed|rated|watched|disliked)\b")
_LIKE_VERBS = {"liked", "loved", "enjoyed", "adored"}
_DISLIKE_VERBS = {"disliked", "hated"}
_NUMBER = re.compile(r"(?<![\d.])[01]?\.\d+")


def norm(text: str) -> str:
    """Lower case, no accents, apostrophes or punctuation, no leading article: "The Usual Suspects" ->
    "usual suspects"."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"[’'`´]", "", text).replace("&", " and ")
    words = re.sub(r"[^0-9a-z]+", " ", text).split()
    if len(words) > 1 and words[0] in _ARTICLES:
        words = words[1:]
    return " ".join(words)


@dataclass(frozen=True)
class Entry:
    id: int
    title: str
    year: int | None
    genres: frozenset[str]


@dataclass
class Catalog:
    entries: dict[int, Entry]
    by_title: dict[str, set[int]]
    longest: int

    @classmethod
    def read(cls, agent: "Agent") -> "Catalog":
        entries, by_title = {}, {}
        for item_id, title, meta in agent.store.item_labels():
            shown = str(meta.get("display_title") or title)
            entries[item_id] = Entry(item_id, shown, meta.get("year"), frozenset(meta.get("genres") or []))
            for name in {title, shown}:
                key = norm(name)
                if key:
                    by_title.setdefault(key, set()).add(item_id)
        return cls(entries, by_title, max(len(k.split()) for k in by_title) + 1)


@dataclass
class Person:
    """The person's state as the verifier reads it: judgements recomputed from the raw feedback rows."""

    catalog: Catalog
    judgements: dict[int, bool | None]
    opened: set[int]
    readings: list[Any]  # TraitReading-like: name, value, low, high, hidden, pinned
    agent: "Agent | None" = None

    @classmethod
    def read(cls, agent: "Agent", catalog: Catalog) -> "Person":
        latest: dict[int, bool | None] = {}
        touched: set[int] = set()
        for event in sorted(agent.store.interactions(), key=lambda e: (e.at, e.id)):
            touched.add(event.item_id)
            if event.kind == "like" or (event.kind == "rating" and (event.value or 0) >= LIKED_STARS):
                latest[event.item_id] = True
            elif event.kind == "dislike" or (event.kind == "rating" and (event.value or 5) <= DISLIKED_STARS):
                latest[event.item_id] = False
            elif event.kind == "rating":
                latest[event.item_id] = None
        return cls(catalog, latest, touched - set(latest), agent.traits.readings(), agent)

    @property
    def liked(self) -> set[int]:
        return {i for i, v in self.judgements.items() if v is True}

    def liked_in_order(self) -> list[int]:
        return [i for i, v in self.judgements.items() if v is True]


@dataclass(frozen=True)
class Said:
    """What the person was told, from an `Answer` or from `ownrec ask --json`."""

    request: str
    kind: str
    reply: str
    items: list[dict[str, Any]]  # id, title, year, reason
    asked_genres: tuple[str, ...] = ()

    @classmethod
    def of(cls, answer: Any) -> "Said":
        data = answer if isinstance(answer, dict) else answer.as_dict()
        filters = data.get("filters") or {}
        return cls(data["request"], data["stats"].get("kind", "recommend"), data["reply"],
                   [{"id": i["id"], "title": i["title"], "year": i.get("year"), "reason": i.get("reason", "")}
                    for i in data["items"]],
                   tuple([*filters.get("genres", []), *filters.get("exclude_genres", [])]))


@dataclass
class Verdict:
    checked: int = 0
    verified: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    by_check: Counter = field(default_factory=Counter)

    def check(self, ok: bool, what: str, text: str, why: str = "") -> bool:
        self.checked += 1
        self.by_check[what] += 1
        if ok:
            self.verified += 1
        else:
            self.failures.append({"check": what, "text": text, "why": why})
        return ok

    def add(self, other: "Verdict") -> None:
        self.checked += other.checked
        self.verified += other.verified
        self.failures += other.failures
        self.by_check.update(other.by_check)


# -- finding titles in text ------------------------------------------------------------------------


@dataclass(frozen=True)
class Mention:
    start: int  # character offsets in the text
    end: int
    key: str
    ids: frozenset[int]


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in re.finditer(r"[0-9A-Za-zÀ-ÿ][0-9A-Za-zÀ-ÿ'’]*", text)]


def mentions(text: str, catalog: Catalog, extra_words: Iterable[str] = ()) -> list[Mention]:
    """Catalog titles written as titles: starting with a capital (a single word also not opening a sentence,
    unless a year follows it), longest first."""
    words = _words(text)
    skip = {norm(w) for w in extra_words} | {form for forms in GENRE_FORMS.values() for form in forms}
    taken = [False] * len(words)
    found = []
    for size in range(min(catalog.longest, len(words)), 0, -1):
        for first in range(len(words) - size + 1):
            if any(taken[first: first + size]):
                continue
            head, start, _ = words[first]
            end = words[first + size - 1][2]
            key = norm(text[start:end])
            ids = catalog.by_title.get(key)
            if not ids or not (head[0].isupper() or head[0].isdigit()):
                continue
            if size == 1 or len(key.split()) == 1:
                year_follows = _YEAR_AFTER.match(text, end) is not None
                opening = start == 0 or re.search(r"(?:^|[.!?:\n]\s*|[-–—]\s)$", text[:start]) is not None
                if not year_follows and (opening or key in _STOP or key in skip or len(key) < 3):
                    continue
                if key in _STOP:
                    continue
            found.append(Mention(start, end, key, frozenset(ids)))
            taken[first: first + size] = [True] * size
    return sorted(found, key=lambda m: m.start)


def _in_example(text: str, mention: Mention) -> bool:
    """Whether a title stands inside a quoted example of a request (“why Heat?”): a quote that is more than
    the title itself names no title."""
    for quote in re.finditer(r"“([^”]*)”|\"([^\"]*)\"", text):
        if quote.start() < mention.start < quote.end():
            inner = re.sub(r"\(\d{4}\)", "", quote.group(1) or quote.group(2) or "")
            return norm(inner) != mention.key
    return False


def sentences(text: str) -> list[tuple[int, str]]:
    out, start = [], 0
    for m in re.finditer(r"(?<=[.!?])\s+(?=[A-Z0-9“\"(])|\n+", text):
        out.append((start, text[start:m.start()]))
        start = m.end()
    out.append((start, text[start:]))
    return [(s, t) for s, t in out if t.strip()]


# -- the checks ------------------------------------------------------------------------------------


class Verifier:
    def __init__(self, person: Person) -> None:
        self.person = person
        self.catalog = person.catalog
        self.trait_words = [w for r in person.readings for w in (r.name, *r.low.replace(",", " ").split(),
                                                                 *r.high.replace(",", " ").split())]

    def verify(self, said: Said, expected_kind: str | None = None, previous: Said | None = None) -> Verdict:
        verdict = Verdict()
        if expected_kind is not None:
            pass  # the right source is counted by the caller; the checks below are about truth
        if expected_kind == "off_topic" or said.kind == "off_topic":
            verdict.check(not said.items, "off-topic request got no items", said.request,
                          f"{len(said.items)} items shown")
        for item in said.items:
            self.check_reason(item, verdict)
        found = mentions(said.reply, self.catalog, self.trait_words)
        self._titles(said, found, previous, verdict)
        self._years(said.reply, found, verdict)
        self._genres(said, found, verdict)
        if said.kind == "recommend":
            self._bare_years(said, found, verdict)
        self._history(said.reply, found, verdict)
        self._traits(said.reply, found, verdict)
        if said.kind == "why":
            self._why(said, previous, verdict)
        if said.kind == "about_me":
            self._about_me(said.reply, verdict)
        return verdict

    def _liked_title(self, key: str) -> bool:
        return bool(self.catalog.by_title.get(key, set()) & self.person.liked)

    def check_reason(self, item: dict[str, Any], verdict: Verdict) -> None:
        reason = item.get("reason") or ""
        named = [m.group(1) for m in re.finditer(r"because you liked (.+?)$", reason)]
        named += [m.group(1) for m in re.finditer(r"close to (.+?), which you liked", reason)]
        for title in named:
            key = norm(title)
            ids = self.catalog.by_title.get(key, set())
            text = f"{item['title']}: {reason}"
            if verdict.check(bool(ids & self.person.liked), "reason names a liked item", text,
                             f"{title!r} is not liked now"):
                verdict.check(item["id"] not in ids and key != norm(item["title"]),
                              "reason does not name the item itself", text, "names the item itself")

    def _titles(self, said: Said, found: list[Mention], previous: Said | None, verdict: Verdict) -> None:
        allowed = {int(i["id"]) for i in said.items} | self.person.liked
        if said.kind == "why":  # the item asked about, the earlier answer's items, and guesses offered
            allowed |= {int(i["id"]) for i in (previous.items if previous else [])}
            asked = f" {norm(said.request)} "
            allowed |= {i for key, ids in self.catalog.by_title.items() if f" {key} " in asked for i in ids}
        if said.kind == "about_me":
            allowed = self.person.liked
        for m in found:
            if _in_example(said.reply, m):
                continue
            verdict.check(bool(m.ids & allowed), "title named is shown or liked", said.reply[m.start:m.end],
                          "a catalog title neither shown nor liked")

    def _years(self, reply: str, found: list[Mention], verdict: Verdict) -> None:
        for year in re.finditer(r"\((1[89]\d\d|20\d\d)\)", reply):
            before = reply[:year.start()].rstrip()
            # The title right before it, give or take its own punctuation ("That Thing You Do! (1996)").
            mention = next((m for m in reversed(found) if m.end <= year.start()
                            and re.fullmatch(r"[\s!?.,:…]*", reply[m.end:year.start()])), None)
            context = reply[max(0, year.start() - 60): year.end()]
            if mention is None:
                head = re.search(r"((?:[A-Z0-9][\w'’:&.-]*[\s,]+(?:(?:of|the|and|a|an|in|on|to|for|with|from)\s+)*)"
                                 r"{0,8}[A-Z0-9][\w'’:&.-]*)$", before)
                verdict.check(False, "a titled year names a catalog item", context,
                              f"{head.group(1) if head else before[-30:]!r} is not a catalog title")
                continue
            years = {self.catalog.entries[i].year for i in mention.ids}
            verdict.check(int(year.group(1)) in years, "year is the title's year", context,
                          f"the catalog says {sorted(y for y in years if y)}")

    def _bare_years(self, said: Said, found: list[Mention], verdict: Verdict) -> None:
        """A year said outside a title's parentheses: the year of a title in its sentence, else of a shown item,
        or one the request asked for (a year, or within a decade: "the 80s", "the 1950s")."""
        asked = {int(y) for y in re.findall(r"\b(1[89]\d\d|20\d\d)\b", said.request)}
        for decade in re.findall(r"\b(?:19)?([1-9]0)s\b", said.request):
            asked |= set(range(1900 + int(decade), 1910 + int(decade)))
        shown = {self.catalog.entries[int(i["id"])].year for i in said.items if int(i["id"]) in self.catalog.entries}
        for start, sentence in sentences(said.reply):
            inside = [m for m in found if start <= m.start < start + len(sentence)]
            years = {self.catalog.entries[i].year for m in inside for i in m.ids} if inside else shown
            bare = re.sub(r"\(\s*\d{4}\s*\)", " ", sentence)
            for year in re.finditer(r"(?<![\d'’])(1[89]\d\d|20\d\d)(?![\ds])", bare):
                verdict.check(int(year.group(1)) in years | asked, "a year said is the item's", sentence.strip(),
                              f"{year.group(1)} is no year of {'the titles named' if inside else 'the items shown'}")

    def _genres(self, said: Said, found: list[Mention], verdict: Verdict) -> None:
        asked = set(said.asked_genres)
        for start, sentence in sentences(said.reply):
            inside = [m for m in found if start <= m.start < start + len(sentence)]
            if not inside:
                continue
            text = sentence
            for m in sorted(inside, key=lambda m: -m.start):  # the titles' own words are no genre claims
                text = text[: m.start - start] + " " + text[m.end - start:]
            text = re.sub(r"“[^”]*”|\"[^\"]*\"", " ", text)  # a quoted request is the person's words
            folded = f" {norm(text)} "
            genres = set().union(*(self.catalog.entries[i].genres for m in inside for i in m.ids))
            for genre, forms in GENRE_FORMS.items():
                if any(f" {form} " in folded for form in forms):
                    verdict.check(genre in genres or genre in asked, "genre is the titles' genre", sentence.strip(),
                                  f"{genre} is not a genre of {', '.join(sorted({self.catalog.entries[i].title for m in inside for i in m.ids}))}")

    def _history(self, reply: str, found: list[Mention], verdict: Verdict) -> None:
        lowered = reply.lower().replace("’", "'").replace("'", " ")
        judged = set(self.person.judgements)
        for claim in [*_HISTORY.finditer(lowered), *_REVERSED.finditer(lowered)]:
            verb = claim.group(1)
            reversed_ = claim.re is _REVERSED
            if not reversed_ and re.search(r"\b(?:which|that) $", lowered[:claim.start()]):
                continue  # "X, which you liked" is the reversed form's, about X
            if reversed_:  # the title right before it, give or take punctuation ("When Harry Met Sally..., which")
                target = next((m for m in reversed(found) if m.end <= claim.start()
                               and re.fullmatch(r"[\s.,;:…!]*", reply[m.end:claim.start()])), None)
            else:
                after = [m for m in found if claim.end() <= m.start <= claim.end() + 30]
                target = after[0] if after else None
            ok_ids = self.person.liked if verb in _LIKE_VERBS else (
                {i for i, v in self.person.judgements.items() if v is False} if verb in _DISLIKE_VERBS
                else judged | self.person.opened)
            context = reply[max(0, claim.start() - 50): claim.end() + 50]
            if target is not None:
                verdict.check(bool(target.ids & ok_ids), "history claim is true", context,
                              f"says you {verb} {reply[target.start:target.end]}")
                continue
            tail = f" {norm(lowered[claim.end(): claim.end() + 40])} "
            genres = [g for g, forms in GENRE_FORMS.items() if any(f" {f} " in tail for f in forms)]
            liked_genres = set().union(*(self.catalog.entries[i].genres for i in self.person.liked
                                         if i in self.catalog.entries)) if self.person.liked else set()
            if verb in _LIKE_VERBS and genres:
                verdict.check(all(g in liked_genres for g in genres), "history claim is true", context,
                              f"says you {verb} {', '.join(genres)}")
            else:
                verdict.check(False, "history claim is true", context, "a history claim it cannot check")

    def _traits(self, reply: str, found: list[Mention], verdict: Verdict) -> None:
        text = reply
        for m in sorted(found, key=lambda m: -m.start):
            text = text[: m.start] + " " * (m.end - m.start) + text[m.end:]
        lowered = text.lower()
        folded = f" {norm(text)} "
        for r in self.person.readings:
            phrases = [norm(r.low), norm(r.high)]
            if r.hidden:
                named = re.search(rf"\b{re.escape(r.name.lower())}\b", lowered) or any(f" {p} " in folded
                                                                                     for p in phrases)
                verdict.check(not named, "hidden trait not mentioned", reply[:200], f"mentions hidden {r.name}")
                continue
            for at in re.finditer(rf"\b{re.escape(r.name.lower())}\b", lowered):
                figures = [float(x) for x in _NUMBER.findall(lowered[at.end(): at.end() + 24])]
                if figures:
                    verdict.check(abs(figures[0] - r.value) <= 0.0051, "trait figure is the reading",
                                  reply[at.start(): at.end() + 24], f"{r.name} reads {r.value:.3f}")
            lean, other = (phrases[1], phrases[0]) if r.value >= 0.5 else (phrases[0], phrases[1])
            for sentence in re.split(r"(?<=[.!?])\s+", text):
                s = f" {norm(sentence)} "
                if f" {other} " in s:
                    ok = f" {lean} " in s and s.index(f" {lean} ") < s.index(f" {other} ") and " than " in s
                    verdict.check(ok, "trait pole is the one leaned to", sentence.strip(),
                                  f"{r.name} reads {r.value:.2f}: the person leans to {lean!r}")
                elif f" {lean} " in s:
                    verdict.check(True, "trait pole is the one leaned to", sentence.strip())

    def _standing_rank(self, item_id: int) -> tuple[int, int] | None:
        agent = self.person.agent
        if agent is None:
            return None
        scores = agent.scores()
        catalog = agent.catalog()
        texts: dict[int, str] = {}
        judged = set(self.person.judgements)
        for item in agent.store.items(list(catalog.ids)):
            texts[item.id] = item.text_hash
        judged_texts = {texts[i] for i in judged if i in texts}
        keep = [row for row, item in enumerate(catalog.ids) if int(item) not in judged
                and texts.get(int(item)) not in judged_texts]
        row = catalog.row(item_id)
        if row is None:
            return None
        return sum(1 for r in keep if scores[r] > scores[row]) + 1, len(keep)

    def _why(self, said: Said, previous: Said | None, verdict: Verdict) -> None:
        reply = said.reply
        for m in re.finditer(r"You (liked|disliked|rated in the middle) (.+?)(?: \((\d{4})\))?, so your feed", reply):
            ids = self.catalog.by_title.get(norm(m.group(2)), set())
            want = {"liked": True, "disliked": False, "rated in the middle": None}[m.group(1)]
            verdict.check(any(i in self.person.judgements and self.person.judgements[i] is want for i in ids),
                          "why: the judgement stated is the history's", m.group(), "not the latest judgement")
        for m in re.finditer(r"places (.+?)(?: \((\d{4})\))? (\d[\d,]*)(?:st|nd|rd|th) of the (\d[\d,]*) items", reply):
            item_id = said.items[0]["id"] if said.items else None
            figures = self._standing_rank(int(item_id)) if item_id is not None else None
            stated = (int(m.group(3).replace(",", "")), int(m.group(4).replace(",", "")))
            verdict.check(figures == stated, "why: rank and count recomputed", m.group(),
                          f"recomputed {figures}")
        for m in re.finditer(r"I listed (.+?)(?: \(\d{4}\))? because of this: (.+)\.(?:\s|$)", reply):
            listed = [i for i in (previous.items if previous else []) if norm(i["title"]) == norm(m.group(1))]
            verdict.check(any(m.group(2).startswith(i["reason"]) for i in listed), "why: the reason is the one listed",
                          m.group(), "not the reason the earlier answer gave")
        for m in re.finditer(r"Your catalog has (\d+) items with that title", reply):
            subject = said.items[0]["title"] if said.items else None
            count = len(self.catalog.by_title.get(norm(subject), ())) if subject else None
            verdict.check(count == int(m.group(1)), "why: items with that title counted", m.group(), f"{count}")
        for m in re.finditer(r"I cannot find “(.+?)” in your catalog", reply):
            verdict.check(norm(m.group(1)) not in self.catalog.by_title, "why: a missing title is missing", m.group())
        for m in re.finditer(r"Its main reason: (.+?)\.(?:\s|$)", reply):
            self.check_reason({"id": said.items[0]["id"] if said.items else -1, "title": said.items[0]["title"]
                          if said.items else "", "reason": m.group(1)}, verdict)

    def _about_me(self, reply: str, verdict: Verdict) -> None:
        p = self.person
        m = re.search(r"(\d[\d,]*) liked, (\d[\d,]*) disliked, (\d[\d,]*) items judged", reply)
        if m:
            stated = tuple(int(g.replace(",", "")) for g in m.groups())
            real = (len(p.liked), sum(1 for v in p.judgements.values() if v is False), len(p.judgements))
            verdict.check(stated == real, "about me: feedback counts", m.group(), f"the history says {real}")
        m = re.search(r"most often first: (.+?)\.(?:\s|$)", reply)
        if m:
            counts = Counter(g for i in p.liked if i in p.catalog.entries for g in p.catalog.entries[i].genres)
            for g in re.finditer(r"([\w'’ -]+?) \((\d+)\)", m.group(1)):
                verdict.check(counts.get(g.group(1).strip(", ")) == int(g.group(2)), "about me: liked genre counts",
                              g.group(), f"the likes have {counts.get(g.group(1).strip(', '))}")
        m = re.search(r"You hid (\d+) trait", reply)
        hidden = sum(1 for r in p.readings if r.hidden)
        if m or hidden:
            verdict.check(bool(m) and int(m.group(1)) == hidden, "about me: hidden traits counted",
                          m.group() if m else reply[-120:], f"{hidden} hidden")


def verify_feed(agent: "Agent", person: Person, size: int = 20) -> Verdict:
    """The feed's reasons: each liked item one names is liked now and is not the item itself."""
    verdict = Verdict()
    checker = Verifier(person)
    for r in agent.recommend(size):
        checker.check_reason({"id": r.item.id, "title": r.item.display_title, "reason": r.reason}, verdict)
    return verdict
