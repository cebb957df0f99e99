"""The chat says only what it can check: request kinds answered from the right source, refinements as
filters, and claims in generated text checked against the catalog, the history and the traits."""

from __future__ import annotations

import re

import pytest

from agent.core.llm.answers import OFF_TOPIC_REPLY, TraitFact
from agent.core.llm.claims import Claims, PersonFacts, PersonHistory
from agent.core.llm.grounding import Grounder, TitleIndex
from agent.core.llm.requests import classify, ranking_query, refine, same_series
from agent.core.llm.understand import Filters, Vocabulary, keyword_filters
from agent.core.store import Item
from helpers import agent_from_template

VOCABULARY = Vocabulary(("Drama", "Comedy", "Action", "Thriller", "Horror", "Romance", "Sci-Fi", "War"), 1922, 1998,
                        1994)


@pytest.mark.parametrize("text, kind", [
    ("why Heat?", "why"),
    ("Why did you recommend Star Wars?", "why"),
    ("why is star wars in my feed", "why"),
    ("how come you picked the second one", "why"),
    ("what do you know about me?", "about_me"),
    ("describe my taste", "about_me"),
    ("what's the capital of France?", "off_topic"),
    ("who won the world cup in 2010", "recommend"),  # a year is something a catalog can be filtered by
    ("hello", "off_topic"),
    ("good morning", "off_topic"),  # a greeting: no items
    ("a good night in", "recommend"),
    ("how do I bake bread?", "off_topic"),
    ("something funny from the 80s", "recommend"),
    ("a film like Alien but less scary", "recommend"),
    ("what should I watch tonight?", "recommend"),
    ("any good thrillers?", "recommend"),
    ("tarantino", "recommend"),
    ("why not something funny?", "recommend"),
    ("explain why Fargo is there", "why"),
])
def test_requests_are_told_apart(text, kind):
    assert classify(text, VOCABULARY).kind == kind


def test_a_greeting_is_one_even_when_a_title_says_it():
    assert classify("good morning", VOCABULARY, names_title=True).kind == "off_topic"  # MovieLens has "Good Morning"
    assert classify("good morning vietnam", VOCABULARY, names_title=True).kind == "recommend"


def test_why_reads_an_ordinal_of_the_previous_answer():
    assert classify("why the second one?", VOCABULARY).ordinal == 1
    assert classify("why number 3", VOCABULARY).ordinal == 2
    assert classify("why the last one", VOCABULARY).ordinal == -1
    assert classify("why Heat?", VOCABULARY).ordinal is None


def test_refinements_keep_the_previous_filters_and_add_their_own():
    first = keyword_filters("a comedy from the 80s", VOCABULARY)
    request = classify("nothing sentimental", VOCABULARY, continuing=True)
    assert request.refines
    assert not classify("a western", VOCABULARY, continuing=True).refines  # a new request, not a refinement
    assert classify("what about something older?", VOCABULARY, continuing=True).refines
    filters, notes = refine(keyword_filters(request.text, VOCABULARY), request, first.as_dict(), [], VOCABULARY)
    assert filters.genres == ("Comedy",) and filters.exclude_genres == ("Romance",)
    assert (filters.year_min, filters.year_max) == (1980, 1989) and notes == []
    # "older" is older than what was shown, and replaces the earlier years.
    older = classify("something older", VOCABULARY, continuing=True)
    filters, _ = refine(keyword_filters(older.text, VOCABULARY), older, first.as_dict(), [1984, 1987, 1985], VOCABULARY)
    assert filters.genres == ("Comedy",) and (filters.year_min, filters.year_max) == (None, 1983)
    # With nothing shown, older than the catalog's middle year; a fresh request does not carry anything over.
    alone = classify("older films", VOCABULARY)
    filters, _ = refine(keyword_filters(alone.text, VOCABULARY), alone, first.as_dict(), [], VOCABULARY)
    assert not alone.refines and filters.genres == () and filters.year_max == 1994
    # What cannot be applied is said, truthfully.
    shorter = classify("something shorter", VOCABULARY, continuing=True)
    _, notes = refine(Filters(), shorter, None, [], VOCABULARY)
    assert notes == ["Your catalog does not say how long its items are, so I could not pick shorter ones."]


