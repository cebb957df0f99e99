"""Never worse for joining: before the feed uses a new global release, this device checks it against the
person's own recent likes, and adopts it, adopts part of it (a blend), or keeps the version in use.

What is held out, and why the check is honest. The held-out items are the person's latest likes by the one
rule (`ranker.feedback.judgement`, through `recent_likes`): the newest HELD_OUT_MAX of them, at most one
like in HELD_OUT_SHARE, and only when that makes at least MIN_HELD_OUT. They are
  - never uploaded: `upload_labels` leaves them out of what a round trains the shared delta on. Being the
    newest likes, each was either held out too or not yet liked whenever an earlier round ran, so no
    release this device contributed to has seen them;
  - not in the personal adapter the check scores with: that is refitted from the person's taste prior on
    every other label (`ranker.training.fit`), under the version in use;
  - not steering: the latest likes that steer the feed (`Scorer.steer`) are taken from the likes before them.
Each held-out like is ranked among the catalog's unrated items (what the feed could show), under the version
in use and under the candidate, with the same refitted personal adapter. Two figures decide: the share of
unrated items a held-out like outranks, on average (it falls when noise scatters them, even when a few of
them rise by chance), and their mean reciprocal rank (MRR: how near the top they are); how many land in the
top TOP is shown beside them. The candidate's other contributors never saw these items. Refitting under the
version in use favours keeping it: the check errs towards keeping. Pinned and hidden traits are left out of
the check's scoring (they would change both versions alike).

The decision, for the newest stored release not yet decided on:
  1. too few likes to hold out MIN_HELD_OUT: keep the version in use if the device has release 0 (its public
     prior) and the release is in another layout (not built on it: nothing says it is better); else adopt
     the release only if its signed figures show that its noise was no larger than any signal it could carry
     (`NoiseCheck`, recomputed here from them), or it has no noise at all (the coordinator's starting
     point); otherwise keep the version in use;
  2. adopt it if it does not hurt: the share outranked falls by at most SHARE_TOLERANCE and the MRR by at
     most MRR_TOLERANCE of the version in use's. A release whose signed figures show more noise than any
     signal it could carry is never taken whole, whatever the held-out likes say (a handful of them can
     rise by chance under noise alone): at most the share cap = signal bound / noise norm of its change,
     which carries no more noise than that bound;
  3. else adopt the blend in_use + t * (release - in_use), t = cap and cap times each of BLENDS, with the
     largest share outranked among those that do not hurt;
  4. else keep the version in use.
A release that is kept out is not tried again: the next one is judged against the version in use.

What is in use is never a vector read from disk as if signed: it is a chain of (version, t) steps over
signed releases (`InUse`), kept in the store's state (ADOPTED_STATE) and recomputed from releases that
verify and, for a chain that starts with a blend, from the release 0 it started from (`compose`). Every decision is an event (EVENT) with its figures, and
`ownrec sync log` shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.core.ranker import (Catalog, GlobalAdapter, PersonalAdapter, Scorer, TrainingSettings, fit,
                               preference_labels, recent_likes)
from agent.core.store import Interaction
from agent.core.sync.parameters import unflatten
from agent.federation.clipping import DistributedNoise, NoiseCheck
from agent.federation.errors import SyncError

if TYPE_CHECKING:
    from agent.core.store import Store
    from agent.core.sync.client import CoordinatorPin
    from agent.federation.layout import SharedLayout
    from agent.federation.prior import Prior
    from agent.federation.signing import Release

HELD_OUT_MAX = 10
HELD_OUT_SHARE = 4   # hold out at most one like in this many: the rest still trains the upload
MIN_HELD_OUT = 5     # fewer held-out likes are too few to judge a release by
TOP = 10
# How much lower a release may rank the held-out likes and still be adopted: a handful of likes is a small
# sample of a taste, and a release that helps on the whole can move them a little. The share outranked is
# a fraction (0.002: about 3 of 1,600 unrated items); the MRR tolerance is relative.
SHARE_TOLERANCE = 0.002
MRR_TOLERANCE = 0.05
BLENDS = (0.5, 0.25, 0.1)
ADOPTED_STATE = "sync_adopted"
EVENT = "sync_adoption"


# -- what is held out ----------------------------------------------------------------------------------


def held_out_likes(interactions: Iterable[Interaction]) -> list[int]:
    """The item ids the check ranks (the latest likes, oldest first), or [] when too few to judge by."""
    likes = recent_likes(interactions)
    count = min(HELD_OUT_MAX, len(likes) // HELD_OUT_SHARE)
    return likes[len(likes) - count:] if count >= MIN_HELD_OUT else []


def upload_labels(interactions: list[Interaction]) -> dict[int, float]:
    """The preference labels a round trains the shared delta on: all but the held-out likes."""
    held = set(held_out_likes(interactions))
    return {item: value for item, value in preference_labels(interactions).items() if item not in held}


# -- what is in use ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InUse:
    """The global adapter the feed uses, as steps over one coordinator's signed releases. With no steps the
    feed uses what it has without a federation: release 0, the public prior built on this device, or else
    the identity. Each step (version, t) moves t of the way to that release; t = 1 replaces what came before.
    A chain that starts with a blend starts from `base`: the sha256 of the prior it was blended from, in the
    releases' layout (None: the identity, the zero vector)."""

    coordinator_key: str
    steps: tuple[tuple[int, float], ...] = ()
    decided: int = 0  # the newest release version decided on
    base: str | None = None

    def then(self, version: int, t: float, base: str | None = None) -> InUse:
        """After deciding on `version` with share `t` (`base`: where a first blend starts from)."""
        if t <= 0.0:
            return InUse(self.coordinator_key, self.steps, version, self.base)
        if t >= 1.0:
            return InUse(self.coordinator_key, ((version, 1.0),), version)
        if not self.steps:
            return InUse(self.coordinator_key, ((version, float(t)),), version, base)
        return InUse(self.coordinator_key, self.steps + ((version, float(t)),), version, self.base)

    def describe(self, without: str = "the identity") -> str:
        """In words; `without` names what the feed uses with no release (release 0, or the identity)."""
        if not self.steps:
            return f"no release ({without})"
        (first, t), *rest = self.steps
        origin = "release 0, the public prior" if self.base else "the identity"
        text = f"version {first}" if t >= 1.0 else f"{t:.3g} of version {first}'s change from {origin}"
        return text + "".join(f", then {t:.3g} of the way to version {v}" for v, t in rest)

    def as_state(self) -> dict[str, Any]:
        return {"coordinator_key": self.coordinator_key, "steps": [list(s) for s in self.steps],
                "decided": self.decided, "base": self.base}


