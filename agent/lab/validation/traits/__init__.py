"""`ownrec traits validate`: do the traits measure what they claim? Figures for EVALUATION.md.

Four checks, all in a temporary folder (never the person's own) with the real encoder and the MovieLens-100K demo
catalog, each simulated person an Agent on a copy of one demo template (`agent.lab.people`):

(a) Pole users (`poles`). A simulated user likes 20 random items from the top 10% of one trait's axis (and,
    in a second variant, also dislikes 10 from the bottom 10%); the feedback goes through
    `Agent.feedback` and `Agent.retrain`, the reading through `Traits.readings`. The trait should
    read >= 0.8 (<= 0.2 for the other pole).
(b) Real users (`movielens`). Each of the 943 MovieLens users gets a personal adapter trained on their own
    ratings only (the product's `fit` and labels), and their trait values are correlated across
    users with a genre statistic of the films they liked, chosen per trait in advance (`PROXIES`, in `common`).
(c) Edit independence (`edits`, and through the agent in `feed`). Setting one trait by 0.3 the product's way
    (`TraitSpace.move_to`, and through `Traits.set`), against a naive push of p along the trait's own axis: how
    far the other traits move, and how much of the person's scores each edit rewrites.
(d) An edit's effect on the feed (`feed`): raise "dark" by 0.3 with `Traits.set` for a user of mixed taste
    and see how far darker items move up.

`run_validation` (`run`) returns plain JSON-able data; `write_report` (`report`) replaces only its own section of
EVALUATION.md (between the `traits` markers), so other commands can own other sections. The per-user training of
(b) runs in spawned worker processes (one BLAS thread each); call it from a script with an
`if __name__ == "__main__":` guard, as multiprocessing requires.
"""

from agent.lab.validation.traits.common import PROXIES, Proxy, correlation
from agent.lab.validation.traits.edits import edit_effects
from agent.lab.validation.traits.report import BEGIN, END, to_markdown, write_report
from agent.lab.validation.traits.run import run_validation

__all__ = ["BEGIN", "END", "PROXIES", "Proxy", "correlation", "edit_effects", "run_validation", "to_markdown",
           "write_report"]
