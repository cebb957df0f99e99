from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core import importers
from agent.core.importers import (
    FORMATS,
    ImportFailed,
    ImportProblem,
    ImportReport,
    detect_format,
    import_demo,
    import_file,
    movielens_ratings,
    movielens_users,
)
from agent.core.importers import demo, writing
from agent.core.importers.base import display_title, title_variants
from agent.core.store import NewItem, Store
from import_helpers import by_title, feedback, ts, write


@pytest.fixture
def store() -> Store:
    return Store.memory()


# -- generic CSV -----------------------------------------------------------------------------

CATALOG_CSV = """\
id,title,year,genres,description,url,creator,mood
m1,Heat,1995,Crime|Thriller,A heist goes wrong.,https://example.org/heat,Michael Mann,tense
,Arrival,2016,"Drama, Sci-Fi",,,,
m3,Quiet Film,,,,,,
"""


def test_csv_catalog(store, tmp_path):
    path = write(tmp_path / "films.csv", CATALOG_CSV, bom=True)
    report = import_file(store, path)

    assert (report.format, report.items_added, report.items_updated, report.items_unchanged) == ("csv", 3, 0, 0)
    assert (report.feedback_added, report.problems) == (0, [])
    items = by_title(store)
    heat = items["Heat"]
    assert (heat.source, heat.external_id) == ("csv:films.csv", "m1")
    assert heat.text == "Heat (1995). Crime, Thriller. A heist goes wrong."
    assert heat.metadata == {"year": 1995, "genres": ["Crime", "Thriller"], "url": "https://example.org/heat",
                             "author": "Michael Mann", "mood": "tense"}
    arrival = items["Arrival"]
    assert arrival.text == "Arrival (2016). Drama, Sci-Fi."
    assert arrival.external_id.startswith("arrival-2016-")
    assert items["Quiet Film"].text == "Quiet Film."
    assert items["Quiet Film"].metadata == {}
    assert store.interaction_count() == 0


HISTORY_CSV = """\
Title,Year,Feedback,Rating,At,Source
Heat,1995,,4.5,2024-03-01,films
Heat,1995,like,,2024-03-02T20:15:00+01:00,films
Arrival,2016,open,,1700000000,films
Arrival,2016,skip,,,films
"""


def test_csv_history_feedback(store, tmp_path):
    path = write(tmp_path / "history.csv", HISTORY_CSV)
    report = import_file(store, path)

    assert (report.items_added, report.feedback_added, report.feedback_duplicates) == (2, 4, 0)
    assert report.problems == []
    rows = [(t, k, v, at, o) for t, k, v, at, o in feedback(store) if k != "skip"]
    assert rows == sorted([
        ("Heat", "rating", 4.5, ts("2024-03-01"), "import:csv"),
        ("Heat", "like", None, ts("2024-03-02T19:15:00+00:00"), "import:csv"),
        ("Arrival", "open", None, 1700000000.0, "import:csv"),
    ])
    [skip] = [i for i in store.interactions() if i.kind == "skip"]
    assert skip.value is None and abs(skip.at - datetime.now(timezone.utc).timestamp()) < 60
    assert {item.source for item in store.items()} == {"films"}


def test_csv_date_without_feedback_is_metadata(store, tmp_path):
    report = import_file(store, write(tmp_path / "news.csv", "title,date\nStory,5 May\n"))
    assert report.problems == [] and store.interaction_count() == 0
    assert store.items()[0].metadata == {"date": "5 May"}


def test_csv_reimport_is_idempotent(store, tmp_path):
    path = write(tmp_path / "history.csv", HISTORY_CSV)
    import_file(store, path)
    before = store.export()["interactions"], [item.metadata for item in store.items()]

    again = import_file(store, path)
    assert (again.items_added, again.items_updated, again.items_unchanged) == (0, 0, 2)
    assert (again.feedback_added, again.feedback_duplicates) == (0, 4)
    assert (store.export()["interactions"], [item.metadata for item in store.items()]) == before


MALFORMED_CSV = """\
title,year,rating,feedback,at
Good One,2001,4,,2024-01-01
,1999,,,
Bad Year,nineteen,,,
Too High,2000,700,,
Not A Number,2000,lots,,
Odd Kind,2000,,adore,
"Two
Lines",2000,,like,yesterday
Too,Many,Fields,,,,
Needs Rating,2000,,rating,

Good Two,2002,,like,2024-01-02
"""


