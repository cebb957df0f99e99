"""Understanding a request: filters (genres, a year range, mood words) read from its text.

Two readers, both checked against the catalog:
- `keyword_filters`: deterministic; the catalog's own genre names (and a few common synonyms:
  "funny" -> Comedy, "scary" -> Horror), decades ("80s", "the 1990s"), "before 1970",
  "after 1995", "between 1930 and 1949", and simple negation ("nothing scary", "no horror").
- `model_filters`: the LLM fills a JSON schema (llama.cpp's grammar keeps it valid JSON, the
  genres within the catalog's vocabulary); then every field is validated and dropped if it
  fails: years must lie in the catalog's range and the request must mention a time at all; a
  genre must be asked for in the request (its name, a synonym, or a word of it); mood words must
  be words of the request. Measured on sample requests (see `measure.py`), the 135M model's
  raw genres and years are mostly guesses; what survives validation rarely adds to the
  keyword reading, which is why "keywords" is the default (`llm.understand`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_GENRES = 40  # the vocabulary offered to the model (its grammar grows with it)

# Extra words that ask for a genre, by the genre's folded name. Only for names a catalog uses;
# a genre is always also found by its own name.
GENRE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "comedy": ("comedies", "funny", "hilarious", "laugh", "laughs", "humor", "humour", "comic", "romcom", "rom com"),
    "horror": ("scary", "frightening", "terrifying", "spooky", "creepy", "gory", "gore", "gruesome"),
    "romance": ("romantic", "love story", "romcom", "rom com", "sentimental", "sappy", "mushy", "soppy", "schmaltzy"),
    "thriller": ("thrillers", "suspense", "suspenseful"),
    "crime": ("gangster", "gangsters", "heist", "mafia", "mob"),
    "mystery": ("mysteries", "whodunit", "whodunnit", "detective"),
    "documentary": ("documentaries", "docs", "nonfiction", "non fiction"),
    "musical": ("musicals", "sing", "singing", "sing along"),
    "war": ("wartime", "military", "wwii", "ww2", "world war"),
    "western": ("westerns", "cowboy", "cowboys", "wild west"),
    "film noir": ("noir",),
    "fantasy": ("magic", "magical", "wizard", "wizards", "dragons", "fairy tale"),
    "adventure": ("adventures", "adventurous", "quest", "epic journey"),
    "action": ("action packed", "explosions", "shootout", "shootouts", "fights", "martial arts"),
    "drama": ("dramas", "dramatic"),
    "animation": ("animated", "cartoon", "cartoons", "anime"),
    "childrens": ("kids", "kid", "children", "family", "families"),
    "sci fi": ("science fiction", "scifi", "sf", "space", "futuristic"),
    "science fiction": ("sci fi", "scifi", "sf"),
}
NEGATIONS = {"no", "not", "nothing", "without", "avoid", "except", "dont", "never", "nor", "hate", "less", "fewer"}
LENGTH_FIELDS = ("runtime", "minutes", "pages", "length", "duration")
NEGATION_REACH = 3  # words between a negation and the genre word it negates
TIME_WORDS = {"old", "older", "new", "newer", "recent", "classic", "classics", "modern", "century", "decade",
              "decades", "vintage", "era", "before", "after", "since", "until"}
DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                "seventies": 1970, "eighties": 1980, "nineties": 1990}
STOPWORDS = set("""a an the and or but of for to in on at by with from about as is are was were be been it its this
that these those i me my we our you your he she they them their what which who whom some any something anything
movie movies film films book books show shows item items want like would please tonight today watch read see
good great nice really very too more most less just also me mine one ones kind sort""".split())


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return re.sub(r"[’'`´]", "", text)


def words_of(text: str) -> list[str]:
    return re.sub(r"[^0-9a-z]+", " ", fold(text)).split()


@dataclass(frozen=True)
class Filters:
    genres: tuple[str, ...] = ()  # catalog genre names, as the catalog spells them
    exclude_genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    mood: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict, compare=False)  # field -> "keywords" | "model"

    def __bool__(self) -> bool:
        return bool(self.genres or self.exclude_genres or self.year_min is not None or self.year_max is not None)

    def as_dict(self) -> dict[str, Any]:
        return {"genres": list(self.genres), "exclude_genres": list(self.exclude_genres),
                "year_min": self.year_min, "year_max": self.year_max, "mood": list(self.mood),
                "sources": dict(self.sources)}

    def describe(self) -> str:
        parts = []
        if self.genres:
            parts.append(" or ".join(self.genres))
        if self.exclude_genres:
            parts.append("no " + ", ".join(self.exclude_genres))
        if self.year_min is not None and self.year_max is not None:
            parts.append(str(self.year_min) if self.year_min == self.year_max else f"{self.year_min}–{self.year_max}")
        elif self.year_min is not None:
            parts.append(f"from {self.year_min}")
        elif self.year_max is not None:
            parts.append(f"up to {self.year_max}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Vocabulary:
    """What the catalog offers to filter on: its genres (most frequent first) and year range."""

    genres: tuple[str, ...]
    year_min: int | None
    year_max: int | None
    year_middle: int | None = None  # the median item's year: what "older" means with nothing shown yet
    lengths: bool = False  # whether any item says how long it is (a running time, a page count)

    @classmethod
    def from_store(cls, store) -> "Vocabulary":
        counts: Counter[str] = Counter()
        years = []
        lengths = False
        for _, _, data in store.item_labels():
            lengths = lengths or any(key in data for key in LENGTH_FIELDS)
            genres = data.get("genres") or []
            if isinstance(genres, str):
                genres = [genres]
            counts.update(str(g) for g in genres if str(g).strip())
            year = data.get("year")
            if isinstance(year, int) or (isinstance(year, str) and year.isdigit()):
                years.append(int(year))
        return cls(tuple(g for g, _ in counts.most_common(MAX_GENRES)),
                   min(years) if years else None, max(years) if years else None,
                   sorted(years)[len(years) // 2] if years else None, lengths)

    def genre_phrases(self) -> dict[str, list[tuple[str, ...]]]:
        """Each genre -> the word sequences that ask for it."""
        phrases: dict[str, list[tuple[str, ...]]] = {}
        for genre in self.genres:
            key = " ".join(words_of(genre))
            options = {key, *GENRE_SYNONYMS.get(key, ())}
            if not key.endswith("s"):
                options.add(key + "s")
            phrases[genre] = [tuple(o.split()) for o in options if o.strip()]
        return phrases


# -- the keyword reader -------------------------------------------------------------------------


def _find(sequence: list[str], phrase: tuple[str, ...]) -> list[int]:
    n = len(phrase)
    return [i for i in range(len(sequence) - n + 1) if tuple(sequence[i : i + n]) == phrase]


def _without_titles(text: str, vocabulary: Vocabulary) -> str:
    """The request with runs of two or more capitalised words blanked out unless they are all
    genre words: "something like Star Wars" does not ask for War films; "a Film Noir" does."""
    genre_words = {w for g in vocabulary.genres for w in words_of(g)} | {
        w for g in vocabulary.genres for s in GENRE_SYNONYMS.get(" ".join(words_of(g)), ()) for w in s.split()}
    tokens = list(re.finditer(r"[^\W\d_][\w'’]*", text))
    keep = list(text)
    run: list[re.Match] = []
    for token in tokens + [None]:
        if token is not None and token.group()[0].isupper() and (
                not run or not text[run[-1].end() : token.start()].strip(" -:")):
            run.append(token)
            continue
        if len(run) >= 2 and not all(w in genre_words or w in STOPWORDS for r in run for w in words_of(r.group())):
            for r in run:
                keep[r.start() : r.end()] = " " * (r.end() - r.start())
        run = [token] if token is not None and token.group()[0].isupper() else []
    return "".join(keep)


def keyword_genres(text: str, vocabulary: Vocabulary) -> tuple[list[str], list[str]]:
    """(genres asked for, genres asked against), in the catalog's spelling."""
    words = words_of(_without_titles(text, vocabulary))
    wanted: list[str] = []
    unwanted: list[str] = []
    for genre, phrases in vocabulary.genre_phrases().items():
        for phrase in phrases:
            for at in _find(words, phrase):
                negated = any(w in NEGATIONS for w in words[max(0, at - NEGATION_REACH) : at])
                target = unwanted if negated else wanted
                if genre not in target:
                    target.append(genre)
    wanted = [g for g in wanted if g not in unwanted]
    return wanted, unwanted


