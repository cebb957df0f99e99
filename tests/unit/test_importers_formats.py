"""The formats people have (IMDb, Trakt, Simkl, OPML, Letterboxd's watchlist and lists), what an import says
it understood, and "want": a watchlist is never a like or a watch."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.core.importers import ImportFailed, detect_format, import_file
from agent.core.ranker import FeedbackHistory, latest_judgements, preference_labels
from agent.core.store import Interaction, NewItem, Store
from import_helpers import by_title, feedback, ts, write

IMDB = ("Const,Your Rating,Date Rated,Title,URL,Title Type,IMDb Rating,Runtime (mins),Year,Genres,Num Votes,"
        "Release Date,Directors\n")


@pytest.fixture
def store() -> Store:
    store = Store.memory()
    store.upsert_items([NewItem("movielens-100k", "1", "Heat", "Heat (1995).", {"year": 1995}),
                        NewItem("movielens-100k", "2", "Alien", "Alien (1979).", {"year": 1979})])
    return store


def test_imdb_ratings_in_windows_1252_on_ten_points(store, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_bytes((IMDB + "tt0113277,9,2023-01-05,Heat,https://www.imdb.com/title/tt0113277/,movie,8.3,170,1995,"
                      '"Action, Crime",700000,1995-12-15,Michael Mann\n'
                      "tt0211915,7,2023-02-01,Amélie,https://www.imdb.com/title/tt0211915/,movie,8.3,122,2001,"
                      "Comedy,800000,2001-04-25,Jean-Pierre Jeunet\n"
                      "tt0903747,10,2023-03-01,Breaking Bad,u,tvSeries,9.5,49,2008,Drama,2000000,,\n").encode("cp1252"))
    assert detect_format(path) == "imdb"
    report = import_file(store, path)
    assert report.understanding() == [
        f"{path}: read as an IMDb ratings export; text in Windows-1252 (latin-1) (it is not UTF-8).",
        "  rows taken as: 3 rated.",
        "  ratings read out of 10 (IMDb's 1-10), stored as 0.5-5 stars.",
    ]
    assert (report.items_added, report.items_unchanged) == (2, 1)  # Heat is the MovieLens film
    amelie = by_title(store)["Amélie"]
    assert amelie.metadata["kind"] == "film" and amelie.signals.avg_rating == pytest.approx(4.15)
    assert by_title(store)["Breaking Bad"].metadata["kind"] == "show"
    assert feedback(store) == sorted([("Heat", "rating", 4.5, ts("2023-01-05"), "import:imdb"),
                                      ("Amélie", "rating", 3.5, ts("2023-02-01"), "import:imdb"),
                                      ("Breaking Bad", "rating", 5.0, ts("2023-03-01"), "import:imdb")])


def test_trakt_ratings_watchlist_and_history(store, tmp_path):
    def film(title, year, number):
        return {"title": title, "year": year, "ids": {"trakt": number, "slug": title.lower()}}

    ratings = write(tmp_path / "ratings-movies.json", json.dumps([
        {"rated_at": "2024-01-02T10:00:00.000Z", "rating": 4, "type": "movie", "movie": film("Heat", 1995, 1)},
        {"rated_at": "2024-01-02T10:00:00.000Z", "rating": 10, "type": "movie", "movie": film("Up", 2009, 2)}]))
    watchlist = write(tmp_path / "watchlist.json", json.dumps([
        {"rank": 1, "listed_at": "2024-02-01T00:00:00.000Z", "type": "movie", "movie": film("Alien", 1979, 3)}]))
    assert detect_format(ratings) == detect_format(watchlist) == "trakt"
    rated = import_file(store, ratings)
    assert (dict(rated.taken_as), rated.scale.top) == ({"rated": 2}, 10)
    wanted = import_file(store, watchlist)
    assert wanted.understood.startswith("a Trakt export (a watchlist")
    assert feedback(store) == sorted([("Heat", "rating", 2.0, ts("2024-01-02T10:00:00+00:00"), "import:trakt"),
                                      ("Up", "rating", 5.0, ts("2024-01-02T10:00:00+00:00"), "import:trakt"),
                                      ("Alien", "want", None, ts("2024-02-01"), "import:trakt")])


def test_simkl_backup_statuses(store, tmp_path):
    path = write(tmp_path / "simkl.json", json.dumps({
        "movies": [{"status": "completed", "user_rating": 8, "last_watched_at": "2024-01-01T00:00:00Z",
                    "movie": {"title": "Heat", "year": 1995, "ids": {"simkl": 5}}},
                   {"status": "plantowatch", "added_to_watchlist_at": "2024-01-03T00:00:00Z",
                    "movie": {"title": "Alien", "year": 1979, "ids": {"simkl": 6}}}],
        "anime": [{"status": "watching", "show": {"title": "Frieren", "year": 2023, "ids": {"simkl": 7}}}]}))
    assert detect_format(path) == "simkl"
    report = import_file(store, path)
    assert dict(report.taken_as) == {"rated": 1, "wanted": 1, "watching": 1}
    assert by_title(store)["Frieren"].metadata["kind"] == "show"
    kinds = {title: kind for title, kind, *_ in feedback(store)}
    assert kinds == {"Heat": "rating", "Alien": "want", "Frieren": "open"}


def test_letterboxd_watchlist_is_wanted_and_a_list_is_catalog_only(store, tmp_path):
    watchlist = write(tmp_path / "watchlist.csv", "Date,Name,Year,Letterboxd URI\n2024-01-01,Alien,1979,https://boxd.it/b\n")
    report = import_file(store, watchlist)
    assert (report.understood, dict(report.taken_as)) == (
        "a Letterboxd watchlist export (films you want to watch)", {"wanted": 1})
    assert [kind for _, kind, *_ in feedback(store)] == ["want"]
    listed = write(tmp_path / "lists" / "best.csv", "Letterboxd list export v7\nDate,Name,Tags,URL,Description\n"
                   "2024-01-01,Best,,https://letterboxd.com/u/list/best/,\n\nPosition,Name,Year,URL,Description\n"
                   "1,Heat,1995,https://letterboxd.com/film/heat/,\n2,Paris Texas,1984,https://letterboxd.com/film/pt/,\n")
    assert detect_format(listed) == "letterboxd"
    report = import_file(store, listed)
    assert (dict(report.taken_as), report.items_added, report.items_unchanged) == ({"catalog only": 2}, 1, 1)
    assert store.interaction_count() == 1


def test_opml_imports_its_feed_files_and_names_the_web_addresses(store, tmp_path):
    write(tmp_path / "feeds" / "a.xml", "<rss version='2.0'><channel><title>A</title><item><title>One</title>"
                                       "</item></channel></rss>")
    opml = write(tmp_path / "subs.opml", '<?xml version="1.0"?>\n<opml version="2.0"><body>\n'
                 '<outline text="A" xmlUrl="feeds/a.xml"/>\n<outline text="W" xmlUrl="https://w.example/rss"/>\n'
                 "</body></opml>\n")
    report = import_file(store, opml)
    assert report.understood == ("an OPML subscription list of 2 feeds: 1 file read, 0 files missing, "
                                 "1 web address not downloaded")
    assert [(p.line, p.message) for p in report.problems] == [
        (4, "https://w.example/rss: a web address; ownrec downloads nothing, so save the feed as a file and import that")]
    assert "One" in by_title(store)
    only_web = write(tmp_path / "web.opml", '<opml><body><outline xmlUrl="http://w.example/a"/></body></opml>')
    with pytest.raises(ImportFailed, match="its 1 feed is a web address and ownrec downloads nothing"):
        import_file(store, only_web)


# -- want: never a like, never a watch --------------------------------------------------------------------


def test_a_want_teaches_the_ranker_nothing_and_leaves_the_item_in_the_feed(store):
    heat, alien = (item.id for item in store.items())
    events = [Interaction(1, heat, "want", None, 1.0, "import:letterboxd"),
              Interaction(2, alien, "like", None, 2.0, "cli")]
    assert preference_labels(events) == {alien: 1.0}
    assert latest_judgements(events) == {alien: True}
    history = FeedbackHistory(events)
    assert history.labels == {alien: 1.0} and history.judged == {alien}
    assert not history.seen(heat)  # on a watchlist is not watched: the feed does not mark it seen
    assert history.wanted(heat) and not history.wanted(alien)  # the feed's reason says "on your want list"
    history.add([Interaction(3, heat, "open", None, 3.0, "tui")])
    assert history.seen(heat) and history.judged == {alien} and history.wanted(heat)
    history.add([Interaction(4, heat, "dislike", None, 4.0, "tui")])
    assert not history.wanted(heat)  # judged since: no longer only wanted
    store.add_interactions([(heat, "want", None, 1.0, "import:letterboxd")])
    assert store.judged_item_ids() == set() and store.judged_count() == 0


def test_the_cli_says_what_it_read(tmp_path, prepared_models_dir):
    path = write(tmp_path / "mine.csv", "title,rating,at\nA,4,2024-01-01\nB,nan,2024-01-02\n")
    result = CliRunner().invoke(cli, ["import", str(path)], catch_exceptions=False)
    assert result.exit_code == 0
    assert f"{path}: read as a generic CSV file (the columns the README lists)." in result.output
    assert "rows taken as: 1 rated." in result.output
    assert "ratings read out of 5 (assumed: no rating is above 5; if they are out of 10, give --scale 10)." \
        in result.output
    assert f"skipped {path}:3: rating 'nan' is not a rating" in result.output
    again = CliRunner().invoke(cli, ["import", str(write(tmp_path / "ten.csv", "title,rating\nC,4\n")),
                                     "--scale", "10"], catch_exceptions=False)
    assert "ratings read out of 10 (given with --scale), stored as 0.5-5 stars." in again.output


def test_simkl_csv_backup(store, tmp_path):
    path = write(tmp_path / "simkl_backup.csv",
                 "SIMKL_ID,Title,Type,Year,Watchlist,LastEpWatched,WatchedDate,Rating,Memo,TVDB,TMDB,IMDB\n"
                 "9001,Heat,movie,1995,completed,,18-12-2023 21:50:41,8,,,949,tt0113277\n"
                 "9002,Some Show,tv,2016,watching,S03E04,2024-06-20,,,777001,4242,tt1000002\n"
                 "9003,Some Anime,anime,2021,plantowatch,,,,,,,\n"
                 "9004,Odd,podcast,2021,completed,,,,,,,\n")
    assert detect_format(path) == "simkl"
    report = import_file(store, path)
    assert (report.understood, dict(report.taken_as)) == ("a Simkl CSV backup", {"rated": 1, "watching": 1, "wanted": 1})
    assert [(p.line, p.message) for p in report.problems] == [(5, "unknown Type 'podcast': expected movie, tv or anime")]
    events = {title: (kind, value, at) for title, kind, value, at, _ in feedback(store)}
    assert events["Heat"] == ("rating", 4.0, ts("2023-12-18T21:50:41"))
    assert events["Some Show"] == ("open", None, ts("2024-06-20"))
    assert events["Some Anime"][:2] == ("want", None)  # undated: recorded at the import's time


def test_the_old_imdb_export_in_latin_1(store, tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_bytes(('"position","const","created","modified","description","Title","Title type","Directors",'
                      '"You rated","IMDb Rating","Runtime (mins)","Year","Genres","Num. Votes",'
                      '"Release Date (month/day/year)","URL"\n'
                      '"1","tt0113277","Sun Mar  1 00:00:00 2015","","","Heat","Feature Film","Michael Mann","8","8.3",'
                      '"170","1995","action, crime","300000","1995-12-15","http://www.imdb.com/title/tt0113277/"\n'
                      '"2","tt0000003","Tue Jan 20 00:00:00 2015","","","Léon","Feature Film","Luc Besson","9","8.5",'
                      '"110","1994","crime","1","1994-09-14","http://www.imdb.com/title/tt0000003/"\n').encode("latin-1"))
    assert detect_format(path) == "imdb"
    report = import_file(store, path)
    assert (report.understood, report.notes) == ("an IMDb ratings export", ["text in Windows-1252 (latin-1) (it is not UTF-8)"])
    assert feedback(store) == sorted([("Heat", "rating", 4.0, ts("2015-03-01"), "import:imdb"),
                                      ("Léon", "rating", 4.5, ts("2015-01-20"), "import:imdb")])
