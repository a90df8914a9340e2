"""The operating system's clock."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """Wall-clock time in UTC, timezone-aware."""

    def now(self) -> datetime:
        return datetime.now(UTC)
