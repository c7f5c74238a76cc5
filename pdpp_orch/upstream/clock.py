"""The simulated upstreams' notion of now."""

from __future__ import annotations

import time
from datetime import datetime, timedelta


class Clock:
    """The server's notion of now: starts at the world anchor, runs in real time, can be shifted.

    Starting at the anchor keeps `until` in plans meaningful ("429s for the first 24 h") and
    lets tests on Temporal's time-skipping server move it forward with the workflow clock.
    """

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._t0 = time.monotonic()
        self._offset = timedelta()

    def _real(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0)

    def now(self) -> datetime:
        """Current simulated time (aware, UTC)."""
        return self._real() + self._offset

    def advance(self, seconds: float) -> None:
        """Move now forward (or back, if negative) by `seconds`."""
        self._offset += timedelta(seconds=seconds)

    def set(self, now: datetime) -> None:
        """Make now equal `now`."""
        self._offset = now - self._real()
