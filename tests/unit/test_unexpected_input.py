"""Input from outside the importers never reaches the person as a traceback: text that is not UTF-8, a search
of 50,000 characters, trait values that are not finite, and, under everything, the CLI's last net (a message
naming the command and the log with the details; Ctrl-C is 130)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import agent.cli
from agent.core import paths
from agent.core.store import NewItem, Store, StoreError
from agent.core.store.store import SEARCH_MAX_CHARACTERS

ROOT = Path(__file__).resolve().parents[2]
NOT_UTF8 = b"caf\xed\xb2\x80"  # a lone surrogate once Python reads it from argv


def ownrec_bytes(*args: bytes) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable.encode(), b"-m", b"agent.cli", *args], env=env, capture_output=True,
                          timeout=120)


@pytest.mark.parametrize("args", [
    [b"items", b"search", NOT_UTF8], [b"recommend", b"--query", NOT_UTF8], [b"taste", NOT_UTF8],
    [b"ask", NOT_UTF8], [b"feedback", NOT_UTF8, b"like"], [b"traits", b"set", NOT_UTF8, b"0.5"],
    [b"traits", b"pin", NOT_UTF8], [b"traits", b"show", NOT_UTF8],
])
def test_text_that_is_not_utf8_is_refused_with_what_to_do(args):
    result = ownrec_bytes(*args)
    said = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode == 2 and "Traceback" not in said, said
    assert "is not valid text: character 4 is a byte that is not UTF-8" in said
    assert "check that the terminal uses UTF-8" in said


def test_a_config_value_that_is_not_utf8_is_refused():
    result = ownrec_bytes(b"config", b"set", b"llm.understand", NOT_UTF8)
    said = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode != 0 and "Traceback" not in said and "llm.understand" in said
    assert not paths.config_path().exists()


def _store_with(*titles: str) -> Store:
    store = Store.open()
    store.upsert_items([NewItem("test", str(i), title, f"{title}. A film.") for i, title in enumerate(titles)])
    return store


def test_a_search_of_50000_characters_is_refused_with_a_message():
    store = _store_with("Nebula Protocol")
    with pytest.raises(StoreError, match=f"a search is at most {SEARCH_MAX_CHARACTERS} characters, and this one "
                                         "has 50,000"):
        store.search_items("x" * 50_000)
    assert [item.title for item in store.search_items("nebula " * 70)] == ["Nebula Protocol"]  # 490 characters


def test_a_search_finds_percent_and_underscore_as_themselves():
    store = _store_with("Up 100%", "Nebula Protocol", "snake_case")
    assert [item.title for item in store.search_items("%")] == ["Up 100%"]  # not LIKE's "anything"
    assert [item.title for item in store.search_items("_")] == ["snake_case"]


def test_a_search_with_a_character_that_is_not_text_is_refused():
    store = _store_with("Nebula Protocol")
    with pytest.raises(StoreError, match=r"character that is not text \('\\udc80', at character 5\)"):
        store.search_items("caf\u00e9\udc80")


def test_the_search_command_says_so_without_a_traceback():
    result = ownrec_bytes(b"items", b"search", b"a%" * 25_000)
    said = (result.stdout + result.stderr).decode()
    assert result.returncode == 1 and "Traceback" not in said
    assert "a search is at most 500 characters, and this one has 50,000" in said


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_trait_values_that_are_not_finite_are_refused(value):
    result = ownrec_bytes(b"traits", b"set", b"factual", b"--", value.encode())
    said = (result.stdout + result.stderr).decode()
    assert result.returncode != 0 and "Traceback" not in said
    assert "a trait value is a number from 0 to 1" in said


def _run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["ownrec", *args])
    with pytest.raises(SystemExit) as ended:
        agent.cli.main()
    captured = capsys.readouterr()
    return ended.value.code, captured.out + captured.err


def test_an_unexpected_error_is_one_paragraph_naming_the_command_and_the_log(monkeypatch, capsys):
    def broken_opener():
        raise RuntimeError("the ranker fell over")

    monkeypatch.setattr(agent.cli, "_agent", broken_opener)
    code, said = _run_main(monkeypatch, capsys, "items", "search", "nebula")
    assert code == 1 and "Traceback" not in said
    assert ("Error: `ownrec items search` stopped on an error it has no message for (RuntimeError: the ranker "
            "fell over)") in said
    logs = list((paths.data_dir() / "logs").glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in said
    details = logs[0].read_text()
    assert "Traceback" in details and "broken_opener" in details and "command: ownrec items search" in details


def test_damage_met_after_the_check_gets_the_damaged_database_message(monkeypatch, capsys):
    error = sqlite3.DatabaseError("database disk image is malformed")  # as a query deep in a command meets it
    error.sqlite_errorcode = 11
    monkeypatch.setattr(agent.cli, "_agent", lambda: (_ for _ in ()).throw(error))
    code, said = _run_main(monkeypatch, capsys, "recommend")
    assert code == 1 and "Traceback" not in said
    assert f"the database {paths.database_path()} is damaged: SQLite says: database disk image is malformed" in said
    assert "`ownrec recover`" in said and not (paths.data_dir() / "logs").exists()


def test_ctrl_c_exits_130(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(agent.cli, "_agent", interrupted)
    code, said = _run_main(monkeypatch, capsys, "recommend")
    assert code == 130 and "Traceback" not in said


def test_usage_errors_and_help_keep_their_exit_codes(monkeypatch, capsys):
    assert _run_main(monkeypatch, capsys, "--version")[0] == 0
    code, said = _run_main(monkeypatch, capsys, "recommend", "--top", "0")
    assert code == 2 and "Invalid value for '--top'" in said
    code, said = _run_main(monkeypatch, capsys, "feedback", "999999", "like")
    assert code == 1 and "no item" in said


def test_export_writes_valid_json_when_a_stored_number_is_not_finite(tmp_path):
    """A rating stored as infinity (by an older version, or by hand) is written as null and named."""
    import json

    from click.testing import CliRunner

    store = _store_with("Nebula Protocol")
    store.add_interactions([(store.item_ids()[0], "rating", float("inf"), 1.0, "test")])
    store.close()
    target = tmp_path / "export.json"
    result = CliRunner().invoke(agent.cli.cli, ["export", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text())["interactions"][0]["value"] is None  # strict JSON: no Infinity
    assert "1 stored value not a finite number (NaN or infinity, which JSON cannot hold) written as null: " \
           "interactions[0].value" in result.output


def test_config_list_shows_a_refused_entry():
    from click.testing import CliRunner

    paths.config_path().write_text("[feed]\nexploration = nan\n")
    result = CliRunner().invoke(agent.cli.cli, ["config", "list"])
    assert result.exit_code == 0 and "feed.exploration: refused, nan is not a finite number" in result.output