def in_use(store: "Store", coordinator_key: str) -> InUse:
    """What the store records as in use with this coordinator (nothing adopted yet: no steps)."""
    state = store.get_state(ADOPTED_STATE)
    if not state or state.get("coordinator_key") != coordinator_key:
        return InUse(coordinator_key)
    return InUse(coordinator_key, tuple((int(v), float(t)) for v, t in state["steps"]), int(state["decided"]),
                 state.get("base"))


def base_vector(layout_digest: str, size: int, prior: "Prior | None") -> tuple[np.ndarray, str | None]:
    """Where blends with releases of this layout start when no release is in use: release 0 if the device's
    prior is in that layout (then the feed already uses it), else the identity; and its digest (or None)."""
    if prior is not None and prior.layout.digest() == layout_digest:
        return prior.vector.copy(), prior.digest()
    return np.zeros(size), None


def compose(current: InUse, releases: dict[int, "Release"], prior: "Prior | None") -> np.ndarray:
    """The shared vector `current` describes, from these verified releases (all of one layout) and the
    device's prior (SyncError when the chain starts from a prior that is no longer the one kept)."""
    vector: np.ndarray | None = None
    digest = None
    for version, t in current.steps:
        release = releases[version]
        if digest is None:
            digest = release.layout.digest()
            vector, base = base_vector(digest, release.layout.size, prior)
            if t < 1.0 and base != current.base:
                raise SyncError("it was blended with a public prior (release 0) that is no longer the one kept")
        elif release.layout.digest() != digest:
            raise SyncError(f"version {version} has another shared layout than the versions before it")
        vector = vector + t * (release.vector - vector)
    if vector is None:
        raise SyncError("no steps to compose")
    return vector