def test_csv_malformed_rows_are_reported_and_good_rows_imported(store, tmp_path):
    path = write(tmp_path / "bad.csv", MALFORMED_CSV)
    report = import_file(store, path)

    lines = [(problem.path, problem.line) for problem in report.problems]
    assert lines == [(str(path), n) for n in (3, 4, 5, 6, 7, 8, 10, 11)]
    messages = [problem.message for problem in report.problems]
    assert messages[0] == "missing title"
    assert "bad year 'nineteen'" in messages[1]
    assert messages[2] == "rating 700 is outside 0.5-5, the scale this file is read on"
    assert "not a number" in messages[3]
    assert "unknown feedback kind 'adore'" in messages[4]
    assert "bad date 'yesterday'" in messages[5]
    assert "7 fields but the header has 5" in messages[6]
    assert "rating is missing" in messages[7]
    assert str(report.problems[0]) == f"{path}:3: missing title"

    assert sorted(by_title(store)) == ["Good One", "Good Two"]
    assert feedback(store) == sorted([
        ("Good One", "rating", 4.0, ts("2024-01-01"), "import:csv"),
        ("Good Two", "like", None, ts("2024-01-02"), "import:csv"),
    ])
    assert "8 problems" in report.summary()


def test_csv_without_title_column_or_not_utf8_fails(store, tmp_path):
    no_title = write(tmp_path / "x.csv", "name,year\nHeat,1995\n")
    with pytest.raises(ImportFailed, match=r"x\.csv: no title column"):
        import_file(store, no_title)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("title\n".encode() + "".join(f"Am\xe9lie {n}\n" for n in range(11)).encode("latin-1"))
    with pytest.raises(ImportFailed, match=r"not UTF-8 text \(line 2, byte 8\); save it as UTF-8"):
        import_file(store, latin)  # more than a few lines: the file is in another encoding
    latin.write_bytes("title\nAm\xe9lie\nHeat\n".encode("latin-1"))
    report = import_file(store, latin)  # one damaged line: that row is refused, not the file
    assert [(p.line, p.message) for p in report.problems] == [
        (2, "holds the byte 0xe9, which is not UTF-8 text; save the file as UTF-8")]
    assert [item.title for item in store.items()] == ["Heat"]
    store = Store.memory()
    with pytest.raises(ImportFailed, match="empty file"):
        import_file(store, write(tmp_path / "empty.csv", ""), format="csv")
    with pytest.raises(ImportFailed, match="no such file"):
        import_file(store, tmp_path / "missing.csv", format="csv")
    assert store.item_count() == 0


def test_good_rows_commit_together(store, tmp_path, monkeypatch):
    monkeypatch.setattr(writing, "BATCH", 2)
    path = write(tmp_path / "history.csv", HISTORY_CSV)
    calls = []
    real = store.add_interactions

    def flaky(rows):
        rows = list(rows)
        calls.append(len(rows))
        if len(calls) == 2:  # the last of two batches
            raise OSError("disk full")
        return real(rows)

    monkeypatch.setattr(store, "add_interactions", flaky)
    with pytest.raises(OSError, match="disk full"):
        import_file(store, path)
    assert calls == [2, 2]
    assert store.item_count() == 0
    assert store.interaction_count() == 0

    monkeypatch.setattr(store, "add_interactions", real)
    assert import_file(store, path).feedback_added == 4


# -- JSONL -----------------------------------------------------------------------------------


