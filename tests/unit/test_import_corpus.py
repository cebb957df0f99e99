"""A corpus of files people have and files that attack, each with what importing it must do: the rows it
takes and as what, the lines it reports, or the message it refuses the file with. Built here, never copied
from anyone's export. Plus a property: no bytes, given as any format, raise anything but ImportFailed, and a
refused file writes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.importers import FORMATS, ImportFailed, import_file
from agent.core.store import Store


@dataclass(frozen=True)
class Imported:
    """What a good import must report: rows taken as (label -> count), the lines of its problems, the
    format it was detected as, the scale of its ratings (None: no ratings) and the stars stored."""

    taken_as: dict[str, int]
    problem_lines: tuple[int, ...] = ()
    format: str | None = None
    scale: int | None = None
    stars: tuple[float, ...] | None = None  # the ratings stored, sorted
    problem: str = ""  # a word the first problem's message holds


@dataclass(frozen=True)
class Refused:
    message: str  # a regular expression the ImportFailed message matches


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expect: Imported | Refused
    format: str | None = None
    extra: dict[str, bytes] = field(default_factory=dict)  # other files beside it (an OPML's feeds)


def text(value: str) -> bytes:
    return value.encode("utf-8")


LB = "Date,Name,Year,Letterboxd URI,Rating\n"
IMDB = ("Const,Your Rating,Date Rated,Title,Original Title,URL,Title Type,IMDb Rating,Runtime (mins),Year,Genres,"
        "Num Votes,Release Date,Directors\n")
DEEP = "[" * 100_000 + "]" * 100_000
BOMB = ('<?xml version="1.0"?>\n<!DOCTYPE b [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY a{n} "{("&a" + str(n - 1) + ";") * 10 if n > 1 else "&a;" * 10}">' for n in range(1, 10))
        + ']>\n<rss><channel><item><title>&a9;</title></item></channel></rss>\n')


def trakt(records: list[dict]) -> bytes:
    return text(json.dumps(records, indent=1))


def movie(title: str, year: int, trakt_id: int) -> dict:
    return {"title": title, "year": year, "ids": {"trakt": trakt_id, "slug": title.lower(), "imdb": f"tt{trakt_id:07d}"}}


CORPUS = [
    # -- the formats people have --------------------------------------------------------------------------
    Case("ratings.csv", text(LB + "2024-01-01,Heat,1995,https://boxd.it/a,4.5\n2024-01-02,Alien,1979,https://boxd.it/b,"
                                  "0.5\n"), Imported({"rated": 2}, format="letterboxd", scale=5, stars=(0.5, 4.5))),
    Case("diary.csv", text("Date,Name,Year,Letterboxd URI,Rating,Rewatch,Tags,Watched Date\n"
                           "2024-01-05,Heat,1995,https://boxd.it/d1,,,,2024-01-04\n"),
         Imported({"watched": 1}, format="letterboxd")),
    Case("watchlist.csv", text("Date,Name,Year,Letterboxd URI\n2024-01-01,Alien,1979,https://boxd.it/b\n"),
         Imported({"wanted": 1}, format="letterboxd")),
    Case("cr-only-diary.csv", text(LB.replace("\n", "\r") + "2024-01-01,Heat,1995,https://boxd.it/a,4\r"
                                   "2024-01-02,Alien,1979,https://boxd.it/b,3\r"),
         Imported({"rated": 2}, format="letterboxd", stars=(3.0, 4.0))),
    Case("my-list.csv", text("Letterboxd list export v7\nDate,Name,Tags,URL,Description\n2024-01-01,Best,,"
                             "https://letterboxd.com/u/list/best/,\n\nPosition,Name,Year,URL,Description\n"
                             "1,Heat,1995,https://letterboxd.com/film/heat/,\n2,,1999,https://x/,\n"),
         Imported({"catalog only": 1}, (7,), format="letterboxd", problem="missing Name")),
    Case("goodreads_library_export.csv", text(
        "Book Id,Title,Author,My Rating,Exclusive Shelf,Year Published,Date Read,Date Added\n"
        "1,Jurassic Park,Michael Crichton,5,read,1990,2020/01/01,2019/01/01\n2,Emma,Jane Austen,0,to-read,1815,,"
        "2021/01/01\n3,Dune,Frank Herbert,0,currently-reading,1965,,2021/01/01\n"),
         Imported({"rated": 1, "wanted": 1, "reading": 1}, format="goodreads", scale=5, stars=(5.0,))),
    Case("imdb-ratings-latin1.csv", (IMDB + "tt0211915,8,2023-02-01,Le Fabuleux Destin d'Amélie Poulain,,"
                                     "https://www.imdb.com/title/tt0211915/,movie,8.3,122,2001,\"Comedy, Romance\","
                                     "800000,2001-04-25,Jean-Pierre Jeunet\n").encode("cp1252"),
         Imported({"rated": 1}, format="imdb", scale=10, stars=(4.0,))),
    Case("imdb-ratings.csv", text(IMDB + "tt0903747,10,2023-03-01,Breaking Bad,,u,TV Series,9.5,49,2008,Drama,2,,\n"
                                  "tt0000002,0,2023-03-01,Zero,,u,movie,,,2000,,,,\n"),
         Imported({"rated": 1}, (3,), format="imdb", stars=(5.0,), problem="not a rating")),
    Case("imdb-watchlist.csv", text("Position,Const,Created,Modified,Description,Title,URL,Title Type,IMDb Rating,"
                                    "Runtime (mins),Year,Genres,Num Votes,Release Date,Directors\n"
                                    "1,tt0078748,2024-01-01,2024-01-01,,Alien,u,movie,8.5,117,1979,Horror,9,,\n"),
         Imported({"wanted": 1}, format="imdb")),
    Case("ratings-movies.json", trakt([
        {"rated_at": "2024-01-02T10:00:00.000Z", "rating": 8, "type": "movie", "movie": movie("Heat", 1995, 1)},
        {"rated_at": "2024-01-02T10:00:00.000Z", "rating": 4, "type": "movie", "movie": movie("Alien", 1979, 2)},
        {"rated_at": "2024-01-02T10:00:00.000Z", "rating": 12, "type": "movie", "movie": movie("Odd", 1979, 3)}]),
         Imported({"rated": 2}, (30,), format="trakt", scale=10, stars=(2.0, 4.0), problem="outside 1-10")),
    Case("watchlist-shows.json", trakt([{"rank": 1, "listed_at": "2024-01-01T00:00:00.000Z", "type": "show",
                                         "show": movie("Lost", 2004, 4)}]), Imported({"wanted": 1}, format="trakt")),
    Case("history.json", trakt([{"id": 1, "watched_at": "2024-01-01T00:00:00.000Z", "action": "watch",
                                 "type": "episode", "episode": {"season": 1, "number": 2, "title": "Two",
                                                                "ids": {"trakt": 9}},
                                 "show": movie("Lost", 2004, 4)}]), Imported({"watched": 1}, format="trakt")),
    Case("simkl.json", text(json.dumps({"movies": [
        {"status": "completed", "user_rating": 4, "last_watched_at": "2024-01-01T00:00:00Z", "movie": movie("Heat", 1995, 1)},
        {"status": "plantowatch", "user_rating": None, "movie": movie("Alien", 1979, 2)}],
        "shows": [{"status": "dropped", "show": movie("Lost", 2004, 4)}]}, indent=1)),
         Imported({"rated": 1, "wanted": 1, "dropped": 1}, format="simkl", scale=10, stars=(2.0,))),
    Case("news.xml", text("<?xml version='1.0'?><rss version='2.0'><channel><title>N</title><item><title>A &amp;amp; "
                          "B</title><guid>g</guid><link>https://n/1</link></item><item><title>C</title><guid>g</guid>"
                          "<link>https://n/2</link></item></channel></rss>"), Imported({"catalog only": 2}, format="rss")),
    Case("big5.xml", feed := '<?xml version="1.0" encoding="big5"?><rss version="2.0"><channel><title>新聞</title>'
         '<item><title>標題</title></item></channel></rss>'.encode("big5"), Imported({"catalog only": 1}, format="rss")),
    Case("subs.opml", text('<?xml version="1.0"?>\n<opml version="2.0"><body>\n<outline xmlUrl="big5.xml"/>\n'
                           '<outline xmlUrl="https://example.invalid/rss"/>\n</body></opml>\n'),
         Imported({"catalog only": 1}, (4,), format="opml", problem="web address"), extra={"big5.xml": feed}),
    Case("history.csv", text("title,rating,at\nA,8,2024-01-01\nB,3,2024-01-02\n"),
         Imported({"rated": 2}, format="csv", scale=10, stars=(1.5, 4.0))),
    # -- bad rows: reported at their line, the rest kept ----------------------------------------------------
    Case("dates.csv", text("title,rating,at\nA,4,nan\nB,4,inf\nC,4,1e300\nD,4,garbage\nE,4,2024-01-01\n"),
         Imported({"rated": 1}, (2, 3, 4, 5), problem="bad date")),
    Case("ratings-bad.csv", text("title,rating\nA,nan\nB,inf\nC,-1\nD,1000\nE,4\n"),
         Imported({"rated": 1}, (2, 3, 4, 5), scale=5, stars=(4.0,))),
    Case("quote.csv", text('title,year\nA,2001\n"B,2002\nC,2003\nD,2004\n'),
         Imported({"catalog only": 3}, (3,), problem="never closes")),
    Case("field.csv", text("title,text\nA,short\nB," + "x" * 10_000_000 + "\nC,ok\n"),
         Imported({"catalog only": 2}, (3,), problem="at most")),
    Case("one-bad-byte.csv", b"title,year\nGood,2001\nBad\xe9,2002\nAlso,2003\n",
         Imported({"catalog only": 2}, (3,), problem="the byte 0xe9, which is not UTF-8")),
    Case("nul.csv", text("title,year\nA\x00B,2001\nC,2002\n"), Imported({"catalog only": 2})),
    Case("log.jsonl", text('{"title": "ok"}\n' + DEEP + '\n{"title": "\\ud800"}\n{"title": "n", "x": NaN}\n'
                           '{"title": "i", "at": 1e400, "feedback": "like"}\n'),
         Imported({"catalog only": 1}, (2, 3, 4, 5), problem="nested too deeply")),
    Case("trakt-bad-rows.json", trakt([{"rating": 8, "movie": {"year": 1990}}, {"nothing": 1}, 5,
                                       {"rating": "nan", "movie": movie("X", 1, 1)}]),
         Imported({}, (2, 8, 11, 12))),
    # -- whole files refused, with what is wrong ------------------------------------------------------------
    Case("empty.csv", b"", Refused("empty file")),
    Case("binary.csv", bytes(range(256)) * 40, Refused(r"not UTF-8 text \(line 2, byte 128\); save it as UTF-8")),
    Case("bomb.xml", text(BOMB), Refused("line 2 declares an external or nested XML entity")),
    Case("xxe.xml", text('<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                         "<rss><channel><item><title>&x;</title></item></channel></rss>"),
         Refused("external or nested XML entity")),
    Case("bomb.opml", text(BOMB.replace("<rss><channel><item><title>&a9;</title></item></channel></rss>",
                                        '<opml><body><outline xmlUrl="&a9;"/></body></opml>')),
         Refused("external or nested XML entity")),
    Case("page.xml", text("<html><body>not a feed</body></html>"), Refused(r"root element is <html>")),
    Case("web.opml", text('<opml version="1.0"><body><outline xmlUrl="https://a.invalid/rss"/></body></opml>'),
         Refused("web address and ownrec downloads nothing")),
    Case("truncated.json", text('[{"rating": 8, "movie": {"title": "Heat"'), Refused(r"not readable JSON at line 1")),
    Case("deep.json", text(DEEP), Refused("nested too deeply")),
    Case("number.json", text("42"), Refused("neither a Trakt export")),
]


def _load(case: Case, tmp_path: Path) -> tuple[Store, Path]:
    for name, data in case.extra.items():
        (tmp_path / name).write_bytes(data)
    path = tmp_path / case.name
    path.write_bytes(case.data)
    return Store.memory(), path


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_corpus(case, tmp_path):
    store, path = _load(case, tmp_path)
    if isinstance(case.expect, Refused):
        with pytest.raises(ImportFailed, match=case.expect.message):
            import_file(store, path, case.format)
        assert (store.item_count(), store.interaction_count()) == (0, 0)
        return
    expect = case.expect
    report = import_file(store, path, case.format)
    assert dict(report.taken_as) == expect.taken_as
    assert tuple(problem.line for problem in report.problems) == expect.problem_lines, report.problems
    assert all(problem.path == str(path) for problem in report.problems)
    if expect.problem:
        assert expect.problem in report.problems[0].message
    if expect.format:
        assert report.format == expect.format
    if expect.scale:
        assert report.scale is not None and report.scale.top == expect.scale
    if expect.stars is not None:
        assert tuple(sorted(i.value for i in store.interactions() if i.kind == "rating")) == expect.stars
    assert report.understood and all(line.strip() for line in report.understanding())
    assert store.interaction_count() == report.feedback_added
    # Every stored value is JSON: no NaN or Infinity reaches an export.
    json.dumps(store.export(), allow_nan=False)


def test_matching_stays_within_a_kind(tmp_path):
    """A Goodreads book never lands on a film of the same title; an IMDb film does."""
    store = Store.memory()
    store.upsert_items([__import__("agent.core.store", fromlist=["NewItem"]).NewItem(
        "movielens-100k", "82", "Jurassic Park", "Jurassic Park (1993).", {"year": 1993})])
    books = tmp_path / "goodreads_library_export.csv"
    books.write_text("Book Id,Title,Author,My Rating,Exclusive Shelf,Year Published\n"
                     "1,Jurassic Park,Michael Crichton,5,read,1993\n")
    assert import_file(store, books).items_added == 1
    films = tmp_path / "imdb.csv"
    films.write_text(IMDB + "tt0107290,9,2023-01-01,Jurassic Park,,u,movie,8.2,127,1993,Adventure,1,,\n")
    report = import_file(store, films)
    assert (report.items_added, report.items_unchanged) == (0, 1)
    rated = {store.item(i.item_id).source: i.value for i in store.interactions()}
    assert rated == {"goodreads": 5.0, "movielens-100k": 4.5}


def test_scale_given_overrides_the_assumption(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("title,rating,at\nA,4,2024-01-01\nB,2,2024-01-02\n")
    assumed = import_file(Store.memory(), path)
    assert assumed.scale.top == 5 and "assumed" in assumed.scale.why and "--scale 10" in assumed.scale.why
    store = Store.memory()
    given = import_file(store, path, scale=10)
    assert (given.scale.top, given.scale.why) == (10, "given with --scale")
    assert sorted(i.value for i in store.interactions()) == [1.0, 2.0]
    with pytest.raises(ImportFailed, match="--scale 7"):
        import_file(store, path, scale=7)


# -- the property: bytes, any format ---------------------------------------------------------------------

PREFIXES = [b"", text(LB), text(IMDB), text("title,rating,at,feedback\n"), b"[", b'{"movies": [', b"<rss><channel>",
            text("Book Id,Title,Author,My Rating,Exclusive Shelf\n"), b"<opml><body>", b"\xef\xbb\xbf<?xml version='1.0'?>"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=300), fmt=st.sampled_from((None,) + FORMATS))
def test_no_bytes_in_any_format_raise_anything_but_import_failed(tmp_path, prefix, body, fmt):
    store = Store.memory()
    path = tmp_path / "random.dat"
    path.write_bytes(prefix + body)
    try:
        report = import_file(store, path, fmt)
    except ImportFailed as error:
        assert str(error)
        assert (store.item_count(), store.interaction_count()) == (0, 0)  # a refused file writes nothing
        return
    # A file that imports writes exactly the rows it reports, no half of one.
    assert store.item_count() == report.items_added
    assert store.interaction_count() == report.feedback_added
    assert sum(report.taken_as.values()) >= report.feedback_added


def test_a_file_found_unusable_after_rows_were_written_leaves_none_of_them(tmp_path, monkeypatch):
    from agent.core.importers import writing

    monkeypatch.setattr(writing, "FLUSH", 2)  # rows are written two at a time, long before the break
    records = [{"rating": 8, "rated_at": "2024-01-01T00:00:00Z", "movie": movie(f"Film {n}", 2000, n)} for n in range(9)]
    path = tmp_path / "ratings.json"
    path.write_bytes(trakt(records)[:-40])  # cut inside the last record
    store = Store.memory()
    with pytest.raises(ImportFailed, match="not readable JSON at line"):
        import_file(store, path)
    assert (store.item_count(), store.interaction_count()) == (0, 0)
    path.write_bytes(trakt(records))
    report = import_file(store, path)
    assert (report.items_added, report.feedback_added, store.item_count()) == (9, 9, 9)