_YEAR = r"(1[89]\d\d|20\d\d)"
_DECADE = r"(?:(1[89]|20)?(\d)0)['’]?s"


def _decade(century: str | None, digit: str) -> int:
    if century:
        return int(century) * 100 + int(digit) * 10
    return (2000 if digit in "01" else 1900) + int(digit) * 10


def keyword_years(text: str) -> tuple[int | None, int | None]:
    t = fold(text)
    match = re.search(rf"\b(?:between|from)\s+{_YEAR}\s+(?:and|to|until|-)\s+{_YEAR}\b", t) or \
        re.search(rf"\b{_YEAR}\s*(?:-|–|to)\s*{_YEAR}\b", t)
    if match:
        low, high = sorted((int(match.group(1)), int(match.group(2))))
        return low, high
    decades = [(_decade(m.group(1), m.group(2)), m.start()) for m in re.finditer(rf"\b{_DECADE}\b", t)]
    decades += [(year, m.start()) for word, year in DECADE_WORDS.items() for m in re.finditer(rf"\b{word}\b", t)]
    bound = re.search(rf"\b(before|until|pre|after|since|post)\b[\s-]*(?:the\s+)?(?:{_YEAR}\b|{_DECADE}|(\w+ties)\b)", t)
    if bound:
        word = bound.group(1)
        if bound.group(2):
            year, span = int(bound.group(2)), 0
        elif bound.group(5) in DECADE_WORDS:
            year, span = DECADE_WORDS[bound.group(5)], 10
        elif bound.group(4):
            year, span = _decade(bound.group(3), bound.group(4)), 10
        else:
            year = None
        if year is not None:
            if word in ("before", "pre"):
                return None, year - 1
            if word == "until":
                return None, year + (9 if span else 0)
            if word in ("after", "post"):
                return year + (span or 1), None
            return year, None  # since
    if decades:
        years = sorted(d for d, _ in decades)
        return years[0], years[-1] + 9
    single = re.findall(rf"\b{_YEAR}\b", t)
    if len(single) == 1:
        return int(single[0]), int(single[0])
    return None, None


