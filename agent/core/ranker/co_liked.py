"""What people went on to like: a public item-to-item signal for the person's latest likes.

From public interactions in the order each person made them (the demo: the public MovieLens ratings by
time), item j is followed by item i when someone liked i within WINDOW likes after j; each such pair counts
STEP_DECAY ** (steps between them - 1), and the sum is divided by sqrt(n_j n_i), the two items' numbers of
public raters (so that two blockbusters are not neighbours merely for being everywhere), and times
n_j / (n_j + CONFIDENCE), how much the data knows of what follows j. Each item keeps
its NEIGHBOURS strongest followers, with how many distinct people made the pair (an explanation says that
number, a fact of the public data).

At scoring time the person's latest CO_LIKED_ITEMS likes (the newest weighs 1, each older one
CO_LIKED_DECAY times the one after it) sum their followers' weights into a term t over the catalog, which
`Scorer.steer` adds to the score at CO_LIKED_WEIGHT times the spread of the person's own scores over t's
spread: a fixed share of the ranking whatever the scale of their model. Nothing personal goes into the
table, and nothing is trained or shared for the term. Why: the next film someone picks is far likelier to be
one that others picked right after the films they just picked than the text or a taste vector can tell.
The constants were chosen on MovieLens-100K's validation items only (EVALUATION.md).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

WINDOW = 5             # a like "follows" one of the 5 likes before it
STEP_DECAY = 0.8       # ... counting less the further back that one is
NEIGHBOURS = 100       # followers kept per item
CONFIDENCE = 100.0     # an item's followers count at raters / (raters + CONFIDENCE): a film 5 people rated says little
CO_LIKED_ITEMS = 8     # the latest likes that steer by it
CO_LIKED_DECAY = 0.6   # each older like weighs this much of the next one
CO_LIKED_WEIGHT = 0.2  # its share of the ranking: t's spread is scaled to this times the scores' spread


@dataclass(frozen=True)
class CoLikedTerm:
    """The term a person's latest likes add to every catalog row's score (`values`), and what it came from."""

    values: np.ndarray  # (n,) float32, already at its share of the ranking once `Scorer.steer` has scaled it
    latest: np.ndarray  # the likes' catalog rows, oldest first
    mix: np.ndarray     # the weight of each in `values`

    def scaled(self, factor: float) -> "CoLikedTerm":
        return CoLikedTerm((self.values * factor).astype(np.float32), self.latest, self.mix * factor)


@dataclass(frozen=True)
class CoLiked:
    """Per catalog row, its followers in the public data (CSR: `indptr` into `followers`, `weights`, `people`)."""

    indptr: np.ndarray     # (n + 1,) int64
    followers: np.ndarray  # (nnz,) int64 catalog rows
    weights: np.ndarray    # (nnz,) float32
    people: np.ndarray     # (nnz,) int32: distinct people who liked the row, then the follower

    @property
    def size(self) -> int:
        return len(self.indptr) - 1

    @property
    def followed_items(self) -> int:
        """How many items have at least one follower."""
        return int(np.count_nonzero(np.diff(self.indptr)))

    def of(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        start, end = self.indptr[row], self.indptr[row + 1]
        return self.followers[start:end], self.weights[start:end], self.people[start:end]

    def pair(self, row: int, follower: int) -> tuple[float, int]:
        """The weight of `follower` after `row`, and how many people made the pair (0, 0 if none)."""
        followers, weights, people = self.of(row)
        hit = np.flatnonzero(followers == follower)
        return (float(weights[hit[0]]), int(people[hit[0]])) if len(hit) else (0.0, 0)

    def term(self, latest_rows: np.ndarray) -> "CoLikedTerm":
        """t over the catalog for the person's latest likes (catalog rows, oldest first; the last
        CO_LIKED_ITEMS count), unscaled."""
        latest = np.asarray(latest_rows, np.int64)[-CO_LIKED_ITEMS:]
        mix = CO_LIKED_DECAY ** np.arange(len(latest) - 1, -1, -1, dtype=np.float64)
        mix /= mix.sum()
        t = np.zeros(self.size, np.float64)
        for row, share in zip(latest.tolist(), mix.tolist()):
            followers, weights, _ = self.of(row)
            np.add.at(t, followers, share * weights)
        return CoLikedTerm(t.astype(np.float32), latest, mix)

    def to_bytes(self, refs: list[str]) -> bytes:
        """The table keyed by item refs (`source:external_id`), so that it outlives catalog row numbers."""
        buffer = io.BytesIO()
        np.savez(buffer, refs=np.array(refs, dtype=str), indptr=self.indptr, followers=self.followers,
                 weights=self.weights, people=self.people)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, refs: list[str]) -> "CoLiked":
        """The stored table over a catalog whose rows are `refs`: pairs with an item it no longer has are left out.
        ValueError if the bytes are not such a table."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                stored = [str(ref) for ref in npz["refs"]]
                indptr, followers = npz["indptr"].astype(np.int64), npz["followers"].astype(np.int64)
                weights, people = npz["weights"].astype(np.float32), npz["people"].astype(np.int32)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"not a table of what people went on to like ({type(error).__name__})") from None
        if (len(indptr) != len(stored) + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0)
                or indptr[-1] != len(followers) or not (len(followers) == len(weights) == len(people))
                or (len(followers) and (followers.min() < 0 or followers.max() >= len(stored)))
                or not np.all(np.isfinite(weights))):
            raise ValueError("a table of what people went on to like with inconsistent parts")
        where = {ref: row for row, ref in enumerate(refs)}
        row_of = np.array([where.get(ref, -1) for ref in stored], np.int64)
        source = np.repeat(row_of, np.diff(indptr))
        target = row_of[followers] if len(followers) else followers
        keep = (source >= 0) & (target >= 0)
        return _table(len(refs), source[keep], target[keep], weights[keep], people[keep])