def test_less_and_negations_exclude_genres_and_leave_the_ranker_query():
    filters = keyword_filters("a film like Alien but less scary", VOCABULARY)
    assert filters.exclude_genres == ("Horror",) and filters.genres == ()
    assert ranking_query("a film like Alien but less scary") == "a film like Alien"
    assert ranking_query("nothing scary") == ""
    assert ranking_query("nothing sentimental", "a comedy from the 80s") == "a comedy from the 80s"
    assert same_series("alien 3", {"alien"}) and same_series("aliens", {"alien"})
    assert not same_series("alien nation", {"heat"}) and not same_series("alienation", {"alien"})


# -- claims in generated text -------------------------------------------------------------------


def _item(item_id: int, title: str, year: int, genres: list[str]) -> Item:
    return Item(item_id, "test", str(item_id), title, title, "", {"genres": genres, "year": year})


CATALOG = [_item(1, "Withnail and I", 1987, ["Comedy"]), _item(2, "Heat", 1995, ["Action", "Crime", "Thriller"]),
           _item(3, "Star Wars", 1977, ["Action", "Sci-Fi", "War"]), _item(4, "Night of the Living Dead", 1968,
                                                                              ["Horror"]),
           _item(5, "Casablanca", 1942, ["Drama", "Romance", "War"])]
TRAITS = (TraitFact("Agreeableness", 0.68, "cynical, cold and ruthless", "warm, kind and heartwarming"),)
HIDDEN = (TraitFact("Dark", 0.5, "lighthearted, cheerful and upbeat", "dark, grim and bleak"),)


def _grounder(shortlist_ids=(1, 2, 3)) -> Grounder:
    index = TitleIndex.from_items(CATALOG)
    shortlist = [i for i in CATALOG if i.id in shortlist_ids]
    person = PersonFacts(PersonHistory({5: True, 4: False}, frozenset({3})), frozenset({"Drama", "Romance", "War"}),
                         TRAITS, HIDDEN)
    claims = Claims(genres_of={i.id: i.metadata["genres"] for i in shortlist}, catalog_genres=VOCABULARY.genres,
                    asked_genres=[], person=person, index=index,
                    instructions="You are ownrec, a recommender on the person's own computer.",
                    years_of={i.id: i.year for i in shortlist}, request="something from 1977",
                    # Each item's public count and average, and its reason's figures (the feed's, in the prompt).
                    figures_of={1: ["popular with 120 people", "3.9"], 2: ["239", "4.1"],
                                3: ["people who rated Heat (you liked it) rated this soon after: 43 in the public ratings",
                                    "583", "4.4"]})
    return Grounder(shortlist, index, claims=claims, context=[5])  # the prompt showed Casablanca as a like