def load_in_use(store: "Store", pin: "CoordinatorPin", prior: "Prior | None",
                on_refused: Callable[[int, str], None]) -> tuple[InUse, "Release", np.ndarray] | None:
    """(what is in use, its newest release, its vector), recomputed from stored releases that verify against
    the pinned key and from the device's prior; None when no release is in use. A step that fails is refused
    (`on_refused`) and the steps before it are used: each shorter chain was itself in use once."""
    from agent.federation.signing import verify_release

    current = in_use(store, pin.signing_public_key.hex())
    releases: dict[int, Release] = {}
    usable: list[tuple[int, float]] = []
    for version, t in current.steps:
        body = store.stored_release(current.coordinator_key, version)
        try:
            if body is None:
                raise SyncError("it is no longer stored")
            release = verify_release(body, pin.signing_public_key)
            if release.version != version:
                raise SyncError(f"the stored row says version {version}, the signed body {release.version}")
            compose(replace(current, steps=tuple(usable) + ((version, t),)), {**releases, version: release}, prior)
        except SyncError as error:
            on_refused(version, str(error))
            break
        releases[version] = release
        usable.append((version, t))
    if not usable:
        return None
    chain = replace(current, steps=tuple(usable))
    return chain, releases[usable[-1][0]], compose(chain, releases, prior)


# -- the check --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranking:
    """How the held-out likes rank among the unrated items under one version."""

    outranked: float  # the share of unrated items a held-out like scores above, on average
    mrr: float
    top: int  # how many are in the top TOP

    def text(self) -> str:
        return (f"{100 * self.outranked:.2f}% of unrated items outranked, MRR {self.mrr:.4f}, {self.top} in the "
                f"top {TOP}")

    def hurts(self, baseline: Ranking) -> bool:
        return (self.outranked < baseline.outranked - SHARE_TOLERANCE
                or self.mrr < (1.0 - MRR_TOLERANCE) * baseline.mrr)


@dataclass(frozen=True)
class Person:
    """What the check reads, gathered by the facade: the encoded catalog, the personal adapter (for its
    projection and taste prior), every interaction, and the items the feed treats as judged."""

    catalog: Catalog
    personal: PersonalAdapter
    interactions: list[Interaction]
    judged: set[int]


@dataclass(frozen=True)
class Decision:
    version: int
    action: str            # adopted | blended | kept
    t: float               # the share of the release's change taken: 1, a blend, or 0
    message: str
    held_out: int
    likes: int
    before: str
    after: str
    in_use: Ranking | None = None
    candidate: Ranking | None = None
    chosen: Ranking | None = None
    blends: tuple[tuple[float, Ranking], ...] = ()
    noise: NoiseCheck | None = None
    coordinator_key: str = ""
    base: str | None = None  # where a first blend starts from (InUse.base)

    def as_event(self) -> dict[str, Any]:
        event = asdict(self)
        event["blends"] = [[t, asdict(r)] for t, r in self.blends]
        return event


class Judge:
    """Ranks the held-out likes under any version, with one personal adapter refitted without them."""

    def __init__(self, person: Person, held: list[int], in_use_adapter: GlobalAdapter) -> None:
        catalog = person.catalog
        held_set = set(held)
        labels = {i: v for i, v in preference_labels(person.interactions).items() if i not in held_set}
        start = person.personal
        fresh = PersonalAdapter(start.prior.copy(), start.A.copy(), np.zeros_like(start.B), start.prior.copy(),
                                start.model_id)
        self.personal, _ = fit(fresh, Scorer(catalog, in_use_adapter), labels, TrainingSettings(seed=len(labels)))
        self.catalog = catalog
        self.held_rows = catalog.rows(held)
        self.steer_rows = catalog.rows([i for i in recent_likes(person.interactions) if i not in held_set])
        unrated = np.ones(len(catalog), bool)
        unrated[catalog.rows(sorted(person.judged | held_set))] = False
        self.unrated_rows = np.flatnonzero(unrated)

    def rank(self, adapter: GlobalAdapter) -> Ranking:
        scorer = Scorer(self.catalog, adapter)
        scores = scorer.scores(scorer.steer(self.personal, self.steer_rows))
        others = np.sort(scores[self.unrated_rows])
        below = np.searchsorted(others, scores[self.held_rows], side="left")  # unrated items scored lower
        ranks = 1 + len(others) - np.searchsorted(others, scores[self.held_rows], side="right")
        return Ranking(float(np.mean(below) / max(len(others), 1)), float(np.mean(1.0 / ranks)),
                       int(np.sum(ranks <= TOP)))


