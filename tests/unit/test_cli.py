import json
import shutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.core import paths
from agent.core.config import Config


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


def groups_of(group: click.Group, path: tuple[str, ...] = ()):
    """Every group of the command line with the words that reach it, the root first."""
    yield path, group
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        if isinstance(command, click.Group):
            yield from groups_of(command, path + (name,))


def test_help_lists_the_persons_commands_first_then_the_lab_and_the_operators():
    output = CliRunner().invoke(cli, ["--help"], terminal_width=80).output
    headings = [line[:-1] for line in output.splitlines() if line and not line[0].isspace() and line.endswith(":")]
    assert headings == ["Options", "Your feed", "Chat", "Your data and settings", "Lab (measuring ownrec; for developers)",
                        "Operators (hosting a sync federation)"]
    lines = output.splitlines()
    position = {line.split()[0]: at for at, line in enumerate(lines) if line.startswith("  ") and line[2] != " "}
    lab, operators = lines.index(headings[4] + ":"), lines.index(headings[5] + ":")
    assert max(position[c] for c in ["import", "recommend", "feedback", "ask", "traits", "sync", "forget"]) < lab
    assert lab < min(position[c] for c in ["bench", "eval", "audit"]) < operators < position["coordinator"]
    commands = lines[lines.index("Your feed:"):]
    assert not any(line.rstrip().endswith("...") for line in commands)  # click's mark of a cut description
    # traits validate is the lab's, under its own heading in `ownrec traits --help`
    traits_help = CliRunner().invoke(cli, ["traits", "--help"]).output
    assert traits_help.index("Lab (") < traits_help.index("  validate ")


def test_every_command_is_listed_with_its_whole_description():
    for path, group in groups_of(cli):
        result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, path
        listed = "".join(result.output.split())  # descriptions wrap; compare without the line breaks
        for name in group.list_commands(click.Context(group)):
            description = group.get_command(click.Context(group), name).get_short_help_str(limit=sys.maxsize)
            assert description and "".join(f"{name}{description}".split()) in listed, (path, name)


def test_python_m_agent_cli_runs_the_command_line_without_loading_the_lab_or_the_server():
    done = subprocess.run([sys.executable, "-m", "agent.cli", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ownrec") and "Operators (hosting a sync federation):" in done.stdout
    probe = ("import sys, agent.cli; print(','.join(m for m in sys.modules "
             "if m.startswith(('agent.lab', 'agent.server', 'agent.tui', 'textual', 'torch'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == ""


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


def test_undo_takes_back_the_last_feedback_and_the_feed_returns(run, demo_home):
    assert run("undo").output.strip() == "nothing to undo: you have not given any feedback"
    opened = run("feedback", "50", "open").output  # an open changes no model at once: it does not say so
    assert "counts at your model's next full retrain" in opened and "updated your model" not in opened
    assert run("undo").output.strip() == "took back open for Star Wars"
    before = json.loads(run("recommend", "--top", "10", "--json").output)
    run("feedback", str(before[0]["id"]), "like")
    run("feedback", str(before[1]["id"]), "rate", "2")
    undone = run("undo")
    assert undone.exit_code == 0 and undone.output.strip() == f"took back rating 2 for {before[1]['title']}"
    run("undo")
    assert json.loads(run("export").output)["interactions"] == []
    assert json.loads(run("recommend", "--top", "10", "--json").output) == before


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


def test_doctor_names_an_encoder_quantized_as_before(run, prepared_models_dir, tmp_path, monkeypatch):
    shutil.copytree(prepared_models_dir / "encoder", tmp_path / "models" / "encoder")
    manifest_path = tmp_path / "models" / "encoder" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["quantization"] = "dynamic int8, per-channel"
    manifest_path.write_text(json.dumps(manifest))
    monkeypatch.setenv("OWNREC_MODELS", str(tmp_path / "models"))
    doctor = run("doctor")
    assert doctor.exit_code == 1
    assert "[FIX] encoder: all-MiniLM-L6-v2" in doctor.output and "quantized as an older ownrec did" in doctor.output
    assert "fix: ownrec models prepare" in doctor.output


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
    refused = run("config", "set", "llm.model", str(fake))
    assert refused.exit_code == 1 and "is not a GGUF model" in refused.output
    Config().set("llm.model", str(fake))  # a file that went bad after it was chosen
    bad = run("doctor")
    assert bad.exit_code == 1 and "[FIX] chat model:" in bad.output and "fix: " in bad.output


def test_a_pin_file_that_cannot_be_used_is_refused_before_anything_is_created(run, ownrec_home, tmp_path):
    bad = tmp_path / "coordinator-pin.json"
    bad.write_text("not json", encoding="utf-8")
    result = run("sync", "join", str(bad))
    assert result.exit_code == 1 and "is not a usable coordinator pin" in result.output
    assert not (ownrec_home / "ownrec.db").exists() and not (ownrec_home / "sync").exists()
