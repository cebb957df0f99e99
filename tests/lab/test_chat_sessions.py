"""The chat tested as a person uses it: a few requests of one simulated person through `ownrec ask` and through
the TUI's Chat screen (the real SmolLM2 GGUF model, the demo catalog), each answer checked by the lab's
independent verifier (agent.lab.validation.chat.verify). And proof that the verifier fails an untrue
statement: fabricated replies it must catch."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from helpers import agent_from_template

from agent import cli as cli_module
from agent.cli import cli
from agent.lab.validation.chat.script import SCI_FI
from agent.lab.validation.chat.sessions import pinned_value, prepare
from agent.lab.validation.chat.verify import Catalog, Entry, Person, Said, Verifier, norm

# Short replies: what is checked is the same in a short one, and the suite stays fast.
MAX_TOKENS = 32


@pytest.fixture(scope="module")
def llm(llm_cache_dir):
    from agent.core.llm import LLM

    return LLM.load(cache_dir=llm_cache_dir)


@pytest.fixture
def person(demo_database, encoder, llm, ownrec_home):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    agent = agent_from_template(demo_database, encoder, llm, seed=SCI_FI.seed)
    agent.config.set("llm.max_tokens", MAX_TOKENS)
    prepare(agent, SCI_FI)  # likes, dislikes, a pinned trait and a hidden one
    yield agent
    agent.close()


def check(agent, catalog: Catalog, said: Said, expected: str, previous: Said | None = None) -> None:
    assert said.kind == expected, f"{said.request!r} answered as {said.kind}"
    verdict = Verifier(Person.read(agent, catalog)).verify(said, expected, previous)
    assert verdict.failures == [], verdict.failures


SESSION = [("something like Alien but less scary", "recommend"), ("why the second one?", "why"),
           ("why Star Wars?", "why"), ("what do you know about me?", "about_me"), ("hello", "off_topic")]


def test_a_session_through_the_cli_says_only_what_is_true(person, monkeypatch):
    monkeypatch.setattr(cli_module, "_agent", lambda: person)
    catalog = Catalog.read(person)
    pinned = pinned_value(person, SCI_FI)
    runner = CliRunner()
    conversation, previous = None, None
    for text, kind in SESSION:
        args = ["ask", "--json", *(["--chat", str(conversation)] if conversation else []), text]
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        said = Said.of(data)
        check(person, catalog, said, kind, previous)
        conversation, previous = data["conversation_id"], said
    assert not any(item["genres"] and "Horror" in item["genres"] for item in json.loads(
        runner.invoke(cli, ["chats", "show", "--json", str(conversation)]).output)["messages"][1]["items"])
    assert abs(pinned_value(person, SCI_FI) - pinned) <= 0.005


@pytest.mark.anyio
async def test_a_session_in_the_chat_screen_says_only_what_is_true(person):
    from textual.widgets import Input

    from agent.tui.app import OwnrecApp
    from agent.tui.screens import ChatScreen
    from agent.tui.screenshot import settle
    from helpers import open_from_feed

    catalog = Catalog.read(person)
    app = OwnrecApp(person)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_from_feed(pilot, "c", ChatScreen)
        previous = None
        for text, kind in [("a comedy from the 80s", "recommend"), ("why the first one?", "why"),
                           ("what's the capital of France?", "off_topic"), ("describe my taste", "about_me")]:
            screen.query_one(Input).focus()
            await pilot.press(*text, "enter")
            await settle(pilot)
            answer = screen.answers[-1]
            assert answer.request == text and answer.reply in screen.transcript_text()
            said = Said.of(answer)
            check(person, catalog, said, kind, previous)
            previous = said


# -- the verifier fails what is untrue ----------------------------------------------------------------


def _catalog() -> Catalog:
    entries = {1: Entry(1, "Heat", 1995, frozenset({"Action", "Crime", "Thriller"})),
               2: Entry(2, "Star Wars", 1977, frozenset({"Action", "Sci-Fi", "War"})),
               3: Entry(3, "Annie Hall", 1977, frozenset({"Comedy", "Romance"})),
               4: Entry(4, "The Shining", 1980, frozenset({"Horror"}))}
    by_title = {norm(e.title): {e.id} for e in entries.values()}
    return Catalog(entries, by_title, 4)


def _person() -> Person:
    trait = SimpleNamespace(name="Agreeableness", value=0.68, low="cynical, cold and ruthless",
                            high="warm, kind and heartwarming", hidden=False, pinned=False)
    hidden = SimpleNamespace(name="Dark", value=None, low="lighthearted, cheerful and upbeat", high="dark, grim and bleak",
                             hidden=True, pinned=False)
    return Person(_catalog(), {2: True, 4: False}, {3}, [trait, hidden])


def _said(reply: str, items=(1, 3), kind: str = "recommend", reasons: dict | None = None) -> Said:
    catalog = _catalog()
    return Said("a request", kind, reply, [{"id": i, "title": catalog.entries[i].title, "year": catalog.entries[i].year,
                                             "reason": (reasons or {}).get(i, "because you liked Star Wars")}
                                            for i in items])


def test_a_true_reply_passes():
    reply = ("Heat (1995) is close to Star Wars..., which you liked. ""Heat (1995) is a tense crime film, and since you liked Star Wars, Annie Hall (1977) is a romantic "
             "comedy to try. You have watched Annie Hall already. Agreeableness 0.68: what you like sits nearer "
             "“warm, kind and heartwarming” than “cynical, cold and ruthless”.")
    verdict = Verifier(_person()).verify(_said(reply), "recommend")
    assert verdict.failures == [] and verdict.checked >= 8


@pytest.mark.parametrize("reply, check", [
    ("You liked Heat (1995), so here it is.", "history claim is true"),  # never judged
    ("Since you loved The Shining, try Heat (1995).", "history claim is true"),  # disliked
    ("As you enjoyed them, try Heat (1995).", "history claim is true"),  # cannot be checked
    ("Heat (1994) is tense.", "year is the title's year"),
    ("Heat! (1994) is tense.", "year is the title's year"),
    ("The film was released in 1957, so it is a classic.", "a year said is the item's"),
    ("Try Heat, out in 1977.", "a year said is the item's"),
    ("Heat (1995) is a great comedy.", "genre is the titles' genre"),
    ("The Silent Horizon (1999) is a hidden gem.", "a titled year names a catalog item"),
    ("Try The Shining (1980) tonight.", "title named is shown or liked"),  # neither shown nor liked
    ("Your Agreeableness 0.25 fits Heat (1995).", "trait figure is the reading"),
    ("You like cynical, cold and ruthless stories such as Heat (1995).", "trait pole is the one leaned to"),
    ("Heat (1995) is dark, grim and bleak.", "hidden trait not mentioned"),
    ("Heat (1995) is close to Annie Hall, which you liked.", "history claim is true"),  # not liked
])
def test_the_verifier_catches_an_untrue_statement(reply, check):
    verdict = Verifier(_person()).verify(_said(reply), "recommend")
    assert check in [f["check"] for f in verdict.failures], verdict.failures


def test_the_verifier_catches_untrue_reasons_items_and_figures():
    verifier = Verifier(_person())
    unliked = verifier.verify(_said("Here.", items=(1,), reasons={1: "because you liked Annie Hall"}), "recommend")
    assert [f["check"] for f in unliked.failures] == ["reason names a liked item"]
    itself = verifier.verify(_said("Here.", items=(2,), reasons={2: "close to Star Wars, which you liked"}), "recommend")
    assert [f["check"] for f in itself.failures] == ["reason does not name the item itself"]
    declined = verifier.verify(_said("I can only help with your own catalog.", kind="off_topic"), "off_topic")
    assert [f["check"] for f in declined.failures] == ["off-topic request got no items"]
    counts = verifier.verify(_said("From your feedback: 2 liked, 1 disliked, 3 items judged in all. You hid 1 trait.",
                                   items=(), kind="about_me"), "about_me")
    assert [f["check"] for f in counts.failures] == ["about me: feedback counts"]
    judged = verifier.verify(_said("You liked Heat (1995), so your feed leaves it out.", items=(), kind="why"), "why")
    assert "why: the judgement stated is the history's" in [f["check"] for f in judged.failures]
