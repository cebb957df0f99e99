import json
import shutil

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.core import paths


@pytest.fixture
def run(prepared_models_dir):
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def demo_home(demo_database, ownrec_home):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(demo_database, paths.database_path())
    return ownrec_home


def test_help_reads_as_docs(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ["import", "recommend", "feedback", "items", "export", "forget", "doctor", "config", "bench"]:
        assert command in result.output
    assert "Formats:" in run("import", "--help").output


def test_recommend_json_and_feedback_round_trip(run, demo_home):
    result = run("recommend", "--top", "5", "--json")
    assert result.exit_code == 0
    slate = json.loads(result.output)
    assert len(slate) == 5 and {"id", "title", "score", "reason"} <= set(slate[0])
    first = slate[0]
    liked = run("feedback", str(first["id"]), "like")
    assert liked.exit_code == 0 and f"recorded like for {first['title']}" in liked.output
    rated = run("feedback", f"movielens-100k:{slate[1]['ref'].split(':')[1]}", "rate", "4.5")
    assert rated.exit_code == 0, rated.output
    after = json.loads(run("recommend", "--top", "20", "--json").output)
    assert {first["id"], slate[1]["id"]}.isdisjoint(r["id"] for r in after)
    exported = json.loads(run("export").output)
    assert [(e["item_id"], e["kind"], e["value"]) for e in exported["interactions"]] == [
        (first["id"], "like", None), (slate[1]["id"], "rating", 4.5)]
    assert exported["personal_adapter"]["trained_on"] == 2
    assert exported["sync_ledger"] == []  # what was uploaded is part of the person's data too


def test_feedback_errors_are_clear_and_change_nothing(run, demo_home):
    unknown = run("feedback", "no-such:item", "like")
    assert unknown.exit_code == 1 and "no item 'no-such:item'" in unknown.output
    no_stars = run("feedback", "1", "rate")
    assert no_stars.exit_code == 2 and "rate needs a number of stars" in no_stars.output
    too_many = run("feedback", "1", "rate", "6")
    assert too_many.exit_code == 1 and "0.5 to 5" in too_many.output
    assert json.loads(run("export").output)["interactions"] == []


def test_import_reports_bad_lines_and_search_finds_the_good_ones(run, tmp_path):
    catalog = tmp_path / "films.csv"
    catalog.write_text("id,title,year,genres\n1,Solaris,1972,Sci-Fi|Drama\n2,,1999,Drama\n3,Stalker,19x9,Sci-Fi\n"
                       "4,Mirror,1975,Drama\n")
    result = run("import", str(catalog))
    assert result.exit_code == 0
    assert f"skipped {catalog}:3:" in result.output and f"skipped {catalog}:4:" in result.output
    assert "2 items added" in result.output
    found = json.loads(run("items", "search", "solaris", "--json").output)
    assert [f["title"] for f in found] == ["Solaris"]
    assert "Mirror" in run("recommend").output


def test_import_needs_path_or_demo(run):
    assert run("import").exit_code == 2
    missing = run("import", "/nonexistent/file.csv")
    assert missing.exit_code == 1 and "/nonexistent/file.csv" in missing.output


def test_forget_asks_then_deletes_everything(run, demo_home):
    run("feedback", "1", "like")
    run("config", "set", "feed.size", "7")
    (demo_home / "sync").mkdir()
    (demo_home / "sync" / "device.key").write_bytes(b"a device signing key")
    declined = run("forget", "--all", input="n\n")
    assert declined.exit_code == 1 and paths.database_path().exists()
    done = run("forget", "--all", "--yes")
    assert done.exit_code == 0
    assert not paths.database_path().exists() and not paths.config_path().exists()
    assert not (demo_home / "adapters").exists() and not (demo_home / "sync").exists()


def test_config_commands_validate(run):
    assert run("config", "set", "feed.size", "7").output.strip() == "feed.size = 7"
    assert run("config", "get", "feed.size").output.strip() == "7"
    bad = run("config", "set", "feed.exploration", "2")
    assert bad.exit_code == 1 and "above the maximum 0.5" in bad.output
    unknown = run("config", "set", "feed.colour", "red")
    assert unknown.exit_code == 2 and "feed.colour" in unknown.output
    assert "feed.size = 7\n" in run("config", "list").output


def test_doctor_and_recommend_name_the_fix_when_the_encoder_is_missing(run, tmp_path, monkeypatch):
    assert run("doctor").exit_code == 0
    monkeypatch.setenv("OWNREC_MODELS", str(tmp_path / "empty"))
    doctor = run("doctor")
    assert doctor.exit_code == 1 and "fix: ownrec models prepare" in doctor.output
    recommend = run("recommend")
    assert recommend.exit_code == 1 and "ownrec models prepare" in recommend.output


def test_taste_sentence_steers_recommend(run, demo_home):
    run("config", "set", "feed.exploration", "0")
    assert run("taste", "funny animated cartoons for kids").exit_code == 0
    slate = json.loads(run("recommend", "--top", "10", "--json").output)
    assert sum(("Animation" in r["genres"]) or ("Children's" in r["genres"]) for r in slate) >= 7


def test_doctor_checks_the_chat_model(run, tmp_path):
    good = run("doctor")
    assert "[ok ] chat model:" in good.output
    fake = tmp_path / "not-a-model.gguf"
    fake.write_bytes(b"this is not a GGUF file" * 10)
    assert run("config", "set", "llm.model", str(fake)).exit_code == 0
    bad = run("doctor")
    assert bad.exit_code == 1 and "[FIX] chat model:" in bad.output and "fix: " in bad.output
