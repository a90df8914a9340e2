"""A clock that moves only when told to."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Final

#: Where a :class:`ManualClock` starts when given nothing: a fixed moment, so that runs repeat.
DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)


class ManualClock:
    """A :class:`~imgproc_core.ports.Clock` for tests: time stands still until :meth:`advance`.

    Time never goes backwards, as on a well-behaved system clock; code that measures durations
    from two readings may rely on that.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = DEFAULT_START
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("a ManualClock starts at a timezone-aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float | timedelta) -> datetime:
        """Move time forward by ``seconds`` (not backward) and return the new time."""
        step = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        if step < timedelta(0):
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._now += step
            return self._now
