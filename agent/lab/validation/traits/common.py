"""What the four checks share: their settings, the yardsticks fixed in advance (`PROXIES`), small statistics,
and the `Context` of a run (the temporary folder, the demo template, the catalog's MovieLens facts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.lab import people

Log = Callable[[str], None]

POLE_SHARE = 0.10  # pole items: the top (bottom) 10% of the catalog on the trait's axis
POLE_LIKES = 20
POLE_DISLIKES = 10
PASS_HIGH, PASS_LOW = 0.8, 0.2
EDIT_STEP = 0.3  # (c) and (d): how far one trait is set
EDIT_BOUNDS = (0.05, 0.95)
LIKED_STARS = 4.0  # (b): a film counts as liked at 4 or 5 stars
BOOTSTRAP = 2000
FEED_SIZE = 50
DARK_GENRES = ("Horror", "Thriller", "Crime", "Film-Noir")
MIXED_GENRES = ("Action", "Comedy", "Drama", "Romance", "Thriller", "Sci-Fi", "Children's", "Crime", "Horror",
                "Documentary", "Musical", "War")  # (d): two liked films from each


@dataclass(frozen=True)
class Proxy:
    """What a trait should track in MovieLens, fixed before looking at any result.

    `high`/`low`: genres of the trait's two poles; the statistic is the share of a user's liked
    films carrying any `high` genre, and, as a second look, that share minus the share carrying any
    `low` genre. `popularity`: the statistic is minus the mean log number of ratings of the liked
    films (higher = less mainstream)."""

    statistic: str  # "genres" or "popularity"
    why: str
    high: tuple[str, ...] = ()
    low: tuple[str, ...] = ()
    second: str = "contrast"  # "contrast" (high share - low share), "entropy" or "long_tail"


# The a-priori mapping, written before any result was computed with it (during development only
# the dark share had been looked at, on 60 users). Conscientiousness has no genre stand-in.
PROXIES: dict[str, Proxy] = {
    "dark": Proxy("genres", "grim, violent, frightening: the genres of crime and fear", DARK_GENRES,
                  ("Comedy", "Children's", "Musical", "Animation")),
    "fast_paced": Proxy("genres", "action-packed, chases, adventure", ("Action", "Adventure", "Thriller"),
                        ("Drama", "Romance")),
    "factual": Proxy("genres", "true stories and history; MovieLens has Documentary, and War films are mostly "
                     "historical", ("Documentary", "War"), ("Fantasy", "Sci-Fi", "Children's")),
    "cerebral": Proxy("genres", "thought and dialogue over physical spectacle", ("Drama", "Film-Noir", "Mystery"),
                      ("Action", "Horror")),
    "niche": Proxy("popularity", "mainstream is what everyone rated: the number of ratings a film has is the "
                   "natural measure", second="long_tail"),
    "openness": Proxy("popularity", "MovieLens has no art-house genre; the crowd-pleaser pole is popularity. Second "
                      "look: the variety of genres liked (entropy), the usual behavioural correlate of openness",
                      second="entropy"),
    "agreeableness": Proxy("genres", "warmth, family and kindness on screen", ("Children's", "Animation", "Musical",
                           "Romance"), ("Crime", "Thriller", "Film-Noir")),
    "neuroticism": Proxy("genres", "tension, dread and fear", ("Horror", "Thriller"), ("Comedy", "Children's")),
    "extraversion": Proxy("genres", "loud, social, musical spectacle; a weak stand-in (genres say little about "
                          "sociability)", ("Musical", "Comedy"), ("Drama",)),
}
LONG_TAIL_RANK = 500  # "long_tail": share of liked films outside the 500 most-rated


# -- small statistics ---------------------------------------------------------------------------


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties sharing their mean rank (for Spearman)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    ranks = np.empty(len(values), np.float64)
    start = 0
    while start < len(values):
        stop = start + 1
        while stop < len(values) and ordered[stop] == ordered[start]:
            stop += 1
        ranks[order[start:stop]] = (start + stop - 1) / 2.0
        start = stop
    return ranks


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of x and y (2-d, same shape)."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denominator = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=1) / denominator


def correlation(x: np.ndarray, y: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP) -> dict[str, Any]:
    """Pearson and Spearman r with percentile-bootstrap 95% intervals (pairs with a NaN dropped).
    The Spearman interval resamples the full-sample ranks (close to re-ranking at these sizes)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    if n < 3 or x.std() == 0 or y.std() == 0:
        return {"n": n, "pearson": None, "pearson_ci": None, "spearman": None, "spearman_ci": None}
    rx, ry = _ranks(x), _ranks(y)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    result: dict[str, Any] = {"n": n}
    for name, a, b in (("pearson", x, y), ("spearman", rx, ry)):
        boot = _pearson_rows(a[idx], b[idx])
        boot = boot[np.isfinite(boot)]
        result[name] = rounded(float(np.corrcoef(a, b)[0, 1]))
        result[f"{name}_ci"] = [rounded(float(np.percentile(boot, 2.5))),
                                rounded(float(np.percentile(boot, 97.5)))]
    return result


def rounded(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def summary(values) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    return {"mean": rounded(values.mean()), "min": rounded(values.min()), "max": rounded(values.max()),
            "n": int(len(values))}


# -- the run's shared state ------------------------------------------------------------------------


@dataclass
class Context:
    """Everything the checks share: the temporary home, a template database with the demo catalog
    encoded, the encoder, and per catalog row the MovieLens facts (genres, popularity)."""

    home: Path
    template: Path
    encoder: Any
    ids: np.ndarray  # catalog row -> local item id
    external: list[str]  # catalog row -> MovieLens item id
    genres: list[tuple[str, ...]]
    popularity: np.ndarray  # number of ratings per catalog row
    percentiles: np.ndarray  # (n, K) each row's place on each trait axis (a fresh person's space)
    trait_ids: list[str]
    seed: int

    def has_genre(self, names) -> np.ndarray:
        names = set(names)
        return np.array([bool(names.intersection(g)) for g in self.genres])

    def person(self, name: str, seed: int):
        """An Agent on a fresh copy of the template, in its own folder under the temporary home."""
        return people.person(self.home, self.template, self.encoder, name, seed)