def test_jsonl_happy_path_and_problems(store, tmp_path):
    lines = [
        json.dumps({"id": 7, "title": "Dune", "year": 2021, "tags": ["sand", "Sci-Fi"], "text": "Spice.",
                    "author": "Denis", "extra": {"k": [1, 2]}}),
        "",
        json.dumps({"title": "Dune", "feedback": "dislike", "at": 1700000000, "id": "7"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"title": "Her", "rating": 5, "date": "2023-05-06T07:08:09Z"}),
        "   ",
        json.dumps({"title": "", "year": 2000}),
        json.dumps({"title": "Late", "rating": 0.25}),
    ]
    path = write(tmp_path / "log.ndjson", "\n".join(lines) + "\n")
    assert detect_format(path) == "jsonl"
    report = import_file(store, path)

    assert [(p.line, p.message.split(":")[0]) for p in report.problems] == [
        (4, "invalid JSON"), (5, "expected a JSON object, got list"), (8, "missing title"),
        (9, "rating 0.25 is outside 0.5-5, the scale this file is read on"),
    ]
    # id 7 twice: the later row wins (it has no tags), and there is one item
    assert report.items_added == 2
    dune = by_title(store)["Dune"]
    assert (dune.source, dune.external_id, dune.text, dune.metadata) == ("jsonl:log.ndjson", "7", "Dune.", {})
    her = by_title(store)["Her"]
    assert her.metadata == {}
    assert feedback(store) == sorted([
        ("Dune", "dislike", None, 1700000000.0, "import:jsonl"),
        ("Her", "rating", 5.0, ts("2023-05-06T07:08:09+00:00"), "import:jsonl"),
    ])
    again = import_file(store, path)
    assert (again.items_added, again.items_updated, again.feedback_added, again.feedback_duplicates) == (0, 0, 0, 2)


def test_jsonl_list_genres_and_extras(store, tmp_path):
    path = write(tmp_path / "cat.jsonl", json.dumps(
        {"id": "a", "title": "Dune", "year": "2021", "genres": ["Sci-Fi", "Drama"], "tags": "sand|epic",
         "description": "Spice.", "extra": {"k": [1, 2]}, "empty": None}) + "\n")
    report = import_file(store, path)
    assert report.items_added == 1 and report.problems == []
    [dune] = store.items()
    assert dune.text == "Dune (2021). Sci-Fi, Drama, sand, epic. Spice."
    assert dune.metadata == {"year": 2021, "genres": ["Sci-Fi", "Drama"], "tags": ["sand", "epic"],
                             "extra": {"k": [1, 2]}}


TRICKY = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(
    lambda s: s.strip() == s and s != "")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(titles=st.lists(TRICKY, min_size=1, max_size=5, unique_by=str.casefold))
def test_titles_roundtrip_through_csv_and_jsonl(tmp_path, titles):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["title", "description"])
    writer.writerows([t, "line one\r\nline two"] for t in titles)
    csv_path = write(tmp_path / "rt.csv", buffer.getvalue(), bom=True)
    jsonl_path = write(tmp_path / "rt.jsonl", "\n".join(json.dumps({"title": t}) for t in titles))
    for path in (csv_path, jsonl_path):
        store = Store.memory()
        report = import_file(store, path)
        assert report.problems == []
        assert sorted(item.title for item in store.items()) == sorted(titles)
        assert import_file(store, path).items_unchanged == len(titles)


# -- Letterboxd ------------------------------------------------------------------------------


def movielens_style(store: Store) -> None:
    store.upsert_items([
        NewItem("movielens-100k", "12", "Usual Suspects, The", "The Usual Suspects (1995). Crime, Thriller.",
                {"year": 1995, "genres": ["Crime", "Thriller"]}),
        NewItem("movielens-100k", "153", "Fish Called Wanda, A", "A Fish Called Wanda (1988). Comedy.",
                {"year": 1988}),
    ])


RATINGS = """\
Date,Name,Year,Letterboxd URI,Rating
2024-01-05,The Usual Suspects,1995,https://boxd.it/29Zc,4.5
2024-01-06,Parasite,2019,https://boxd.it/hTha,5
2024-01-07,The Usual Suspects,1994,https://boxd.it/zzzz,2
2024-01-08,,2000,https://boxd.it/nope,3
2024-01-09,Broken,2000,https://boxd.it/brk,six
"""

DIARY = """\
Date,Name,Year,Letterboxd URI,Rating,Rewatch,Tags,Watched Date
2024-02-02,A Fish Called Wanda,1988,https://boxd.it/d1,,,,2024-02-01
2024-03-02,Parasite,2019,https://boxd.it/d2,4,Yes,,2024-03-01
2024-03-05,Parasite,2019,https://boxd.it/d3,,Yes,,
"""