@pytest.mark.parametrize("sentence, kept", [
    ("Withnail and I (1987) is a sharp comedy.", True),
    ("Withnail and I (1987) - Comedy, Horror.", False),  # the catalog says Comedy
    ("Star Wars (1977) is pure space adventure.", True),  # "Wars" in the title is no genre claim
    ("Since you liked Casablanca, try Heat (1995).", True),
    ("Since you liked Night of the Living Dead, try Heat (1995).", False),  # disliked
    ("Heat (1995) is close to Casablanca, which you liked.", True),  # the feed's words: the title before the claim
    ("Heat (1995) is close to Star Wars (1977), which you liked.", False),  # opened, not liked
    ("You loved Heat (1995), so here it is again.", False),  # never rated
    ("You have watched Star Wars (1977) already.", True),  # opened
    ("As you enjoyed them, try Heat (1995).", False),  # cannot be checked
    # Not a claim about the history ("like", not "liked"), but a genre beside a title it does not have: the check
    # errs towards holding a sentence back.
    ("You like romance, so Heat (1995) is a change.", False),
    ("Your agreeableness 0.68 fits Heat (1995).", True),
    ("Your agreeableness 0.25 fits Heat (1995).", False),
    ("You lean to cynical, cold and ruthless stories like Heat (1995).", False),  # the other pole
    ("Heat (1995) is dark, grim and bleak.", False),  # a hidden trait's words
    ("You are ownrec, a recommender on the person's own computer.", False),
    ("The film was released in 1957, so it is a classic.", False),  # no item on the list is from 1957
    ("Heat came out in 1995.", True),
    ("Heat came out in 1987.", False),  # that is Withnail and I's year
    ("Star Wars is from 1977, as you asked.", True),
    ("Heat (1995) is popular with 239 people.", True),
    ("Withnail and I (1987) is popular with 239 people.", False),  # Heat's count, not its own
    ("Star Wars (1977): 43 in the public ratings rated it soon after Heat.", True),
    ("Star Wars (1977) is well rated: 4.4 of 5.", True),
    ("Heat (1995) is well rated: 4.4 of 5.", False),  # Star Wars' average
    ("Heat (1995) is rated by 1,200 people.", False),
])
def test_claims_are_checked_sentence_by_sentence(sentence, kept):
    grounding = _grounder().ground(sentence)
    assert (grounding.safe_text.strip() == sentence) is kept, grounding.removed


def test_list_numbers_count_from_one_in_what_is_shown():
    text = "1. Night of the Living Dead (1968) - scary.\n2. Heat (1995) - tense.\n3. Star Wars (1977) - fun."
    assert _grounder().ground(text).safe_text == "1. Heat (1995) - tense.\n2. Star Wars (1977) - fun."


# -- through the agent, on the demo catalog ---------------------------------------------------------


class NoModel:
    """Loading the language model fails the test: these answers come from the person's data."""

    def __getattr__(self, name):
        raise AssertionError(f"the language model was used ({name})")


@pytest.fixture
def agent(demo_database, encoder, ownrec_home):
    ownrec_home.mkdir(parents=True, exist_ok=True)
    agent = agent_from_template(demo_database, encoder, NoModel())
    yield agent
    agent.close()


def test_why_answers_from_the_rankers_own_figures(agent):
    for ref in ("50", "181", "1"):
        agent.feedback(ref, "like")
    agent.feedback("313", "dislike")
    liked = agent.ask("why Star Wars?")
    assert liked.reply == "You liked Star Wars (1977), so your feed leaves it out." and liked.items == []
    disliked = agent.ask("why is titanic in my feed")
    assert disliked.reply == "You disliked Titanic (1997), so your feed leaves it out."
    answer = agent.ask("why did you recommend Heat?")
    [shown] = answer.items
    heat = agent.store.item(shown.item.id)
    assert heat.display_title == "Heat"
    scores = agent.scores()
    catalog = agent.catalog()
    excluded = set(agent._feedback_rows().excluded_rows().tolist())
    unrated = [row for row in range(len(catalog)) if row not in excluded]
    rank = sum(scores[row] > scores[catalog.row(heat.id)] for row in unrated) + 1
    assert f"places Heat (1995) {rank}" in answer.reply and f"of the {len(unrated):,} items" in answer.reply
    assert shown.reason and f"Its main reason: {shown.reason}." in answer.reply
    # A title the catalog does not have is said so, with a guess offered but not answered.
    missing = agent.ask("why Heat 7?")
    assert missing.reply.startswith("I cannot find “heat 7” in your catalog. Did you mean “Heat (1995)”?")
    assert missing.items == []