def keyword_filters(text: str, vocabulary: Vocabulary) -> Filters:
    genres, excluded = keyword_genres(text, vocabulary)
    low, high = keyword_years(text)
    sources = {}
    if genres or excluded:
        sources["genres"] = "keywords"
    if low is not None or high is not None:
        sources["years"] = "keywords"
    return Filters(tuple(genres), tuple(excluded), low, high, (), sources)


# -- the model reader ---------------------------------------------------------------------------

EXTRACTION_PROMPT = (
    "Read a request for films or books and fill in the search filters as JSON. "
    "genres: only genres the request asks for, else []. "
    "year_min and year_max: only if the request names a time (a year or a decade), else null. "
    "mood: up to three adjectives copied from the request, else []."
)


def filter_schema(vocabulary: Vocabulary) -> dict[str, Any]:
    genre_item: dict[str, Any] = {"type": "string", "enum": list(vocabulary.genres)} if vocabulary.genres else {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "genres": {"type": "array", "items": genre_item, "maxItems": 3},
            "year_min": {"type": ["integer", "null"]},
            "year_max": {"type": ["integer", "null"]},
            "mood": {"type": "array", "items": {"type": "string", "maxLength": 24}, "maxItems": 3},
        },
        "required": ["genres", "year_min", "year_max", "mood"],
    }


def extraction_messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": EXTRACTION_PROMPT}, {"role": "user", "content": text}]


def _mentions_time(text: str) -> bool:
    words = set(words_of(text))
    return bool(re.search(r"\d", text)) or bool(words & TIME_WORDS) or bool(words & set(DECADE_WORDS))


def validate_model_filters(raw: Any, text: str, vocabulary: Vocabulary) -> tuple[Filters, dict[str, bool]]:
    """Keep only the fields of a model reading that check out; also say which did."""
    checks = {"genres": False, "years": False, "mood": False}
    if not isinstance(raw, dict):
        return Filters(), checks
    request_words = words_of(text)
    request_set = set(request_words)
    phrases = vocabulary.genre_phrases()
    genres: list[str] = []
    for genre in raw.get("genres") or []:
        if not isinstance(genre, str) or genre not in phrases or genre in genres:
            continue
        asked = any(_find(request_words, p) for p in phrases[genre]) or bool(set(words_of(genre)) & request_set - STOPWORDS)
        if asked:
            genres.append(genre)
    checks["genres"] = bool(genres)

    low, high = raw.get("year_min"), raw.get("year_max")
    low = low if isinstance(low, int) and not isinstance(low, bool) else None
    high = high if isinstance(high, int) and not isinstance(high, bool) else None
    plausible_low = (vocabulary.year_min or 1800) - 1
    plausible_high = (vocabulary.year_max or 2100) + 1
    in_range = all(v is None or plausible_low <= v <= plausible_high for v in (low, high))
    if (low is None and high is None) or not in_range or (low is not None and high is not None and low > high) \
            or not _mentions_time(text):
        low = high = None
    checks["years"] = low is not None or high is not None

    mood: list[str] = []
    genre_words = {w for g in vocabulary.genres for w in words_of(g)}
    for word in raw.get("mood") or []:
        if not isinstance(word, str):
            continue
        folded = " ".join(words_of(word))
        if folded and folded not in mood and all(w in request_set and w not in STOPWORDS and w not in genre_words
                                                 for w in folded.split()):
            mood.append(folded)
    checks["mood"] = bool(mood)
    sources = {}
    if genres:
        sources["genres"] = "model"
    if checks["years"]:
        sources["years"] = "model"
    if mood:
        sources["mood"] = "model"
    return Filters(tuple(genres), (), low, high, tuple(mood[:3]), sources), checks