def test_letterboxd_matches_movielens_titles_or_adds_items(store, tmp_path):
    movielens_style(store)
    ratings = write(tmp_path / "letterboxd" / "ratings.csv", RATINGS)
    assert detect_format(ratings) == "letterboxd"
    report = import_file(store, ratings)

    assert [(p.line, p.message) for p in report.problems] == [
        (5, "missing Name"), (6, "rating 'six' is not a number")]
    assert (report.items_added, report.items_unchanged, report.feedback_added) == (2, 1, 3)
    items = by_title(store)
    assert store.item_count() == 4
    parasite = store.find_by_title("Parasite", 2019)
    assert (parasite.source, parasite.external_id, parasite.text) == ("letterboxd", "hTha", "Parasite (2019).")
    assert parasite.metadata == {"year": 2019, "url": "https://boxd.it/hTha"}
    # a different year is a different film
    other = store.find_by_title("The Usual Suspects", 1994)
    assert (other.source, other.external_id) == ("letterboxd", "zzzz")
    assert feedback(store) == sorted([
        ("Usual Suspects, The", "rating", 4.5, ts("2024-01-05"), "import:letterboxd"),
        ("Parasite", "rating", 5.0, ts("2024-01-06"), "import:letterboxd"),
        ("The Usual Suspects", "rating", 2.0, ts("2024-01-07"), "import:letterboxd"),
    ])
    assert items["Usual Suspects, The"].source == "movielens-100k"

    diary = write(tmp_path / "letterboxd" / "diary.csv", DIARY)
    report = import_file(store, diary)
    assert (report.items_added, report.items_unchanged, report.feedback_added) == (0, 2, 3)
    assert store.item_count() == 4
    assert [row for row in feedback(store) if row[3] >= ts("2024-02-01")] == sorted([
        ("Fish Called Wanda, A", "open", None, ts("2024-02-01"), "import:letterboxd"),
        ("Parasite", "rating", 4.0, ts("2024-03-01"), "import:letterboxd"),
        ("Parasite", "open", None, ts("2024-03-05"), "import:letterboxd"),
    ])

    again = import_file(store, ratings), import_file(store, diary)
    assert [(r.items_added, r.feedback_added, r.feedback_duplicates) for r in again] == [(0, 0, 3), (0, 0, 3)]
    assert store.interaction_count() == 6


def test_letterboxd_likes_and_watched(store, tmp_path):
    header = "Date,Name,Year,Letterboxd URI\n"
    likes = write(tmp_path / "likes" / "films.csv", header + "2024-04-01,Usual Suspects,1995,https://boxd.it/a\n")
    watched = write(tmp_path / "watched.csv", header + "2024-04-02,Heat,1995,https://letterboxd.com/film/heat/\n")
    import_file(store, likes)
    import_file(store, watched)
    assert feedback(store) == sorted([
        ("Usual Suspects", "like", None, ts("2024-04-01"), "import:letterboxd"),
        ("Heat", "open", None, ts("2024-04-02"), "import:letterboxd"),
    ])
    assert store.find_by_title("Heat", 1995).external_id == "film/heat"


def test_title_variants():
    assert display_title("Usual Suspects, The") == "The Usual Suspects"
    assert display_title("Postino, Il") == "Il Postino"
    assert display_title("Appartement, L'") == "L'Appartement"
    assert display_title("Blue Angel, The (Blaue Engel, Der)") == "The Blue Angel (Blaue Engel, Der)"
    assert display_title("Queen Margot (Reine Margot, La)") == "Queen Margot (Reine Margot, La)"
    assert title_variants("The Usual Suspects") == ["The Usual Suspects", "Usual Suspects, The"]
    assert title_variants("Fish Called Wanda, A") == ["Fish Called Wanda, A", "A Fish Called Wanda"]
    assert title_variants("Heat") == ["Heat"]


# -- Goodreads -------------------------------------------------------------------------------

