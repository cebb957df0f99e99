"""The scripted sessions: simulated people on the demo catalog (MovieLens-100K item ids) and what each says
to the chat, conversation by conversation. Every request carries the kind of answer it should get, the
right source: "recommend" (the ranker's shortlist), "why" (the ranker's figures), "about_me" (the
person's own data), "off_topic" (declined, no items). Between requests a person may act on what they
were shown or on their traits, so that a pinned trait is seen to hold through feedback, an edit of another
trait and a retrain."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ask:
    text: str
    kind: str  # the right source
    avoid: tuple[str, ...] = ()  # genres no shown item may have ("nothing scary")


@dataclass(frozen=True)
class Act:
    """Something the person does between requests: "like" / "dislike" the shown item at `index`,
    "edit" a trait other than the pinned one by `step`, "retrain"."""

    action: str
    index: int = 0
    step: float = 0.1


@dataclass(frozen=True)
class SimulatedPerson:
    name: str
    likes: tuple[int, ...]
    dislikes: tuple[int, ...]
    pinned: str | None
    hidden: str | None
    edited: str  # the trait edited during the session and by +0.3 at the end (never the pinned one)
    conversations: tuple[tuple[Ask | Act, ...], ...] = field(default=())
    seed: int = 0


SCI_FI = SimulatedPerson(
    "sci-fi fan", likes=(50, 172, 181, 82, 195, 89), dislikes=(313, 88), pinned="Fast-paced", hidden="Dark",
    edited="Cerebral", seed=1, conversations=(
        (Ask("something like Alien but less scary", "recommend", avoid=("Horror",)),
         Ask("something older", "recommend", avoid=("Horror",)),
         Ask("why the second one?", "why"),
         Act("like", 0)),
        (Ask("a space adventure from the 80s", "recommend"),
         Ask("why number 3", "why"),
         Ask("but nothing with war in it", "recommend", avoid=("War",)),
         Act("dislike", 1)),
        (Ask("what do you know about me?", "about_me"),
         Ask("why Star Wars?", "why"),
         Ask("why is titanic in my feed", "why"),
         Ask("why Heat 7?", "why"),
         Ask("hello", "off_topic"),
         Act("edit", step=0.1),
         Ask("what's the capital of France?", "off_topic"),
         Ask("recomend me a sci-fi movei", "recommend"),
         Act("retrain"),
         Ask("why is Blade Runner in my feed", "why"),
         Ask("a thriller from the 90s", "recommend"),
         Ask("describe my taste", "about_me")),
    ))

COMEDY = SimulatedPerson(
    "comedy and romance fan", likes=(202, 216, 70, 514, 173, 168), dislikes=(200, 219), pinned="Agreeableness",
    hidden="Neuroticism", edited="Extraversion", seed=2, conversations=(
        (Ask("something funny from the 80s", "recommend"),
         Ask("nothing scary please", "recommend", avoid=("Horror",)),
         Ask("why the first one?", "why"),
         Act("like", 0),
         Ask("a romantic comedy", "recommend")),
        (Ask("why Groundhog Day?", "why"),
         Ask("an old western", "recommend"),
         Ask("a musical for kids", "recommend"),
         Act("edit", step=-0.1),
         Ask("how do I bake bread?", "off_topic"),
         Ask("thanks!", "off_topic"),
         Ask("who directed Casablanca?", "off_topic"),
         Act("retrain"),
         Ask("what have you learned about me?", "about_me"),
         Ask("tell me a joke", "off_topic"),
         Ask("a film for a rainy sunday", "recommend"),
         Ask("a comedy but not a romance", "recommend", avoid=("Romance",)),
         Ask("why the last one", "why")),
    ))

CRIME = SimulatedPerson(
    "crime and thriller fan", likes=(100, 127, 98, 23, 144, 273), dislikes=(95, 71), pinned="Cerebral",
    hidden="Niche", edited="Dark", seed=3, conversations=(
        (Ask("a gritty crime drama", "recommend"),
         Ask("something like Heat", "recommend"),
         Ask("but newer", "recommend"),
         Ask("why the last one?", "why"),
         Act("like", 1)),
        (Ask("why Fargo", "why"),
         Ask("how come you picked The Godfather", "why"),
         Ask("a documentary", "recommend"),
         Ask("movies from the 1950s", "recommend"),
         Ask("no horror, no comedy, something tense", "recommend", avoid=("Horror", "Comedy")),
         Act("edit", step=0.1),
         Ask("what is 2+2?", "off_topic"),
         Ask("good morning", "off_topic"),
         Ask("a tense thriller thats not too long", "recommend"),
         Ask("why number 9", "why"),
         Act("retrain"),
         Ask("anything with Tom Hanks", "recommend"),
         Ask("what do you think of me", "about_me")),
    ))

NEWCOMER = SimulatedPerson(
    "newcomer", likes=(), dislikes=(), pinned=None, hidden=None, edited="Openness", seed=4, conversations=(
        (Ask("what do you know about me?", "about_me"),
         Ask("hi there", "off_topic"),
         Ask("a feel-good animated film", "recommend"),
         Ask("why the first one?", "why"),
         Act("like", 0),
         Ask("recommend something for tonight", "recommend")),
    ))

PEOPLE = (SCI_FI, COMEDY, CRIME, NEWCOMER)


def requests_of(people=PEOPLE) -> int:
    return sum(isinstance(step, Ask) for p in people for c in p.conversations for step in c)
