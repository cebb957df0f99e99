"""Settings from the wild: non-finite numbers refused, a hand-edited config.toml's bad entries reported (by the
commands that read it and by `ownrec doctor`) with the key and the file, and the fix doctor gives working."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.core import paths
from agent.core.config import SETTINGS, Config, ConfigError
from agent.core.doctor import check_settings

FLOATS = [key for key, setting in SETTINGS.items() if setting.type is float]


@pytest.mark.parametrize("key", FLOATS)
@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e999", "-1e999"])
def test_every_float_setting_refuses_non_finite_values(key, value):
    with pytest.raises(ConfigError, match=f"{key}: '{value}' is not a finite number"):
        Config().set(key, value)
    assert not paths.config_path().exists()


def test_config_set_nan_is_refused_with_a_message_and_exit_1():
    result = CliRunner().invoke(cli, ["config", "set", "feed.exploration", "nan"])
    assert result.exit_code == 1
    assert "feed.exploration: 'nan' is not a finite number; give one from 0.0 to 0.5" in result.output


def test_a_string_setting_refuses_a_lone_surrogate():
    with pytest.raises(ConfigError, match="characters a settings file cannot hold"):
        SETTINGS["llm.model"].parse("model\udc80.gguf")


def _hand_edit(text: str) -> None:
    paths.config_path().write_text(text, encoding="utf-8")


def test_a_hand_edited_nan_is_reported_by_commands_and_doctor_and_its_fix_works():
    _hand_edit("[feed]\nexploration = nan\nsize = 7\n[ranker]\nlearning_rate = 1e9\n")
    with pytest.raises(ConfigError) as refused:
        Config()
    message = str(refused.value)
    assert f"{paths.config_path()}: feed.exploration: nan is not a finite number" in message
    assert f"{paths.config_path()}: ranker.learning_rate: 1000000000.0 is above the maximum 1.0" in message
    check = check_settings()
    assert not check.ok and "feed.exploration" in check.detail and "ranker.learning_rate" in check.detail
    assert "`ownrec config unset feed.exploration`" in check.fix and "`ownrec config unset ranker.learning_rate`" in check.fix
    runner = CliRunner()
    refused_feed = runner.invoke(cli, ["recommend"])
    assert refused_feed.exit_code == 1 and "feed.exploration: nan is not a finite number" in refused_feed.output
    for key in ("feed.exploration", "ranker.learning_rate"):  # the fix doctor gives, run as given
        assert runner.invoke(cli, ["config", "unset", key]).exit_code == 0
    assert check_settings().ok
    assert Config().get("feed.size") == 7  # the good entry was kept through both repairs


def test_an_unknown_key_in_the_file_is_reported_and_can_be_unset():
    _hand_edit("[feed]\ncolour = 'red'\nsize = 9\n")
    assert "unknown setting 'feed.colour'" in check_settings().detail
    assert CliRunner().invoke(cli, ["config", "unset", "feed.colour"]).exit_code == 0
    assert check_settings().ok and Config().get("feed.size") == 9


def test_setting_one_key_keeps_another_bad_entry_as_it_was():
    _hand_edit("[feed]\nexploration = nan\n")
    assert CliRunner().invoke(cli, ["config", "set", "feed.size", "11"]).exit_code == 0
    config = Config(lenient=True)
    assert config.get("feed.size") == 11 and "feed.exploration" in config.problems  # not lost, still reported
    with pytest.raises(ConfigError, match="fix: `ownrec config unset feed.exploration`"):
        config.get("feed.exploration")


def test_a_broken_file_is_reported_with_its_line_and_the_suggested_command_fixes_it(ownrec_home):
    _hand_edit("[feed]\nsize = 5\nexploration = = 0.2\n")
    check = check_settings()
    assert not check.ok and "at line 3" in check.detail and str(paths.config_path()) in check.detail
    command = check.fix.split("`")[1]
    assert command.startswith("mv ")
    subprocess.run(shlex.split(command), check=True)  # exactly what doctor told the person to run
    assert check_settings().ok
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    doctor = subprocess.run([sys.executable, "-m", "agent.cli", "doctor"], env=env, capture_output=True, text=True)
    assert "[ok ] settings" in doctor.stdout and "Traceback" not in doctor.stderr
    assert Path(f"{paths.config_path()}.broken").read_text().startswith("[feed]")  # the person's file, kept