GOODREADS = '''\
Book Id,Title,Author,Author l-f,Additional Authors,ISBN,ISBN13,My Rating,Average Rating,Publisher,Binding,Number of Pages,Year Published,Original Publication Year,Date Read,Date Added,Bookshelves,Bookshelves with positions,Exclusive Shelf,My Review,Spoiler,Private Notes,Read Count,Owned Copies
2767052,"The Hunger Games (The Hunger Games, #1)",Suzanne Collins,"Collins, Suzanne",,"=""0439023483""","=""9780439023481""",5,4.33,Scholastic,Hardcover,374,2008,2008,2023/08/14,2023/07/01,,,read,,,,1,0
6148028,"Catching Fire (The Hunger Games, #2)",Suzanne Collins,"Collins, Suzanne",,"=""""","=""""",0,4.30,Scholastic,Hardcover,391,2009,2009,,2023/07/02,,,read,,,,1,0
7260188,Mockingjay,Suzanne Collins,"Collins, Suzanne",,,,0,4.1,Scholastic,Hardcover,390,2010,,,2023/07/03,to-read,to-read (#1),to-read,,,,0,0
5107,The Catcher in the Rye,J.D. Salinger,"Salinger, J.D.",,,,4,3.8,Little,Paperback,277,2001,1951,2020/1/5,2019/12/01,,,read,,,,1,0
99,,Nobody,,,,,3,,,,,,,,2023/07/04,,,read,,,,,
98,Bad Stars,Nobody,,,,,9,,,,,,,,2023/07/04,,,read,,,,,
'''


def test_goodreads_to_read_read_and_rated(store, tmp_path):
    # A film of the same title and year, and a catalog item of no stated kind, are never matched to a book.
    store.upsert_items([NewItem("movielens-100k", "9", "Catcher in the Rye, The", "Film.", {"year": 1951}),
                        NewItem("csv:any.csv", "x", "Catcher in the Rye, The", "?", {"year": 1951}),
                        NewItem("csv:books.csv", "catcher", "Catcher in the Rye, The", "Catcher.",
                                {"year": 1951, "kind": "book"})])
    path = write(tmp_path / "goodreads_library_export.csv", GOODREADS)
    assert detect_format(path) == "goodreads"
    report = import_file(store, path)

    assert [(p.line, p.message) for p in report.problems] == [(6, "missing Title"), (7, "My Rating '9' is not 0-5 stars")]
    assert (report.items_added, report.items_unchanged, report.feedback_added) == (3, 1, 4)
    assert report.understood == "a Goodreads library export (books)"
    assert dict(report.taken_as) == {"rated": 2, "read": 1, "wanted": 1}
    assert (report.scale.top, report.scale.why) == (5, "Goodreads' 1-5 stars")
    hunger = store.find_by_title("The Hunger Games (The Hunger Games, #1)", 2008)
    assert (hunger.source, hunger.external_id) == ("goodreads", "2767052")
    assert hunger.text == "The Hunger Games (The Hunger Games, #1) by Suzanne Collins (2008)."
    assert hunger.metadata == {"author": "Suzanne Collins", "year": 2008, "isbn": "9780439023481",
                               "url": "https://www.goodreads.com/book/show/2767052"}
    assert store.find_by_title("Catching Fire (The Hunger Games, #2)").metadata.get("isbn") is None
    mockingjay = store.find_by_title("Mockingjay", 2010)
    assert mockingjay.metadata["year"] == 2010  # no original year: Year Published
    assert feedback(store) == sorted([
        ("The Hunger Games (The Hunger Games, #1)", "rating", 5.0, ts("2023-08-14"), "import:goodreads"),
        ("Catching Fire (The Hunger Games, #2)", "open", None, ts("2023-07-02"), "import:goodreads"),
        ("Catcher in the Rye, The", "rating", 4.0, ts("2020-01-05"), "import:goodreads"),
        ("Mockingjay", "want", None, ts("2023-07-03"), "import:goodreads"),  # to-read: wanted, not read
    ])
    catcher = [i.item_id for i in store.interactions() if i.kind == "rating" and i.value == 4.0]
    assert [store.item(item_id).source for item_id in catcher] == ["csv:books.csv"]

    again = import_file(store, path)
    assert (again.items_added, again.items_updated, again.feedback_added, again.feedback_duplicates) == (0, 0, 0, 4)


# -- detection -------------------------------------------------------------------------------


