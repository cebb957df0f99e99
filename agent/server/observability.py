"""The coordinator's structured logs: round events and refused requests, one JSON object a line (or text).

Round events (logger `ownrec.coordinator`): `round_opened`, `cohort_formed` (cohort size), `stage_ended` (stage,
seconds, survivors), and the end of a round: `round_summed` (its sum waits for its period's release),
`round_withheld` or `round_aborted` (reason); then `release_published` (version, the cohorts it combined). Each stage end is also written to `round_stage_ends`, in the transaction that ends the stage, for the
metrics (`metrics`). A refused request logs `request_refused`: code, HTTP status, method, route, path, client
address and the device id once the request's signature is verified (`claimed_device` when it was not). Never a
request body, an update, a key or a token: the fields are the ones named here.

A round event is noted inside the coordinator's write transaction, but a refused request rolls that transaction
back (the coordinator refuses before it writes, `coordinator`). So during a request the events wait in the
request's record (`RequestLogMiddleware`) and are logged only once the request succeeded; outside a request
(a test or a tool driving the Coordinator directly) they are logged at once. A request its client cut off
mid-way may lose its lines; the metrics, read from the database, still count what it committed.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import sys
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from agent.federation.signing import AUTH_HEADER, MalformedAuth, parse_request_auth

log = logging.getLogger("ownrec.coordinator")
# What a log line may carry besides its message: everything else a caller passes is dropped, not logged.
FIELDS = ("event", "round_id", "round_ids", "cohorts", "cohort_size", "stage", "seconds", "survivors", "state", "reason", "version",
          "summands", "code", "status", "method", "route", "path", "address", "device", "claimed_device")


def _emit(level: int, message: str, fields: dict[str, Any]) -> None:
    log.log(level, message, extra={"ownrec": fields})


@dataclass
class RequestRecord:
    """What one HTTP request has done so far: the verified device, and the round events it caused."""

    device: str | None = None
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


_request: ContextVar[RequestRecord | None] = ContextVar("ownrec_request", default=None)


def _event(level: int, message: str, **fields: Any) -> None:
    record = _request.get()
    if record is None:
        _emit(level, message, fields)
    else:
        record.events.append((level, message, fields))


def note_device(device: str) -> None:
    """The request's signature is verified and it comes from `device` (its refusals name it)."""
    record = _request.get()
    if record is not None:
        record.device = device


# -- round events (called by the coordinator, inside its write transaction) -----------------------

STAGE_ENDS_SQL = ("insert into round_stage_ends (round_id, stage, ended_at, seconds, survivors) "
                  "values (?, ?, ?, ?, ?) on conflict (round_id, stage) do nothing")


def round_opened(round_id: str) -> None:
    _event(logging.INFO, f"round {round_id} opened: gathering a cohort", event="round_opened", round_id=round_id)


def stage_ended(tx: Any, round_id: str, stage: str, survivors: int, now: float) -> None:
    """Stage `stage` of the round (its state while the stage ran: forming, advertise, share, masked, unmask) ended
    with `survivors` participants having completed it. Its duration runs from the previous stage's end (for
    forming, from the round's opening)."""
    (previous,) = tx.one("select max(ended_at) from round_stage_ends where round_id = ?", [round_id])
    if previous is None:
        (previous,) = tx.one("select created_at from rounds where round_id = ?", [round_id])
    seconds = round(max(0.0, now - float(previous)), 3)
    tx.execute(STAGE_ENDS_SQL, [round_id, stage, now, seconds, survivors])
    if stage == "forming":
        _event(logging.INFO, f"round {round_id} formed with a cohort of {survivors} after {seconds:.1f} s",
               event="cohort_formed", round_id=round_id, cohort_size=survivors, seconds=seconds)
    else:
        _event(logging.INFO, f"round {round_id}: the {stage} stage ended after {seconds:.1f} s with {survivors} "
               "survivors", event="stage_ended", round_id=round_id, stage=stage, seconds=seconds, survivors=survivors)


def round_ended(round_id: str, state: str, reason: str | None = None, summands: int | None = None) -> None:
    """The round finished: `summed` (its sum of `summands` survivors waits for its period's release,
    `release_published`), `withheld` or `aborted`."""
    if state == "summed":
        _event(logging.INFO, f"round {round_id} summed {summands} survivors' inputs; its sum waits for the period's "
                             f"release", event="round_summed", round_id=round_id, state=state, summands=summands)
    else:  # a round withheld with summands had its noised sum computed (after unmasking): it counts as spent
        when = "" if state != "withheld" else " after unmasking" if summands is not None else " as its cohort formed"
        _event(logging.WARNING, f"round {round_id} {state}{when}: {reason}", event=f"round_{state}",
               round_id=round_id, state=state, reason=reason, summands=summands)