def starting_point(release: "Release") -> bool:
    """The coordinator's first release, made from no round: it carries no noise."""
    return release.metadata.get("round_id") is None


def noise_check(release: "Release") -> NoiseCheck | None:
    """A round's release's noise against its signal bound, recomputed from its signed figures (None: it
    does not carry them, or it is the starting point)."""
    meta = release.metadata
    try:
        noise = DistributedNoise(float(meta["clip_norm"]), float(meta["noise_multiplier"]),
                                 int(meta["min_contributors"]))
        return NoiseCheck.of(noise, release.layout.size, int(meta["summands"]))
    except (KeyError, TypeError, ValueError, SyncError):
        return None


@dataclass(frozen=True)
class Current:
    """What the feed uses now, as the check needs it."""

    in_use: InUse
    adapter: GlobalAdapter
    blend_from: np.ndarray | None  # the shared vector blends with the release start from (None: they cannot)
    base: str | None               # where a first blend starts: the prior's sha256, or None (the identity)
    without: str                   # what the feed uses with no release, in words
    prior_layout: str | None       # the layout digest of the device's prior, if it has one


def current_for(release: "Release", recorded: InUse, loaded: tuple[InUse, "Release", np.ndarray] | None,
                prior: "Prior | None", adapter: GlobalAdapter) -> Current:
    """`Current` for judging `release`: `recorded` is the stored chain, `loaded` what of it verified
    (`load_in_use`), `prior` the device's release 0, `adapter` the global adapter the feed uses."""
    without = "release 0, the public prior" if prior is not None else "the identity"
    prior_layout = None if prior is None else prior.layout.digest()
    digest = release.layout.digest()
    if loaded is not None:
        chain, newest, vector = loaded
        return Current(chain, adapter, vector if newest.layout.digest() == digest else None, chain.base, without,
                       prior_layout)
    blend_from, base = base_vector(digest, release.layout.size, prior)
    return Current(replace(recorded, steps=(), base=None), adapter, blend_from, base, without, prior_layout)


@dataclass(frozen=True)
class Candidate:
    """A release as the check judges it: its version, the shared vector the feed would use (in `layout`), what
    its signed figures say of its noise, and whether it is the coordinator's starting point. On a device that
    is the release itself (`of`); `ownrec eval` builds one per simulated person, whose vector is their
    cross-fitted release 0 plus the federation's, so both judge with this one rule (`decide_on`)."""

    version: int
    layout: "SharedLayout"
    vector: np.ndarray
    noise: NoiseCheck | None
    starting_point: bool

    @classmethod
    def of(cls, release: "Release") -> Candidate:
        return cls(release.version, release.layout, release.vector, noise_check(release), starting_point(release))


def decide(person: Person, current: Current, release: "Release") -> Decision:
    """Whether to adopt `release`, a blend of it, or keep what is in use."""
    return decide_on(person, current, Candidate.of(release))