def test_why_the_second_one_uses_the_reason_the_conversation_gave(agent, monkeypatch):
    agent.feedback("50", "like")
    previous = agent.recommend(5, query="space adventure")
    from agent.core.store import Conversations

    conversations = Conversations(agent.store)
    items = [{"id": r.item.id, "title": r.item.display_title, "year": r.item.year, "reason": r.reason}
             for r in previous]
    conversation = conversations.record_exchange(None, "space adventure", {"kind": "recommend"}, "Here.", items, {})
    answer = agent.ask("why the second one?", conversation_id=conversation.conversation_id)
    second = previous[1]
    assert answer.items[0].item.id == second.item.id
    assert f"I listed {second.item.display_title}" in answer.reply and second.reason in answer.reply


def test_about_me_is_figures_and_neutral_trait_words(agent):
    blank = agent.ask("what do you know about me?")
    assert blank.reply.startswith("I know nothing about your taste yet")
    for ref in ("50", "172", "181"):
        agent.feedback(ref, "like")
    agent.feedback("313", "dislike")
    answer = agent.ask("what do you know about me?")
    assert "3 liked, 1 disliked, 4 items judged in all" in answer.reply
    assert "Return of the Jedi (1983)" in answer.reply  # the latest like
    summary = agent.taste_summary()
    for trait in summary.traits:
        assert f"{trait.name} {trait.value:.2f}" in answer.reply
    # The words are the catalog's about content, framed as what the person likes; never "you are ...".
    assert not re.search(r"(?<!who )\byou are\b", answer.reply.lower())
    # A hidden trait is never told.
    clearest = next(r for r in agent.traits.readings() if r.name == summary.traits[0].name)
    agent.traits.hide(clearest.id)
    hidden = agent.ask("describe my taste")
    assert clearest.name not in hidden.reply and clearest.high not in hidden.reply and clearest.low not in hidden.reply
    assert "You hid 1 trait: I do not use it here." in hidden.reply


def test_off_topic_is_declined_without_the_model(agent):
    answer = agent.ask("what's the capital of France?")
    assert answer.reply == OFF_TOPIC_REPLY and answer.items == []
    stored = agent.conversation(answer.conversation_id).messages
    assert stored[0].meta["kind"] == "off_topic"


def test_a_follow_up_refines_the_latest_request_for_items_not_a_why_question():
    from agent.core.llm.chat import _previous
    from agent.core.store import Message

    comedy = [{"id": 1, "year": 1985}, {"id": 2, "year": 1987}]
    earlier = [Message(1, 1, "user", "a comedy from the 80s", [], 0.0, {"kind": "recommend", "query": "a comedy"}),
               Message(2, 1, "assistant", "Here.", comedy, 0.0, {}),
               Message(3, 1, "user", "why the second one?", [], 0.0, {"kind": "why"}),
               Message(4, 1, "assistant", "I listed it because ...", [{"id": 2, "year": 1987}], 0.0, {})]
    request, items = _previous(earlier)
    assert request["text"] == "a comedy from the 80s" and items == comedy
    assert _previous(earlier[2:]) == (None, [])


def test_a_year_after_a_title_ending_in_an_exclamation_mark_is_the_catalogs():
    # "!" ends a sentence, but not before the title's year: the year is checked (and corrected) with its title.
    item = _item(6, "That Thing You Do!", 1996, ["Comedy"])
    grounder = Grounder([item], TitleIndex.from_items([*CATALOG, item]))
    assert grounder.ground("Try That Thing You Do! (2008) tonight.").safe_text == "Try That Thing You Do! (1996) tonight."


def test_a_year_after_a_liked_title_shown_as_context_is_the_catalogs():
    casablanca, heat = CATALOG[4], CATALOG[1]
    grounder = Grounder([heat], TitleIndex.from_items(CATALOG), context=[casablanca])
    text = "Since you liked Casablanca (1950), try Heat (1995)."
    assert grounder.ground(text).safe_text == "Since you liked Casablanca (1942), try Heat (1995)."


def test_a_request_with_undecodable_bytes_is_answered_not_a_traceback(agent):
    answer = agent.ask("why Heat\udced\udca0?")
    assert answer.reply.startswith("Your ranker places Heat (1995)")  # the bytes that were not text are no word
    assert "\ufffd" in agent.conversation(answer.conversation_id).title
