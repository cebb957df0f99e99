"""Pace steering: when to tell a device the coordinator turned away to come back.

Devices refused because the cohorts are full (`round_in_progress`) or the period's release is pending
(`release_pending`) would all be told the same moment (when a running cohort should end, when the release is
due), and all come back then: with many devices and few places, each would ask again every few minutes, and
most asks would be refused again. So the time told is at least how long the coordinator needs to take in the
devices it has turned away lately: the distinct devices refused over the last hour, over the most devices it
takes in a second (`max_concurrent_rounds` cohorts of `max_cohort`, each lasting a check-in window and four
stages at most). A few waiting devices change nothing; a hundred thousand are told to come back over hours,
about when there will be room. Each worker counts the devices it refused itself.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from agent.server.settings import CoordinatorSettings

HORIZON_SECONDS = 3600.0


class RefusalPace:
    def __init__(self, settings: CoordinatorSettings) -> None:
        cohort_seconds = settings.checkin_window + 4 * settings.stage_timeout
        self.devices_per_second = settings.max_concurrent_rounds * settings.max_cohort / cohort_seconds
        self._refused: OrderedDict[str, float] = OrderedDict()  # device -> when last refused, oldest first
        self._lock = threading.Lock()

    def come_back_in(self, device: str, now: float, earliest: float) -> float:
        """Note that `device` was turned away at `now`; the seconds to tell it: `earliest`, or longer when the
        devices turned away over the last hour need longer to be taken in."""
        with self._lock:
            self._refused.pop(device, None)
            self._refused[device] = now
            while self._refused and next(iter(self._refused.values())) < now - HORIZON_SECONDS:
                self._refused.popitem(last=False)
            waiting = len(self._refused)
        return max(earliest, waiting / self.devices_per_second)
