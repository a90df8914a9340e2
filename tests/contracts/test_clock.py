"""Contract of Clock, run against every implementation in IMPLEMENTATIONS."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.adapters.system import SystemClock
from imgproc_core.ports.clock import Clock

IMPLEMENTATIONS = [
    pytest.param(SystemClock, id="system"),
    pytest.param(ManualClock, id="manual"),
    pytest.param(lambda: ManualClock(datetime(2030, 6, 1, 12, tzinfo=UTC)), id="manual-2030"),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def clock(request: pytest.FixtureRequest) -> Clock:
    make: Callable[[], Clock] = request.param
    return make()


def test_now_is_aware_and_in_utc(clock: Clock) -> None:
    now = clock.now()
    assert isinstance(now, datetime)
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


def test_time_never_goes_backwards(clock: Clock) -> None:
    readings = [clock.now() for _ in range(1000)]
    assert readings == sorted(readings)


def test_now_is_a_plausible_date(clock: Clock) -> None:
    assert datetime(2020, 1, 1, tzinfo=UTC) < clock.now() < datetime(2100, 1, 1, tzinfo=UTC)
