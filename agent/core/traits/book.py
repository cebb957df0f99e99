"""The person's traits: readings, edits, their history and undo, on top of the ranker's state.

Every edit is one row in `trait_edits` with what it changed, so undo is exact: edits that move
p_u record the vector added to it, and undo subtracts that vector. Edits that move p_u save a new
personal adapter version, so the next ranking reflects them at once.

`Traits` is given plain parts (the store, the person's traits.toml, and the ranker's embedding,
scorer and personal adapter as callables), never the facade that owns them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.ranker import PersonalAdapter, Scorer, preference_labels
from agent.core.store import Item, Store
from agent.core.store.trait_records import TraitRecords
from agent.core.traits.axes import NEUTRAL, TraitSpace
from agent.core.traits.catalog import TraitDef, TraitProblem, load_traits

EVIDENCE_SHOWN = 5
TREND_POINTS = 30
NUDGE = 0.05
# An edit that stops this far or more from what was asked says so (TraitSpace.edit bounds how far one may go).
SHORT_OF_ASKED = 0.005


class TraitError(ValueError):
    pass


@dataclass(frozen=True)
class Evidence:
    item: Item
    label: float  # the person's preference for the item, -1..1
    percentile: float  # where the item sits on the trait's axis, 0..1
    pull: float  # how far it pulled the trait: positive raises it


@dataclass(frozen=True)
class TraitReading:
    id: str
    name: str
    kind: str
    meaning: str
    low: str
    high: str
    value: float | None  # None when hidden
    confidence: float | None
    pinned: bool
    hidden: bool
    edited: bool  # set by the person since the last reset
    evidence: list[Evidence]
    trend: list[tuple[float, float]]  # (unix time, value), oldest first

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "kind": self.kind, "meaning": self.meaning,
            "low": self.low, "high": self.high,
            "value": None if self.value is None else round(self.value, 4),
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "pinned": self.pinned, "hidden": self.hidden, "edited": self.edited,
            "evidence": [{"id": e.item.id, "title": e.item.display_title, "label": round(e.label, 3),
                          "percentile": round(e.percentile, 3), "pull": round(e.pull, 4)} for e in self.evidence],
            "trend": [{"at": at, "value": round(v, 4)} for at, v in self.trend],
        }

    @property
    def lean(self) -> float:
        """How far the reading is from neutral (0 to 0.5); 0 when hidden."""
        return 0.0 if self.value is None else abs(self.value - 0.5)

    @property
    def leaning_pole(self) -> str:
        """The words of the pole the person leans to."""
        return self.high if (self.value or 0.0) >= 0.5 else self.low


# Weakly supported readings are never put forward as what the person is like.
CLEAREST_MIN_CONFIDENCE = 0.15


def clearest(readings: list[TraitReading], count: int, min_lean: float = 0.0) -> list[TraitReading]:
    """The `count` clearest readings that may be shown: not hidden, confidence at least
    CLEAREST_MIN_CONFIDENCE, lean at least `min_lean`, ordered by lean times confidence."""
    shown = [r for r in readings if not r.hidden and r.value is not None
             and (r.confidence or 0.0) >= CLEAREST_MIN_CONFIDENCE and r.lean >= min_lean]
    shown.sort(key=lambda r: -r.lean * (r.confidence or 0.0))
    return shown[:count]


@dataclass(frozen=True)
class TraitEdit:
    id: int
    at: float
    trait_id: str
    action: str
    detail: dict[str, Any]
    undone: bool

    def describe(self) -> str:
        d = self.detail
        text = {
            "set": f"set to {d.get('to', 0):.2f} (was {d.get('from', 0):.2f})",
            "pin": f"pinned at {d.get('value', 0):.2f}",
            "unpin": "unpinned",
            "hide": "hidden",
            "show": "shown again",
            "reset": f"reset to inferred {d.get('to', 0):.2f} (was {d.get('from', 0):.2f})",
            "forget": "forgotten: reset, neutral, its evidence and history dropped",
        }.get(self.action, self.action)
        if self.action == "set" and "asked" in d and abs(d["asked"] - d.get("to", d["asked"])) >= SHORT_OF_ASKED:
            text += f"; asked {d['asked']:.2f}, as far as one edit may move the feed"
        return text + (" (undone)" if self.undone else "")


def _edit(row: dict[str, Any]) -> TraitEdit:
    return TraitEdit(row["id"], row["at"], row["trait_id"], row["action"], json.loads(row["detail"] or "{}"),
                     bool(row["undone"]))


def _summary(phrases: tuple[str, ...]) -> str:
    return phrases[0]


class Traits:
    """The person's traits over their store and ranker state.

    - `store`: where edits, flags and snapshots live; its lock serialises every call here.
    - `traits_file`: the person's own trait definitions (traits.toml), read once, here.
    - `embed(texts)`: unit vectors of texts, for the poles' phrases.
    - `scorer()`: the current scorer (the catalog and the global adapter).
    - `personal_adapter()`: the person's current personal adapter.
    - `save_personal_adapter(adapter, reason)`: saves an edited adapter as the new current version
      (what edits that move p_u call, so the next ranking reflects them); returns its version.
    """

    def __init__(self, store: Store, traits_file: Path, *, embed: Callable[[list[str]], np.ndarray],
                 scorer: Callable[[], Scorer], personal_adapter: Callable[[], PersonalAdapter],
                 save_personal_adapter: Callable[[PersonalAdapter, str], int],
                 labels: Callable[[], Mapping[int, float]] | None = None) -> None:
        self.store = store
        self.records = TraitRecords(store)
        self._embed = embed
        self._scorer = scorer
        self._personal_adapter = personal_adapter
        self._save_personal_adapter = save_personal_adapter
        # The preference labels of all the feedback, if the caller keeps them (else read from the store).
        self._labels = labels or (lambda: preference_labels(self.store.interactions()))
        self.definitions, self.problems = load_traits(traits_file)
        self._by_id = {t.id: t for t in self.definitions}
        self._poles: tuple[np.ndarray, np.ndarray] | None = None

    # -- lookup and state ----------------------------------------------------------------------

    def resolve(self, name: str) -> TraitDef:
        key = name.strip().lower().replace("-", "_").replace(" ", "_")
        for trait in self.definitions:
            if key in (trait.id, trait.name.lower().replace("-", "_").replace(" ", "_")):
                return trait
        known = ", ".join(t.id for t in self.definitions)
        raise TraitError(f"unknown trait {name!r}; known traits: {known}")

    def _state(self, trait_id: str) -> dict[str, Any]:
        return self.records.state(trait_id)

    def _set_state(self, trait_id: str, **changes: Any) -> None:
        self.records.set_state(trait_id, self._state(trait_id) | changes)

    def _indices(self, flag: str) -> list[int]:
        flagged = self.records.flagged(flag)
        return [i for i, t in enumerate(self.definitions) if t.id in flagged]

    def hidden_ids(self) -> list[str]:
        return [self.definitions[i].id for i in self._indices("hidden")]

    # -- the space -----------------------------------------------------------------------------

    def _pole_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if self._poles is None:
            high = [self._embed(list(t.high)).mean(axis=0) for t in self.definitions]
            low = [self._embed(list(t.low)).mean(axis=0) for t in self.definitions]
            self._poles = (np.stack(high).astype(np.float32), np.stack(low).astype(np.float32))
        return self._poles

    def space(self, personal: PersonalAdapter | None = None) -> TraitSpace:
        high, low = self._pole_vectors()
        return TraitSpace.build(self._scorer(), personal or self._personal_adapter(), high, low)

    # -- readings ------------------------------------------------------------------------------

    def readings(self) -> list[TraitReading]:
        """Every trait with its value, confidence and evidence; hidden ones without numbers."""
        with self.store.lock:
            personal = self._personal_adapter()
            space = self.space(personal)
            values = space.values(personal.p)
            every_label: Mapping[int, float] | None = None
            interactions: list | None = None  # read only for a trait whose evidence starts later
            catalog = self._scorer().catalog
            edited = self._edited_ids()
            result = []
            for index, trait in enumerate(self.definitions):
                state = self._state(trait.id)
                if state["hidden"]:
                    result.append(TraitReading(trait.id, trait.name, trait.kind, trait.meaning, _summary(trait.low),
                                               _summary(trait.high), None, None, state["pinned"], True, False, [], []))
                    continue
                since = state["evidence_since"]
                if since is None:
                    labels = every_label = self._labels() if every_label is None else every_label
                else:
                    interactions = self.store.interactions() if interactions is None else interactions
                    labels = preference_labels([e for e in interactions if e.at >= since])
                rows = [(item_id, catalog.row(item_id)) for item_id in sorted(labels)]  # whatever the labels' order
                rows = [(item_id, row) for item_id, row in rows if row is not None]
                pulls = np.array([labels[i] * (space.percentiles[row, index] - NEUTRAL) for i, row in rows])
                confidence = 0.0
                evidence: list[Evidence] = []
                if len(pulls):
                    amount = 1.0 - math.exp(-len(pulls) / 20.0)
                    consistency = abs(float(pulls.sum())) / max(float(np.abs(pulls).sum()), 1e-12)
                    confidence = amount * consistency
                    direction = 1.0 if values[index] >= NEUTRAL else -1.0
                    order = np.argsort(-(pulls * direction))[:EVIDENCE_SHOWN]
                    chosen = [(rows[j], pulls[j]) for j in order if pulls[j] * direction > 0]
                    items = {item.id: item for item in self.store.items([r[0] for r, _ in chosen])}
                    evidence = [Evidence(items[item_id], labels[item_id], float(space.percentiles[row, index]),
                                         float(pull)) for (item_id, row), pull in chosen]
                trend = self.records.trend(trait.id, TREND_POINTS)
                result.append(TraitReading(trait.id, trait.name, trait.kind, trait.meaning, _summary(trait.low),
                                           _summary(trait.high), float(values[index]), confidence, state["pinned"],
                                           False, trait.id in edited, evidence, trend))
            return result

    def reading(self, name: str) -> TraitReading:
        trait = self.resolve(name)
        return next(r for r in self.readings() if r.id == trait.id)

    def snapshot(self) -> None:
        """Record today's values (not for hidden traits), so a trend can be shown."""
        with self.store.lock:
            now = time.time()
            rows = [{"at": now, "trait_id": r.id, "value": r.value, "confidence": r.confidence}
                    for r in self.readings() if not r.hidden]
            self.records.add_snapshots(rows)

    # -- edits ---------------------------------------------------------------------------------

    def _record(self, trait_id: str, action: str, detail: dict[str, Any]) -> TraitEdit:
        row = {"at": time.time(), "trait_id": trait_id, "action": action, "detail": json.dumps(detail), "undone": 0}
        edit_id = self.records.add_edit(row)
        return TraitEdit(edit_id, row["at"], trait_id, action, detail, False)

    def _move(self, personal: PersonalAdapter, delta: np.ndarray, reason: str) -> None:
        moved = personal.copy()
        moved.p = (moved.p + delta).astype(np.float32)
        self._save_personal_adapter(moved, reason)

    def set(self, name: str, value: float) -> TraitEdit:
        """Move p_u towards the trait reading `value`, as far as one edit may move the feed
        (`TraitSpace.edit`); the edit records, and says, the value reached."""
        trait = self.resolve(name)
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0 or math.isnan(value):
            raise TraitError(f"a trait value is a number from 0 to 1, not {value!r}")
        with self.store.lock:
            if self._state(trait.id)["hidden"]:
                raise TraitError(f"{trait.name} is hidden: show it again before changing it")
            personal = self._personal_adapter()
            space = self.space(personal)
            index = self.definitions.index(trait)
            before = float(space.values(personal.p)[index])
            delta = space.edit(personal.p, index, float(value), held=self._pinned_targets(skip=index))
            reached = float(space.values(personal.p + delta)[index])
            with self.store.transaction():
                self._move(personal, delta, f"trait {trait.id} set")
                state = self._state(trait.id)
                if state["pinned"]:
                    self._set_state(trait.id, pinned_value=reached)
                edit = self._record(trait.id, "set", {"from": before, "to": reached, "asked": float(value),
                                                      "delta": delta.tolist()})
            self.snapshot()
            return edit

    def nudge(self, name: str, step: float = NUDGE) -> TraitEdit:
        current = self.reading(name)
        if current.value is None:
            raise TraitError(f"{current.name} is hidden: show it again before changing it")
        return self.set(name, float(np.clip(current.value + step, 0.0, 1.0)))

    def pin(self, name: str) -> TraitEdit:
        trait = self.resolve(name)
        with self.store.lock:
            value = float(self.space().values(self._personal_adapter().p)[self.definitions.index(trait)])
            with self.store.transaction():
                previous = self._state(trait.id)
                self._set_state(trait.id, pinned=True, pinned_value=value)
                return self._record(trait.id, "pin", {"value": value, "before": previous})

    def unpin(self, name: str) -> TraitEdit:
        return self._flag(name, "unpin", pinned=False)

    def hide(self, name: str) -> TraitEdit:
        return self._flag(name, "hide", hidden=True)

    def show(self, name: str) -> TraitEdit:
        return self._flag(name, "show", hidden=False)

    def _flag(self, name: str, action: str, **changes: Any) -> TraitEdit:
        trait = self.resolve(name)
        with self.store.lock, self.store.transaction():
            previous = self._state(trait.id)
            self._set_state(trait.id, **changes)
            return self._record(trait.id, action, {"before": previous})

    def _pinned_targets(self, skip: int | None = None) -> dict[int, float]:
        """The pinned traits (but `skip`, the one being edited) and the values they are held at."""
        return {k: float(self._state(self.definitions[k].id)["pinned_value"]) for k in self._indices("pinned")
                if k != skip}

    def _holding_pins(self, p: np.ndarray, skip: int | None = None) -> np.ndarray:
        """The change to `p` that brings every pinned trait (but `skip`) back to its pinned value: an edit of
        one trait, a reset or an undo never moves another that is pinned."""
        targets = self._pinned_targets(skip)
        if not targets:
            return np.zeros_like(p)
        return self.space().move_to(p, targets)

    def _open_set_deltas(self, trait_id: str) -> np.ndarray | None:
        """The sum of what the person's `set` edits added to p_u since the last reset or forget."""
        total = None
        for action, detail in self.records.open_edits(trait_id):
            if action in ("reset", "forget"):
                total = None
            elif action == "set":
                delta = np.array(json.loads(detail)["delta"], np.float32)
                total = delta if total is None else total + delta
        return total

    def _edited_ids(self) -> set[str]:
        return {t.id for t in self.definitions if self._open_set_deltas(t.id) is not None}

    def reset(self, name: str) -> TraitEdit:
        """Take back the person's own settings of this trait: it reads what feedback infers."""
        trait = self.resolve(name)
        with self.store.lock:
            personal = self._personal_adapter()
            index = self.definitions.index(trait)
            before = float(self.space(personal).values(personal.p)[index])
            pushed = self._open_set_deltas(trait.id)
            delta = np.zeros_like(personal.p) if pushed is None else -pushed
            delta = delta + self._holding_pins(personal.p + delta, skip=index)
            moved = personal.copy()
            moved.p = moved.p + delta
            after = float(self.space(moved).values(moved.p)[index])
            with self.store.transaction():
                self._move(personal, delta, f"trait {trait.id} reset")
                edit = self._record(trait.id, "reset", {"from": before, "to": after, "delta": delta.tolist()})
            self.snapshot()
            return edit

    def forget(self, name: str) -> TraitEdit:
        """Reset, remove what feedback taught about this trait, drop its evidence and history."""
        trait = self.resolve(name)
        with self.store.lock:
            personal = self._personal_adapter()
            index = self.definitions.index(trait)
            pushed = self._open_set_deltas(trait.id)
            moved = personal.copy()
            if pushed is not None:
                moved.p = moved.p - pushed
            space = self.space(moved)
            moved.p = space.without(moved.p, [index])
            moved.p = moved.p + self._holding_pins(moved.p, skip=index)
            delta = moved.p - personal.p
            snapshots = self.records.snapshots(trait.id)
            previous = self._state(trait.id)
            with self.store.transaction():
                self._move(personal, delta, f"trait {trait.id} forgotten")
                self.records.delete_snapshots(trait.id)
                self._set_state(trait.id, pinned=False, pinned_value=None, evidence_since=time.time())
                return self._record(trait.id, "forget", {"delta": delta.tolist(), "before": previous,
                                                         "snapshots": snapshots})

    def undo(self) -> TraitEdit | None:
        """Undo the latest edit that is not undone yet; returns it, or None if there is none."""
        with self.store.lock:
            row = self.records.latest_open_edit()
            if row is None:
                return None
            edit = _edit(row)
            with self.store.transaction():
                if "delta" in edit.detail:
                    personal = self._personal_adapter()
                    back = -np.array(edit.detail["delta"], np.float32)
                    skip = next((k for k, t in enumerate(self.definitions) if t.id == edit.trait_id), None)
                    self._move(personal, back + self._holding_pins(personal.p + back, skip=skip),
                               f"undo trait {edit.action}")
                if "before" in edit.detail:
                    before = edit.detail["before"]
                    self._set_state(edit.trait_id, pinned=before["pinned"], pinned_value=before["pinned_value"],
                                    hidden=before["hidden"], evidence_since=before["evidence_since"])
                if edit.action == "set" and self._state(edit.trait_id)["pinned"]:
                    self._set_state(edit.trait_id, pinned_value=edit.detail["from"])
                for snapshot in edit.detail.get("snapshots", []):
                    self.records.restore_snapshot(snapshot)
                self.records.mark_undone(edit.id)
            return TraitEdit(edit.id, edit.at, edit.trait_id, edit.action, edit.detail, True)

    def history(self, name: str | None = None, limit: int = 100) -> list[TraitEdit]:
        """The local edit log, newest first (hidden traits included: it never leaves the device)."""
        return [_edit(row) for row in self.records.edits(self.resolve(name).id if name else None, limit)]

    # -- what ranking and training see ---------------------------------------------------------

    def for_ranking(self, personal: PersonalAdapter) -> PersonalAdapter:
        """The adapter ranking uses: hidden traits' components removed from p_u, and without what people went on
        to like after the latest likes (those likes' followers would bring a hidden trait back)."""
        hidden = self._indices("hidden")
        if not hidden:
            return personal
        ranked = personal.copy()
        ranked.p = self.space(personal).without(personal.p, hidden)
        ranked.co_liked = None
        return ranked

    def hold_directions(self, personal: PersonalAdapter) -> np.ndarray | None:
        pinned = self._indices("pinned")
        return self.space(personal).hold_directions(pinned) if pinned else None

    def enforce_pins(self, personal: PersonalAdapter) -> PersonalAdapter:
        """After training: bring each pinned trait back to its pinned value (the adapter's own
        matrices also moved, which the projection during training cannot hold)."""
        pinned = self._indices("pinned")
        if not pinned:
            return personal
        space = self.space(personal)
        targets = {index: float(self._state(self.definitions[index].id)["pinned_value"]) for index in pinned}
        held = personal.copy()
        held.p = (held.p + space.move_to(held.p, targets)).astype(np.float32)
        return held

    def has_pins(self) -> bool:
        return bool(self._indices("pinned"))

    def has_hidden(self) -> bool:
        return bool(self._indices("hidden"))

    def export(self) -> dict[str, Any]:
        """For `ownrec export`: everything about traits except hidden ones."""
        hidden = set(self.hidden_ids())
        return {
            "traits": [r.as_dict() for r in self.readings() if not r.hidden],
            "edits": [e.__dict__ for e in reversed(self.history(limit=100_000)) if e.trait_id not in hidden],
            "problems": [str(p) for p in self.problems],
        }


__all__ = ["Evidence", "TraitEdit", "TraitError", "TraitProblem", "TraitReading", "Traits"]