def test_detect_format(tmp_path):
    lb = "Date,Name,Year,Letterboxd URI\n"
    cases = {
        "ratings.csv": lb,
        "goodreads.csv": GOODREADS,
        "films.csv": "id,title\n",
        "odd.csv": "name\n",  # a .csv is csv; the CSV importer then names the missing column
        "feed.txt": "  <?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'/>",
        "feed.rss": "",
        "log.jsonl": "",
        "log.txt": '{"title": "x"}\n',
        "export.txt": "\ufeff" + lb,
        "books.tsv": GOODREADS,
    }
    expected = {"ratings.csv": "letterboxd", "goodreads.csv": "goodreads", "films.csv": "csv", "odd.csv": "csv",
                "feed.txt": "rss", "feed.rss": "rss", "log.jsonl": "jsonl", "log.txt": "jsonl",
                "export.txt": "letterboxd", "books.tsv": "goodreads"}
    for name, text in cases.items():
        assert detect_format(write(tmp_path / name, text)) == expected[name], name
    assert FORMATS == ("csv", "jsonl", "letterboxd", "goodreads", "imdb", "trakt", "simkl", "rss", "opml")

    for name, text in {"notes.txt": "hello world\n", "page.html": "<html></html>", "blank.dat": ""}.items():
        with pytest.raises(ImportFailed, match="pass --format"):
            detect_format(write(tmp_path / name, text))
    with pytest.raises(ImportFailed, match="no such file"):
        detect_format(tmp_path / "nothing.csv")
    with pytest.raises(ImportFailed, match="is a directory"):
        import_file(Store.memory(), tmp_path)
    with pytest.raises(ImportFailed, match="unknown format 'xls'"):
        import_file(Store.memory(), write(tmp_path / "a.csv", "title\nA\n"), format="xls")


def test_explicit_format_overrides_detection(store, tmp_path):
    path = write(tmp_path / "films.txt", "title\nHeat\n")
    report = import_file(store, path, format="csv")
    assert (report.format, report.items_added) == ("csv", 1)
    assert store.items()[0].source == "csv:films.txt"


def test_report_types():
    problem = ImportProblem("a.csv", 3, "missing title")
    assert str(problem) == "a.csv:3: missing title"
    report = ImportReport("a.csv", "csv", 2, 1, 0, 5, 1, [problem])
    assert report.summary() == ("a.csv (csv): 2 items added, 1 updated, 0 unchanged; 5 feedback added, "
                                "1 already present; 1 problem")
    assert issubclass(ImportFailed, ValueError)


# -- demo ------------------------------------------------------------------------------------


def test_demo_catalog(store):
    report = import_demo(store)
    assert (report.format, report.items_added, report.problems) == ("demo", 1682, [])
    assert store.item_count() == 1682
    suspects = store.resolve_item("movielens-100k:12")
    assert suspects.title == "Usual Suspects, The"
    assert suspects.text == "The Usual Suspects (1995). Crime, Thriller."
    assert suspects.metadata == {"year": 1995, "genres": ["Crime", "Thriller"], "display_title": "The Usual Suspects"}
    assert store.resolve_item("movielens-100k:1").metadata["genres"] == ["Animation", "Children's", "Comedy"]
    assert sum(1 for item in store.items() if item.metadata["genres"]) == 1680  # two are "unknown"

    again = import_demo(store)
    assert (again.items_added, again.items_updated, again.items_unchanged) == (0, 0, 1682)


def test_letterboxd_after_demo(store, tmp_path):
    import_demo(store)
    path = write(tmp_path / "ratings.csv", "Date,Name,Year,Letterboxd URI,Rating\n"
                 "2024-01-05,The Usual Suspects,1995,https://boxd.it/29Zc,4.5\n"
                 "2024-01-06,Il Postino,1994,https://boxd.it/x,3\n")
    report = import_file(store, path)
    assert (report.items_added, report.items_unchanged, report.feedback_added) == (0, 2, 2)
    refs = sorted(store.item(i.item_id).ref for i in store.interactions())
    assert refs == ["movielens-100k:12", "movielens-100k:14"]


def test_demo_readers():
    ratings = movielens_ratings()
    assert len(ratings) == 100_000
    assert ratings[0] == (196, "242", 3.0, 881250949.0)
    assert {rating for _, _, rating, _ in ratings} == {1.0, 2.0, 3.0, 4.0, 5.0}
    users = movielens_users()
    assert len(users) == 943
    assert users[1] == {"age": 24, "gender": "M", "occupation": "technician", "zip_code": "85711"}


def test_demo_without_recbole(store, monkeypatch):
    monkeypatch.setattr(demo.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportFailed, match=r"pip install --no-deps recbole==1\.2\.1"):
        import_demo(store)
    assert store.item_count() == 0


def test_public_api():
    assert set(importers.__all__) >= {"FORMATS", "ImportFailed", "ImportProblem", "ImportReport",
                                      "detect_format", "import_file", "import_demo"}
