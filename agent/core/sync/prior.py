"""Release 0: the public prior for this device's catalog, built on the device from public interactions.

`build_release_zero` learns phi_g (agent.core.ranker.prior) from who-rated-what in public data over the
catalog's items, in a shared layout of its own (A_g and W_v drawn from a fixed seed; the vocabulary is
the catalog's items that someone in the data interacted with), and returns it as a `Prior`
(agent.federation.prior): the file a coordinator can start from. Nothing personal goes into it: the
person's own feedback is never read here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from agent.core.ranker.adapters import DEFAULT_SIGNAL_WEIGHTS
from agent.core.ranker.co_liked import CoLiked, build_co_liked
from agent.core.ranker.model import Catalog
from agent.core.ranker.prior import PriorSettings, PublicInteractions, build_prior
from agent.core.sync.parameters import flatten
from agent.federation.layout import SharedLayout
from agent.federation.prior import Prior

Progress = Callable[[int, int], None]

# The shape of release 0: the coordinator's default layout (agent.server.app.default_layout).
RANK = 16
RESIDUAL_RANK = 32
LAYOUT_SEED = 20_261_204  # A_g and W_v are fixed random projections; a fixed seed makes the build repeatable
MIN_PEOPLE = 20           # below this, public data says too little about the items to be worth a prior


class PriorUnavailable(ValueError):
    """The public data cannot make a prior for this catalog (too little of it overlaps the catalog)."""


def build_release_zero(catalog: Catalog, interactions: Iterable[tuple[object, str]], source: str,
                       settings: PriorSettings = PriorSettings(), progress: Progress | None = None,
                       encoder: str = "") -> Prior:
    """A prior for `catalog` from (person, item ref) interactions: every interaction is a positive,
    as in implicit-feedback training. Interactions with items outside the catalog are left out. `encoder`, the
    id of the text encoder that made the catalog's vectors, is recorded in the header."""
    public, outside = catalog_interactions(catalog, interactions)
    if public.people < MIN_PEOPLE:
        raise PriorUnavailable(f"{source}: {public.people} people interacted with items of this catalog; a prior "
                               f"needs at least {MIN_PEOPLE}")
    covered = np.unique(public.row)
    layout = SharedLayout.create(catalog.dim, RANK, [catalog.refs[r] for r in covered],
                                 np.random.default_rng(LAYOUT_SEED), residual_rank=RESIDUAL_RANK)
    started = time.perf_counter()
    offset = catalog.signals @ np.asarray(DEFAULT_SIGNAL_WEIGHTS, np.float32)
    adapter = build_prior(catalog, public, layout.projection, layout.residual_basis, settings,
                          signal_offset=offset, progress=progress)
    header = {"source": source, "people": public.people, "interactions": int(len(public.person)),
              "items": int(len(covered)), "catalog_items": len(catalog), "outside_catalog": outside,
              "epochs": settings.epochs, "seconds": round(time.perf_counter() - started, 1),
              "built_at": time.time(), "signal_weights": list(DEFAULT_SIGNAL_WEIGHTS), "encoder": encoder}
    return Prior(layout, flatten(layout, adapter), header)


def catalog_interactions(catalog: Catalog, interactions: Iterable[tuple[object, str]]) -> tuple[PublicInteractions, int]:
    """(person, item ref) interactions as `PublicInteractions` over the catalog's rows, in their order, and how
    many were with items outside the catalog (left out)."""
    pairs = []
    outside = 0
    for person, ref in interactions:
        row = catalog.row_of_ref(ref)
        if row is None:
            outside += 1
        else:
            pairs.append((person, row))
    return PublicInteractions.from_pairs(pairs), outside


def public_co_liked(catalog: Catalog, interactions: Iterable[tuple[object, str]]) -> CoLiked:
    """What people went on to like after each catalog item (agent.core.ranker.co_liked), from the same
    (person, item ref) interactions as release 0, in the order they were made."""
    public, _ = catalog_interactions(catalog, interactions)
    return build_co_liked(public.person, public.row, len(catalog))
