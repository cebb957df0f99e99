"""`apply_rows`, the one step that writes a parsed file to the store: the rating scale settled, each rating
put on 0.5-5 stars, history matched to the catalog within its kind, and all good rows in one transaction.

All or nothing per file for its good rows: a bad row is reported and skipped, whole; a file found unusable
half way, or a failure while writing (a full disk), leaves none of the file's rows behind. Rows are written
in batches as they are parsed, so a large file is never held in memory whole. The same transaction notes
the import as unfinished (`UnfinishedImports`) until its items are encoded and the model has
learned from its feedback (`Agent.finish_interrupted_imports`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path

from agent.core.importers.base import (
    Feedback,
    ImportProblem,
    ImportReport,
    Parsed,
    ParsedRow,
    Scale,
    Understood,
    find_existing,
    item_kind,
)
from agent.core.store import NewItem, Store, UnfinishedImports, UpsertResult

BATCH = 500  # rows per statement batch
FLUSH = 2000  # rows parsed before they are written: what a large file holds in memory at once


def scan_scale(entries: Iterable[Parsed]) -> Scale | None:
    """The scale a file's ratings show (`detect_scale`), read in a first pass over its rows; None without
    ratings. For formats with no scale of their own, so that the writing pass knows it from its first row."""
    values = [value for entry in entries if isinstance(entry, ParsedRow) and (value := _rating(entry)) is not None]
    return detect_scale(values) if values else None


def apply_rows(store: Store, path: Path | str, fmt: str, entries: Iterable[Parsed],
               now: float | None = None, scale: Scale | None = None) -> ImportReport:
    """Write the good rows in one transaction and report the problems.

    Rows are written as they are parsed, FLUSH at a time, inside one transaction: a file that turns out
    unusable half way (ImportFailed) or a failure while writing rolls all of it back, and memory holds a
    batch, not the file. Ratings are read on `scale` when given (--scale, or `scan_scale`'s), else on the
    scale the format fixes, else on the one the ratings show (any above 10: out of 100; any above 5: out of
    10; else 0.5-5 stars, which the report says was assumed), for which the rated rows wait for the end of
    the file. A rating outside its scale is a problem and its row is skipped whole. Items are upserted by
    (source, external_id); when a file repeats an id, its last row wins. Dated feedback already present with the
    same (item, kind, at) is a duplicate. Undated feedback gets the import time and is a duplicate when the
    item already has feedback of the same kind and value, so re-importing an undated history changes nothing.
    """
    report = ImportReport(str(path), fmt)
    writer = _Writer(store, report, time.time() if now is None else now, f"import:{fmt}")
    fixed = scale
    waiting: list[ParsedRow] = []  # rated rows of a file whose scale shows only at its end
    batch: list[ParsedRow] = []
    with store.transaction():
        for entry in entries:
            if isinstance(entry, Understood):
                report.notes.extend(entry.notes)
                if entry.what:
                    report.understood = entry.what
                    fixed = scale or entry.scale
                continue
            if isinstance(entry, ImportProblem):
                report.problems.append(entry)
                continue
            if _rating(entry) is not None:
                if fixed is None:
                    waiting.append(entry)
                    continue
                report.scale = fixed
                entry = _on_scale(entry, fixed, report)
            if entry is not None:
                batch.append(entry)
            if len(batch) >= FLUSH:
                writer.write(batch)
                batch = []
        writer.write(batch)
        if waiting:
            report.scale = detect_scale([_rating(row) for row in waiting])
            writer.write([row for row in (_on_scale(row, report.scale, report) for row in waiting) if row])
        if report.items_added or report.items_updated or report.feedback_added:
            # In the same transaction as the rows: an import killed after them is finished on the next run.
            UnfinishedImports(store).note(report.path, report.feedback_added)
    report.problems.sort(key=lambda problem: (problem.path != report.path, problem.path, problem.line))
    return report


def _rating(row: ParsedRow) -> float | None:
    feedback = row.feedback
    return feedback.value if feedback is not None and feedback.kind == "rating" else None


def detect_scale(values: list[float]) -> Scale:
    """The scale the ratings show: the smallest of 5, 10 and 100 that holds them all. A rating above 100 fits
    no scale and takes no part (its row is refused)."""
    top = max([value for value in values if value <= 100] or [0.0])
    if top > 10:
        return Scale(100, f"detected: ratings up to {top:g} appear")
    if top > 5:
        return Scale(10, f"detected: ratings up to {top:g} appear")
    return Scale(5, "assumed: no rating is above 5; if they are out of 10, give --scale 10")


def _on_scale(row: ParsedRow, scale: Scale, report: ImportReport) -> ParsedRow | None:
    """The row with its rating on 0.5-5 stars; None, and a problem reported, when it is outside the scale."""
    value = _rating(row)
    if not scale.low <= value <= scale.top:
        report.problems.append(ImportProblem(report.path, row.line, f"rating {value:g} is outside "
                                             f"{scale.low:g}-{scale.top:g}, the scale this file is read on"))
        return None
    return dataclasses.replace(row, feedback=Feedback("rating", scale.stars(value), row.feedback.at))


class _Writer:
    """Writes a file's rows batch after batch, keeping what must hold across batches: the matched items
    (a film logged twice finds the item of its first entry) and the feedback already written."""

    def __init__(self, store: Store, report: ImportReport, now: float, origin: str) -> None:
        self.store, self.report, self.now, self.origin = store, report, now, origin
        self.matched: dict[tuple[str, str], int] = {}
        self.counted: set[int] = set()
        self.dated: set[tuple[int, str, float]] = set()
        self.undated: set[tuple[int, str, float | None]] | None = None

    def write(self, rows: list[ParsedRow]) -> None:
        for row in rows:
            self.report.taken_as[row.label] += 1
        ids = _resolve_items(self.store, rows, self.report, self.matched, self.counted)
        self.undated = _add_feedback(self.store, rows, ids, self.report, self.now, self.origin, self.dated,
                                     self.undated)


def _count(report: ImportReport, result: UpsertResult) -> None:
    report.items_added += result.added
    report.items_updated += result.updated
    report.items_unchanged += result.unchanged


def _resolve_items(store: Store, rows: list[ParsedRow], report: ImportReport, matched: dict[tuple[str, str], int],
                   counted: set[int]) -> dict[tuple[str, str], int]:
    """The item id of every row: matched rows' ids are kept in `matched` for the batches after this one."""
    catalog: dict[tuple[str, str], NewItem] = {}
    for row in rows:
        if not row.match_title:
            catalog[row.key] = row.item
            continue
        if row.key in matched:
            continue
        # Resolved row by row so that a film logged twice in one diary finds the item added by
        # its first entry.
        found = find_existing(store, row.item.title, row.item.metadata.get("year"),
                              item_kind(row.item.source, row.item.metadata))
        if found is not None:
            matched[row.key] = found.id
            if found.id not in counted:
                report.items_unchanged += 1
        else:
            result = store.upsert_items([row.item])
            _count(report, result)
            matched[row.key] = result.item_ids[0]
        counted.add(matched[row.key])
    ids = dict(matched)
    keys = list(catalog)
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        result = store.upsert_items(catalog[key] for key in chunk)
        _count(report, result)
        ids.update(zip(chunk, result.item_ids))
    return ids


def _add_feedback(store: Store, rows: list[ParsedRow], ids: dict[tuple[str, str], int], report: ImportReport,
                  now: float, origin: str, dated: set[tuple[int, str, float]],
                  undated: set[tuple[int, str, float | None]] | None) -> set[tuple[int, str, float | None]] | None:
    """Write the rows' feedback; `dated` and `undated` (loaded on first need, and returned) hold what is
    already written, so that a duplicate in a later batch is one too."""
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
    return undated
