"""MovieLens-100K as plain data, and the PFedRec leave-one-out protocol over it.

The data is read from the installed recbole package through the demo importer (never copied: the
MovieLens terms forbid redistribution). Items come in the order of the federation's vocabulary
(`movielens-100k:1` .. `movielens-100k:1682`, as the coordinator's default `SharedLayout`), so an
item's row here is its slot in the shared item biases and its ref matches the product's catalog
(`source:external_id`).

The protocol (PFedRec's code): every rating is an implicit
positive. Per user, by time (ties in the order of the ratings file, as PFedRec's code; see
`split_by_time`), the latest interaction is the test item, the one before it the validation item, the rest is training
(`split_by_time`). Each held-out item is ranked

- sampled: among 99 items the user never interacted with (train, validation or test), drawn per
  user and split by `numpy.random.default_rng([seed, user_id, split_index])` (split_index 0 for
  validation, 1 for test), the same for every model; and
- full: among every item but the user's training items (for the test item also the validation
  item). The held-out item is a candidate of both; for the validation item the test item is too.

`agent.lab.evaluation.rerank` uses the same split and the same negatives rule, so its figures and
these agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NEGATIVES = 99
SPLITS = ("validation", "test")
SOURCE = "movielens-100k"


# -- the split (shared with agent.lab.evaluation.rerank) -------------------------------------------


@dataclass(frozen=True)
class EvalUser:
    user_id: int
    train: tuple[tuple[str, float, float], ...]  # (MovieLens item id, stars, timestamp), oldest first
    validation: str
    test: str

    @property
    def rated(self) -> set[str]:
        return {item for item, _, _ in self.train} | {self.validation, self.test}


def _item_key(item: str) -> tuple[int, int | str]:
    return (0, int(item)) if item.isdigit() else (1, item)


def split_by_time(ratings: list[tuple[int, str, float, float]]) -> dict[int, EvalUser]:
    """Per user, by time: the last rating is the test item, the one before the validation item.
    Ratings with the same timestamp keep their order in `ratings` (for MovieLens, the file's order:
    pandas' rank(method="first"), as in PFedRec's code). Users with fewer than 3 ratings are left
    out (MovieLens-100K has none).

    Why not ties by item id: 415 of the 943 users rated several films in their last second, and
    MovieLens's ids run from popular to obscure (1,682 films, a mean of 156 ratings for ids 1-300,
    2 for ids 1501-1682), so the highest id among the tied films -- a less popular one -- would
    always become the test item: popularity's test HR@10 falls from 0.424 to 0.327 and every
    model is measured on rarer items than PFedRec's."""
    by_user: dict[int, list[tuple[str, float, float]]] = {}
    for user, item, stars, at in ratings:
        by_user.setdefault(user, []).append((item, stars, at))
    users = {}
    for user, rows in by_user.items():
        rows.sort(key=lambda r: r[2])  # stable: ties keep the input order
        if len(rows) >= 3:
            users[user] = EvalUser(user, tuple(rows[:-2]), rows[-2][0], rows[-1][0])
    return users


def choose_users(users: dict[int, EvalUser], count: int, seed: int) -> list[EvalUser]:
    """A fixed random subset of `count` users for `seed`, in user-id order."""
    ids = sorted(users)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(ids, size=min(count, len(ids)), replace=False).tolist())
    return [users[int(i)] for i in chosen]


def sample_negatives(never_interacted: np.ndarray, user_id: int, split_index: int, seed: int,
                     count: int = NEGATIVES) -> np.ndarray:
    """`count` of the (ascending) item rows a user never interacted with, for one held-out item:
    the one rule for every model and every evaluation."""
    rng = np.random.default_rng([seed, user_id, split_index])
    return rng.choice(never_interacted, size=count, replace=False)


# -- the data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    id: int
    age: int
    gender: str  # "M" or "F"
    occupation: str


@dataclass(frozen=True)
class Item:
    id: str  # MovieLens item id ("1" .. "1682")
    ref: str  # "movielens-100k:<id>", the catalog's and the federation's name for it
    title: str  # MovieLens spelling ("Usual Suspects, The")
    text: str  # what the product encodes ("The Usual Suspects (1995). Crime, Thriller.")
    year: int | None = None  # release year, from the item file (public catalog data)


@dataclass(frozen=True)
class MovieLens:
    users: tuple[User, ...]  # by id
    items: tuple[Item, ...]  # in the federation's vocabulary order (by numeric id)
    ratings: tuple[tuple[int, str, float, float], ...]  # (user id, item id, stars, timestamp), file order

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(item.ref for item in self.items)


