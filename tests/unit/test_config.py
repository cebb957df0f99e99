import pytest

from agent.core import paths
from agent.core.config import SETTINGS, Config, ConfigError


def test_defaults_without_a_file():
    config = Config()
    assert config.get("feed.size") == SETTINGS["feed.size"].default
    assert not config.is_set("feed.size")


def test_set_persists_as_toml_and_parses_strings():
    Config().set("feed.diversity", "0.5")
    Config().set("feed.size", "12")
    text = paths.config_path().read_text()
    assert "[feed]" in text and "diversity = 0.5" in text
    reloaded = Config()
    assert reloaded.get("feed.diversity") == 0.5 and reloaded.get("feed.size") == 12
    reloaded.unset("feed.size")
    assert Config().get("feed.size") == SETTINGS["feed.size"].default


@pytest.mark.parametrize("key, value, message", [
    ("feed.colour", "red", "unknown setting 'feed.colour'"),
    ("feed.size", "many", "not a valid int"),
    ("feed.size", "0", "below the minimum"),
    ("feed.exploration", "0.9", "above the maximum"),
    ("feed.exploration", "nan", "not a finite number"),
])
def test_bad_keys_and_values_are_refused_and_nothing_changes(key, value, message):
    config = Config()
    config.set("feed.size", 7)
    with pytest.raises(ConfigError, match=message):
        config.set(key, value)
    assert Config().get("feed.size") == 7


def test_a_hand_edited_file_with_a_bad_value_is_reported_with_its_path():
    paths.config_path().write_text("[feed]\nsize = 'ten'\n")
    with pytest.raises(ConfigError, match=r"config.toml: feed.size: 'ten' is not a valid int"):
        Config()
    paths.config_path().write_text("[feed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config()
