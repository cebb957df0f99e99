"""The coordinator's health check (GET /healthz) and Prometheus metrics (GET /metrics).

Every figure is read from the database at the time it is asked for, never kept in a worker's memory: several
uvicorn workers (or hosts) sharing one PostgreSQL database all report the same totals, and a restart loses
none. Rounds, devices and check-ins are counted from the coordinator's own tables; stage durations from
`round_stage_ends` and refusals from `refusal_counts` (`observability`). Nothing here names a device.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from agent.server.cohort import ACTIVE, FINISHED, STATES
from agent.server.coordinator import Coordinator

log = logging.getLogger("ownrec.coordinator")
# Stages last up to the stage timeout (60 s by default); gathering a cohort may take many check-in windows.
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
STAGE_ORDER = ("forming", *ACTIVE)  # a summed cohort has no stage left: it waits for its period's release


def _twice(read):
    """`read()`, and once more if it fails: a connection the database dropped (a restart, a failover) fails
    once, then the storage opens a new one. A database that is down fails both."""
    try:
        return read()
    except Exception:  # noqa: BLE001 - any failure; the second attempt's is the one reported
        return read()


def health(coordinator: Coordinator) -> tuple[int, dict[str, Any]]:
    """(200, what is up) when the database answers; (503, that it does not) otherwise. No secrets, no devices."""

    def read():
        with coordinator.storage.read() as tx:
            (version,) = tx.one("select max(version) from releases")
            (active,) = tx.one(f"select count(*) from rounds where state not in ({', '.join('?' * len(FINISHED))})",
                               list(FINISHED))
        return version, active

    try:
        version, active = _twice(read)
    except Exception as error:  # noqa: BLE001 - whatever stops a query makes the coordinator unhealthy
        log.warning("health check: the database did not answer (%s)", type(error).__name__)
        return 503, {"status": "unavailable", "database": "unreachable"}
    return 200, {"status": "ok", "database": "reachable", "latest_version": int(version),
                 "active_rounds": int(active)}


class DatabaseCollector:
    """The metrics, collected from the database at each scrape (one read transaction, a few aggregate queries)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def collect(self):
        with self.coordinator.storage.read() as tx:
            by_state = dict(tx.all("select state, count(*) from rounds group by state"))
            (registered,) = tx.one("select count(*) from devices")
            (enrolled,) = tx.one("select count(*) from device_enrolments")
            (checkins,) = tx.one("select count(*) from participants")
            refusals = tx.all("select code, status, refusals from refusal_counts order by code, status")
            buckets = ", ".join("sum(case when seconds <= ? then 1 else 0 end)" for _ in STAGE_BUCKETS)
            stages = {row[0]: row[1:] for row in tx.all(
                f"select stage, count(*), sum(seconds), {buckets} from round_stage_ends group by stage",
                list(STAGE_BUCKETS))}
            (releases,) = tx.one("select count(*) from releases where round_id is not null")
            (latest,) = tx.one("select max(version) from releases")
        info = self.coordinator.info()

        finished = CounterMetricFamily("ownrec_rounds_finished", "Rounds that ended, by how they ended: done "
                                       "(released), withheld or aborted.", labels=["state"])
        for state in FINISHED:
            finished.add_metric([state], int(by_state.get(state, 0)))
        active = GaugeMetricFamily("ownrec_rounds_active", "Rounds under way, by state (forming: gathering a "
                                   "cohort; then the four stages; summed: waiting for its period's release).",
                                   labels=["state"])
        for state in STATES:
            if state not in FINISHED:
                active.add_metric([state], int(by_state.get(state, 0)))
        yield finished
        yield active
        yield GaugeMetricFamily("ownrec_devices_registered", "Device keys registered.", value=int(registered))
        yield GaugeMetricFamily("ownrec_devices_enrolled", "Devices admitted with an enrolment code.",
                                value=int(enrolled))
        yield CounterMetricFamily("ownrec_checkins", "Check-ins that joined a cohort.", value=int(checkins))
        refused = CounterMetricFamily("ownrec_refusals", "Refused requests, by error code and HTTP status.",
                                      labels=["code", "status"])
        for code, status, count in refusals:
            refused.add_metric([code, str(status)], int(count))
        yield refused
        durations = HistogramMetricFamily("ownrec_stage_duration_seconds", "How long each stage of a round took "
                                          "(forming: from the round's opening to its cohort).", labels=["stage"])
        for stage in STAGE_ORDER:
            count, total, *cumulative = stages.get(stage, (0, 0.0) + (0,) * len(STAGE_BUCKETS))
            durations.add_metric([stage], [(repr(b), int(c or 0)) for b, c in zip(STAGE_BUCKETS, cumulative)]
                                 + [("+Inf", int(count))], float(total or 0.0))
        yield durations
        yield CounterMetricFamily("ownrec_releases", "Releases published by rounds (the first, initial release "
                                  "excluded).", value=int(releases))
        yield GaugeMetricFamily("ownrec_release_latest_version", "The latest release's version.", value=int(latest))
        yield GaugeMetricFamily("ownrec_privacy_epsilon_spent", "The most epsilon any device has spent (a step for "
                                "each release period its update was summed in).", value=float(info["epsilon"]))
        yield GaugeMetricFamily("ownrec_privacy_epsilon_budget", "The configured epsilon budget per device: a "
                                "device's check-in is refused once another round would exceed it.",
                                value=float(info["epsilon_budget"]))
        yield GaugeMetricFamily("ownrec_privacy_delta", "Delta of the privacy spent.", value=float(info["delta"]))
        yield GaugeMetricFamily("ownrec_privacy_devices_at_budget", "Devices that another round would take above "
                                "the budget (refused from now on).", value=int(info["devices_at_budget"]))


def metrics_registry(coordinator: Coordinator) -> CollectorRegistry:
    # auto_describe off: registering must not query the database (the app is built before it serves).
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(coordinator))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text format of every metric (raises if the database cannot be read)."""
    return _twice(lambda: generate_latest(registry))


def bearer_token_matches(header: str | None, token: str) -> bool:
    """An `Authorization: Bearer TOKEN` header carrying `token` (compared in constant time)."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())