@lru_cache(maxsize=1)
def load_movielens() -> MovieLens:
    """MovieLens-100K from the installed recbole package (943 users, 1,682 items, 100,000
    ratings). Cached: the result is immutable."""
    from agent.core.importers.demo import dataset_file, movielens_ratings, movielens_users, parse_items

    items = []
    for row in parse_items(dataset_file("item")):
        item = getattr(row, "item", None)
        if item is None:
            raise ValueError(f"the MovieLens item file has a bad row: {row}")
        items.append(Item(item.external_id, f"{item.source}:{item.external_id}", item.title, item.text,
                          item.metadata.get("year")))
    items.sort(key=lambda item: _item_key(item.id))
    users = tuple(User(uid, int(u["age"]), str(u["gender"]), str(u["occupation"]))
                  for uid, u in sorted(movielens_users().items()))
    return MovieLens(users, tuple(items), tuple(movielens_ratings()))


# -- the protocol ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Protocol:
    """The leave-one-out split of a dataset as arrays. Users are rows 0..U-1 (by id), items rows
    0..I-1 (the dataset's item order)."""

    user_ids: np.ndarray  # (U,) the user id of each row
    item_count: int
    train_user: np.ndarray  # (N,) user row of each training interaction; by user, then time
    train_item: np.ndarray  # (N,) item row
    train_rating: np.ndarray  # (N,) stars
    train_time: np.ndarray  # (N,) timestamp
    validation: np.ndarray  # (U,) item row of the validation item
    test: np.ndarray  # (U,) item row of the test item
    validation_negatives: np.ndarray  # (U, 99) item rows
    test_negatives: np.ndarray  # (U, 99)
    seed: int

    @property
    def user_count(self) -> int:
        return len(self.user_ids)

    def target(self, split: str) -> np.ndarray:
        """(U,) the held-out item row of every user for "validation" or "test"."""
        return {"validation": self.validation, "test": self.test}[split]

    def negatives(self, split: str) -> np.ndarray:
        return {"validation": self.validation_negatives, "test": self.test_negatives}[split]

    def sampled_candidates(self, split: str) -> np.ndarray:
        """(U, 100): the 99 negatives, then the held-out item."""
        return np.concatenate([self.negatives(split), self.target(split)[:, None]], axis=1)

    def train_matrix(self) -> np.ndarray:
        """(U, I) bool: True where the user has a training interaction."""
        seen = np.zeros((self.user_count, self.item_count), dtype=bool)
        seen[self.train_user, self.train_item] = True
        return seen

    def full_candidates(self, split: str) -> np.ndarray:
        """(U, I) bool: the items the held-out item is ranked among in full ranking (it included):
        all but the training items, and for the test item also the validation item."""
        candidates = ~self.train_matrix()
        rows = np.arange(self.user_count)
        if split == "test":
            candidates[rows, self.validation] = False
        candidates[rows, self.target(split)] = True
        return candidates

    def train_items(self, user_row: int) -> np.ndarray:
        """The item rows of one user's training interactions, oldest first."""
        start, end = np.searchsorted(self.train_user, [user_row, user_row + 1])
        return self.train_item[start:end]

    def choose_rows(self, count: int, seed: int) -> np.ndarray:
        """A fixed random subset of user rows: the same users `choose_users` picks for `seed`."""
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(self.user_ids, size=min(count, self.user_count), replace=False))
        return np.searchsorted(self.user_ids, chosen)


def leave_one_out(data: MovieLens, seed: int = 0, negatives: int = NEGATIVES) -> Protocol:
    """The PFedRec split of `data` (module docstring), with `negatives` sampled negatives per
    held-out item drawn with `seed`."""
    row_of = {item.id: row for row, item in enumerate(data.items)}
    n = len(data.items)
    users = split_by_time([r for r in data.ratings if r[1] in row_of])
    ids = np.array(sorted(users), dtype=np.int64)
    tu, ti, tr, tt = [], [], [], []
    validation = np.empty(len(ids), np.int64)
    test = np.empty(len(ids), np.int64)
    negs = np.empty((2, len(ids), negatives), np.int64)
    for u, uid in enumerate(ids.tolist()):
        user = users[uid]
        train_rows = [row_of[item] for item, _, _ in user.train]
        tu += [u] * len(train_rows)
        ti += train_rows
        tr += [stars for _, stars, _ in user.train]
        tt += [at for _, _, at in user.train]
        validation[u], test[u] = row_of[user.validation], row_of[user.test]
        never = np.setdiff1d(np.arange(n), np.array(train_rows + [validation[u], test[u]], np.int64))
        if len(never) < negatives:
            raise ValueError(f"user {uid} has only {len(never)} items to draw {negatives} negatives from")
        for split_index in range(2):
            negs[split_index, u] = sample_negatives(never, uid, split_index, seed, negatives)
    return Protocol(ids, n, np.array(tu, np.int64), np.array(ti, np.int64), np.array(tr, np.float64),
                    np.array(tt, np.float64), validation, test, negs[0], negs[1], seed)


__all__ = ["NEGATIVES", "SOURCE", "SPLITS", "EvalUser", "Item", "MovieLens", "Protocol", "User", "choose_users",
           "leave_one_out", "load_movielens", "sample_negatives", "split_by_time"]
