"""`apply_rows`, the one step that writes a parsed file to the store: the rating scale settled, each rating
put on 0.5-5 stars, history matched to the catalog within its kind, and all good rows in one transaction.

All or nothing per file for its good rows: a bad row is reported and skipped before anything is written,
and a failure while writing (a full disk) leaves none of the file's rows behind.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path

from agent.core.importers.base import (
    SCALES,
    Feedback,
    ImportFailed,
    ImportProblem,
    ImportReport,
    Parsed,
    ParsedRow,
    Scale,
    Understood,
    find_existing,
    item_kind,
)
from agent.core.store import NewItem, Store, UpsertResult

BATCH = 500


def apply_rows(store: Store, path: Path | str, fmt: str, entries: Iterable[Parsed],
               now: float | None = None, scale: int | None = None) -> ImportReport:
    """Write the good rows in one transaction and report the problems.

    Ratings are read on `scale` when given (5, 10 or 100), else on the scale the format fixes, else on the
    one the ratings show (any above 10: out of 100; any above 5: out of 10; else 0.5-5 stars, which the
    report says was assumed). A rating outside its scale is a problem. Items are upserted by (source,
    external_id); when a file repeats an id, its last row wins. Dated feedback already present with the
    same (item, kind, at) is a duplicate. Undated feedback gets the import time and is a duplicate when the
    item already has feedback of the same kind and value, so re-importing an undated history changes nothing.
    """
    report = ImportReport(str(path), fmt)
    rows: list[ParsedRow] = []
    understood: Understood | None = None
    for entry in entries:  # parse the whole file first: an ImportFailed must leave no writes
        if isinstance(entry, Understood):
            report.notes.extend(entry.notes)
            if entry.what:
                understood = entry
        else:
            (report.problems if isinstance(entry, ImportProblem) else rows).append(entry)
    report.understood = understood.what if understood else ""
    rows = _on_scale(rows, report, understood.scale if understood else None, scale)
    report.problems.sort(key=lambda problem: (problem.path != report.path, problem.path, problem.line))
    for row in rows:
        report.taken_as[row.label] += 1
    with store.transaction():
        ids = _resolve_items(store, rows, report)
        _add_feedback(store, rows, ids, report, time.time() if now is None else now, f"import:{fmt}")
    return report


def _rated(rows: list[ParsedRow]) -> list[float]:
    return [row.feedback.value for row in rows if row.feedback and row.feedback.kind == "rating"
            and row.feedback.value is not None]


def detect_scale(values: list[float]) -> Scale:
    """The scale the ratings show: the smallest of 5, 10 and 100 that holds them all. A rating above 100 fits
    no scale and takes no part (its row is refused)."""
    top = max([value for value in values if value <= 100] or [0.0])
    if top > 10:
        return Scale(100, f"detected: ratings up to {top:g} appear")
    if top > 5:
        return Scale(10, f"detected: ratings up to {top:g} appear")
    return Scale(5, "assumed: no rating is above 5; if they are out of 10, give --scale 10")


def _on_scale(rows: list[ParsedRow], report: ImportReport, fixed: Scale | None, given: int | None) -> list[ParsedRow]:
    """The rows with their ratings on 0.5-5 stars; a rating outside the scale is reported and its row skipped."""
    values = _rated(rows)
    if not values:
        return rows
    if given is not None:
        if given not in SCALES:
            raise ImportFailed(f"{report.path}: --scale {given}: use one of {', '.join(map(str, SCALES))}")
        report.scale = Scale(given, "given with --scale")
    else:
        report.scale = fixed or detect_scale(values)
    scale, kept = report.scale, []
    for row in rows:
        feedback = row.feedback
        if feedback is None or feedback.kind != "rating" or feedback.value is None:
            kept.append(row)
        elif not scale.low <= feedback.value <= scale.top:
            report.problems.append(ImportProblem(report.path, row.line, f"rating {feedback.value:g} is outside "
                                                 f"{scale.low:g}-{scale.top:g}, the scale this file is read on"))
        else:
            stars = Feedback(feedback.kind, scale.stars(feedback.value), feedback.at)
            kept.append(dataclasses.replace(row, feedback=stars))
    return kept


def _count(report: ImportReport, result: UpsertResult) -> None:
    report.items_added += result.added
    report.items_updated += result.updated
    report.items_unchanged += result.unchanged


def _resolve_items(store: Store, rows: list[ParsedRow], report: ImportReport) -> dict[tuple[str, str], int]:
    ids: dict[tuple[str, str], int] = {}
    counted: set[int] = set()
    catalog: dict[tuple[str, str], NewItem] = {}
    for row in rows:
        if not row.match_title:
            catalog[row.key] = row.item
            continue
        if row.key in ids:
            continue
        # Resolved row by row so that a film logged twice in one diary finds the item added by
        # its first entry.
        found = find_existing(store, row.item.title, row.item.metadata.get("year"),
                              item_kind(row.item.source, row.item.metadata))
        if found is not None:
            ids[row.key] = found.id
            if found.id not in counted:
                report.items_unchanged += 1
        else:
            result = store.upsert_items([row.item])
            _count(report, result)
            ids[row.key] = result.item_ids[0]
        counted.add(ids[row.key])
    keys = list(catalog)
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        result = store.upsert_items(catalog[key] for key in chunk)
        _count(report, result)
        ids.update(zip(chunk, result.item_ids))
    return ids


def _add_feedback(store: Store, rows: list[ParsedRow], ids: dict[tuple[str, str], int],
                  report: ImportReport, now: float, origin: str) -> None:
    dated: set[tuple[int, str, float]] = set()
    undated: set[tuple[int, str, float | None]] | None = None
    pending: list[tuple[int, str, float | None, float, str]] = []
    for row in rows:
        feedback = row.feedback
        if feedback is None:
            continue
        item_id = ids[row.key]
        if feedback.at is None:
            if undated is None:
                undated = {(i.item_id, i.kind, i.value) for i in store.interactions()}
            key = (item_id, feedback.kind, feedback.value)
            duplicate = key in undated
            undated.add(key)
            at = now
        else:
            at = feedback.at
            duplicate = (item_id, feedback.kind, at) in dated or store.has_interaction(item_id, feedback.kind, at)
            dated.add((item_id, feedback.kind, at))
        if duplicate:
            report.feedback_duplicates += 1
        else:
            pending.append((item_id, feedback.kind, feedback.value, at, origin))
    for start in range(0, len(pending), BATCH):
        report.feedback_added += store.add_interactions(pending[start : start + BATCH])