def _table(n: int, source: np.ndarray, target: np.ndarray, weights: np.ndarray, people: np.ndarray) -> CoLiked:
    order = np.lexsort((-weights, source))  # by source row, strongest first
    source, target, weights, people = source[order], target[order], weights[order], people[order]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(source, minlength=n), out=indptr[1:])
    return CoLiked(indptr, target.astype(np.int64), weights.astype(np.float32), people.astype(np.int32))


def build_co_liked(person: np.ndarray, row: np.ndarray, n: int) -> CoLiked:
    """The table from public interactions: parallel arrays of person and catalog row, each person's in the
    order they made them (a person's rows need not be contiguous; their relative order is kept)."""
    person, row = np.asarray(person, np.int64), np.asarray(row, np.int64)
    order = np.argsort(person, kind="stable")
    person, row = person[order], row[order]
    raters = np.bincount(row, minlength=n).astype(np.float64)
    keys, amounts = [], []
    for step in range(1, WINDOW + 1):
        same = person[:-step] == person[step:]
        before, after = row[:-step][same], row[step:][same]
        different = before != after
        keys.append(before[different] * n + after[different])
        amounts.append(np.full(int(different.sum()), STEP_DECAY ** (step - 1)))
    if not keys or not sum(len(k) for k in keys):
        return _table(n, *(np.zeros(0, np.int64),) * 2, np.zeros(0, np.float32), np.zeros(0, np.int32))
    key, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    amount = np.bincount(inverse, np.concatenate(amounts))
    people = np.bincount(inverse)  # a person likes an item once, so a pair comes once per person
    source, target = key // n, key % n
    weight = amount / np.sqrt(raters[source] * raters[target]) * raters[source] / (raters[source] + CONFIDENCE)
    order = np.lexsort((-weight, source))
    source, target, weight, people = source[order], target[order], weight[order], people[order]
    first = np.searchsorted(source, source, side="left")
    keep = (np.arange(len(source)) - first) < NEIGHBOURS
    return _table(n, source[keep], target[keep], weight[keep].astype(np.float32), people[keep].astype(np.int32))