def decide_on(person: Person, current: Current, release: Candidate) -> Decision:
    """`decide` on a release as the check judges it (`Candidate`)."""
    held = held_out_likes(person.interactions)
    likes = len(recent_likes(person.interactions))
    noise = release.noise
    in_use_text = current.in_use.describe(current.without)
    common = {"version": release.version, "held_out": len(held), "likes": likes, "before": in_use_text,
              "noise": noise, "coordinator_key": current.in_use.coordinator_key, "base": current.base}

    def outcome(action: str, t: float, message: str, **figures: Any) -> Decision:
        after = current.in_use.then(release.version, t, current.base).describe(current.without)
        return Decision(action=action, t=t, message=message, after=after, **common, **figures)

    name = f"version {release.version}" + (" (the coordinator's starting point)" if release.starting_point else "")
    # blend_from is the feed's own vector unless the device keeps a prior in another layout (then it is zeros).
    feed_vector = current.blend_from if current.in_use.steps or current.base is not None or \
        current.prior_layout is None else None
    if feed_vector is not None and np.array_equal(release.vector, feed_vector):
        # Nothing to judge: a round whose noise drowned its signal can release exactly what is in use. Taking
        # it keeps the device on the newest version, and saying "rank no lower" would claim a check not run.
        return outcome("adopted", 1.0, f"{name} adopted: its shared numbers are exactly those of what is in "
                                       f"use, {in_use_text}, so it changes nothing in your feed")
    if len(held) < MIN_HELD_OUT:
        few = (f"too few likes to judge it by ({likes}; a check holds out {MIN_HELD_OUT} of at least "
               f"{MIN_HELD_OUT * HELD_OUT_SHARE})")
        if current.prior_layout is not None and current.prior_layout != release.layout.digest():
            return outcome("kept", 0.0, f"{name} kept out: {few}, and it is not built on the public prior (release "
                                        f"0) this device uses; still using {in_use_text}")
        if release.starting_point:
            return outcome("adopted", 1.0, f"{name} adopted without a check: {few}, and it has no noise in it")
        if noise is not None and not noise.noise_dominates:
            return outcome("adopted", 1.0, f"{name} adopted without a check: {few}, and its signed figures show its "
                                           f"noise (expected norm {noise.noise_norm:.3g}) no larger than any signal "
                                           f"it could carry (at most {noise.signal_bound:g})")
        why = ("its release does not carry the figures that would show its noise is no larger than its signal"
               if noise is None else f"its noise (expected norm {noise.noise_norm:.3g}) is larger than any signal "
                                     f"it could carry (at most {noise.signal_bound:g})")
        return outcome("kept", 0.0, f"{name} kept out: {few}, and {why}; still using {in_use_text}")

    judge = Judge(person, held, current.adapter)
    baseline = judge.rank(current.adapter)
    candidate = judge.rank(unflatten(release.layout, release.vector))
    likes_text = f"your {len(held)} latest likes (held out)"
    figures = {"in_use": baseline, "candidate": candidate}
    cap = 1.0 if noise is None or not noise.noise_dominates else noise.signal_bound / noise.noise_norm
    if cap >= 1.0 and not candidate.hurts(baseline):
        return outcome("adopted", 1.0, f"{name} adopted: {likes_text} rank no lower with it, within the check's "
                                       f"tolerance ({baseline.text()} → {candidate.text()})",
                       chosen=candidate, **figures)
    start = current.blend_from
    shares = [] if start is None else ([cap] if cap < 1.0 else []) + [cap * b for b in BLENDS]
    blends = tuple((t, judge.rank(unflatten(release.layout, start + t * (release.vector - start)))) for t in shares)
    passing = [(r.outranked, t, r) for t, r in blends if not r.hurts(baseline)]
    if cap < 1.0:
        lead = (f"{name} carries more noise than any signal it could (expected norm {noise.noise_norm:.3g}, at most "
                f"{noise.signal_bound:g}), so at most {cap:.3g} of its change may be taken; all of it would take "
                f"{likes_text} from {baseline.text()} to {candidate.text()}")
    else:
        lead = f"{name} would rank {likes_text} lower ({baseline.text()} → {candidate.text()})"
    if passing:
        _, t, chosen = max(passing)
        return outcome("blended", t, f"{lead}; {t:.3g} of its change ranks them no lower, within the check's "
                                     f"tolerance ({chosen.text()}): adopted that blend",
                       chosen=chosen, blends=blends, **figures)
    tried = ", ".join(f"{t:.3g}" for t, _ in blends)
    why = ("; it cannot be blended with the version in use (another layout)" if not blends
           else f"; each share of its change tried ({tried}) would rank them lower")
    return outcome("kept", 0.0, f"{lead}{why}: kept it out; still using {in_use_text}", blends=blends, **figures)


def record(store: "Store", current: InUse, decision: Decision) -> InUse:
    """Write the decision to the event log and what is now in use to the state; what is now in use."""
    now = current.then(decision.version, decision.t, decision.base)
    with store.transaction():
        store.set_state(ADOPTED_STATE, now.as_state())
        store.log_event(EVENT, decision.as_event())
    return now