def model_filters(llm, text: str, vocabulary: Vocabulary) -> tuple[Filters, Any, dict[str, bool]]:
    """(validated filters, the raw model reading, which fields validated)."""
    raw, _ = llm.json_chat(extraction_messages(text), filter_schema(vocabulary))
    filters, checks = validate_model_filters(raw, text, vocabulary)
    return filters, raw, checks


def merge(keywords: Filters, model: Filters) -> Filters:
    """Keyword fields first; the model fills what the keywords left empty."""
    genres = keywords.genres or tuple(g for g in model.genres if g not in keywords.exclude_genres)
    years_from_keywords = keywords.year_min is not None or keywords.year_max is not None
    low, high = (keywords.year_min, keywords.year_max) if years_from_keywords else (model.year_min, model.year_max)
    sources = dict(model.sources) | dict(keywords.sources)
    if not keywords.genres and model.genres:
        sources["genres"] = "model"
    return Filters(genres, keywords.exclude_genres, low, high, model.mood, sources)


def understand(text: str, vocabulary: Vocabulary, llm=None, mode: str = "keywords") -> tuple[Filters, dict[str, Any]]:
    """Filters for a request. mode: "keywords", "model" (validated model fields only) or "both"
    (keywords, with validated model fields where the keywords found nothing)."""
    keywords = keyword_filters(text, vocabulary)
    if mode == "keywords" or llm is None:
        return keywords, {"mode": "keywords"}
    model, raw, checks = model_filters(llm, text, vocabulary)
    detail = {"mode": mode, "model_raw": raw, "model_valid": checks}
    return (model if mode == "model" else merge(keywords, model)), detail


# -- applying filters to the ranker's candidates ------------------------------------------------


def item_genres(item) -> set[str]:
    genres = item.metadata.get("genres") or []
    return {genres} if isinstance(genres, str) else {str(g) for g in genres}


def matches(item, filters: Filters, use_genres: bool = True, use_years: bool = True) -> bool:
    genres = item_genres(item)
    if genres & set(filters.exclude_genres):
        return False
    if use_genres and filters.genres and not genres & set(filters.genres):
        return False
    if use_years and (filters.year_min is not None or filters.year_max is not None):
        year = item.year
        if year is None:
            return False
        if filters.year_min is not None and year < filters.year_min:
            return False
        if filters.year_max is not None and year > filters.year_max:
            return False
    return True


def apply_filters(candidates: Iterable[Any], filters: Filters, size: int) -> tuple[list[Any], list[str]]:
    """The first `size` candidates (Recommendations, in the ranker's order) that pass the
    filters; items with more of the requested genres first. When too few pass, the filters
    are relaxed (genres first, then years; excluded genres never) and the relaxed ones named."""
    candidates = list(candidates)
    wanted = set(filters.genres)

    def order(chosen: list[Any]) -> list[Any]:
        if len(wanted) < 2:
            return chosen
        return sorted(chosen, key=lambda r: -len(item_genres(r.item) & wanted))  # stable: ranker order within

    picked = order([r for r in candidates if matches(r.item, filters)])[:size]
    relaxed: list[str] = []
    for use_genres, use_years, name in ((False, True, "genres"), (False, False, "years")):
        if len(picked) >= size or not filters:
            break
        if name == "genres" and not filters.genres:
            continue
        if name == "years" and filters.year_min is None and filters.year_max is None:
            continue
        relaxed.append(name)
        seen = {r.item.id for r in picked}
        picked += [r for r in candidates if r.item.id not in seen and matches(r.item, filters, use_genres, use_years)][
            : size - len(picked)]
    return picked, relaxed