def release_published(version: int, round_ids: list[str], summands: int) -> None:
    """Release `version` combined the sums of these cohorts (`periods.publish_if_due`)."""
    _event(logging.INFO, f"release {version} published from {len(round_ids)} cohort(s), {summands} summands",
           event="release_published", version=version, round_ids=round_ids, cohorts=len(round_ids),
           summands=summands)


# -- refused requests (called by the app's error handler) ------------------------------------------

def request_refused(scope: dict[str, Any], headers: Any, code: str, status: int) -> None:
    fields: dict[str, Any] = {"event": "request_refused", "code": code, "status": status,
                              "method": scope.get("method"), "path": scope.get("path")}
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        fields["route"] = route.path
    client = scope.get("client")
    if client:
        fields["address"] = client[0]
    record = _request.get()
    if record is not None and record.device is not None:
        fields["device"] = record.device
    elif (auth := headers.get(AUTH_HEADER)) is not None:
        try:  # who the request says it is from, unverified: a refused signature proves nothing
            fields["claimed_device"] = parse_request_auth(auth).device_id
        except MalformedAuth:
            pass
    who = fields.get("device") or fields.get("claimed_device") or fields.get("address") or "unknown client"
    _emit(logging.INFO, f"refused {fields['method']} {fields['path']} from {who}: {status} {code}", fields)


class RefusalCounter:
    """Counts refusals by code and status in the database (`refusal_counts`), so every worker's /metrics
    shows the same totals. A request's count is committed before its refusal is answered; refusals that
    arrive while a write is under way are counted together by the next one (one write at a time per worker,
    whatever the rate). If the database cannot be written, the counts wait for the next refusal."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self._pending: Counter[tuple[str, int]] = Counter()
        self._lock: asyncio.Lock | None = None

    def _write(self, counts: dict[tuple[str, int], int]) -> None:
        with self.storage.write() as tx:
            tx.executemany("insert into refusal_counts (code, status, refusals) values (?, ?, ?) "
                           "on conflict (code, status) do update set refusals = refusal_counts.refusals + "
                           "excluded.refusals", [(code, status, n) for (code, status), n in sorted(counts.items())])

    async def record(self, code: str, status: int) -> None:
        # Imported here: the coordinator imports this module for its round events, and stays HTTP-free.
        from starlette.concurrency import run_in_threadpool

        self._pending[(code, status)] += 1
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._pending:
                return  # counted by the write that just ended
            counts, self._pending = self._pending, Counter()
            try:
                await run_in_threadpool(self._write, counts)
            except Exception as error:  # noqa: BLE001 - the refusal is still answered; counted next time
                self._pending.update(counts)
                log.warning("could not count refusals in the database (%s): they wait for the next refusal",
                            type(error).__name__)


class RequestLogMiddleware:
    """ASGI middleware: gives each request its `RequestRecord`, and logs the round events it caused once
    it has succeeded (a refused or failed request's transaction was rolled back: its events never happened)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord()
        token = _request.set(record)
        status = [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            _request.reset(token)
        if status[0] < 400:
            for level, message, fields in record.events:
                _emit(level, message, fields)


# -- formats ---------------------------------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the worker's pid, and the
    event's fields (FIELDS) when it has them. uvicorn's own lines come out the same way."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
            "pid": record.process}
        fields = getattr(record, "ownrec", None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if k in FIELDS and v is not None})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


LOG_FORMATS = ("auto", "json", "text")


def resolve_log_format(choice: str, stream: Any = None) -> str:
    """`auto`: text on a terminal, JSON otherwise (a service manager's journal, a container's log, a file)."""
    if choice not in LOG_FORMATS:
        raise ValueError(f"unknown log format {choice!r}: use one of {', '.join(LOG_FORMATS)}")
    if choice != "auto":
        return choice
    stream = stream if stream is not None else sys.stderr
    try:
        return "text" if os.isatty(stream.fileno()) else "json"
    except (AttributeError, OSError, ValueError):
        return "json"
