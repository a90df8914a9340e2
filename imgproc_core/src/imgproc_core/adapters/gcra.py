"""The generic cell rate algorithm (GCRA), written once for every rate limiter adapter.

A rate of ``limit`` hits per ``window`` keeps one number per key, its theoretical arrival time
(TAT): the moment the bucket would be empty again. A hit passes when, once counted, the TAT
stays within one window of now; ``limit`` hits may come at once, then one every
``window / limit``. A refused hit changes nothing, so a client that keeps knocking is not
locked out for longer.

Times are integers in units of ``1 / limit`` microsecond: the emission interval
``window / limit`` is then a whole number of units (the window's microseconds), and exactly
``limit`` hits pass per window without float rounding letting one more in or keeping the last
one out.

Where the TAT is kept is each adapter's business (a dictionary, a Redis string); what
:meth:`GcraRate.hit` takes is ``ahead``, how far the TAT lies past now, in units, and 0 when it
has passed (a key whose TAT has passed behaves like a key never seen). Counting relative to now
keeps every number below ``limit * window``, which is what lets Redis's Lua, whose numbers are
doubles, apply the same rule exactly (:mod:`imgproc_core.adapters.redis.rate_limiter`).

Why not a library: ``limits`` has fixed, moving and sliding windows but no GCRA; throttled-py
has GCRA with memory and Redis stores, but computes in float seconds (``window / limit`` is
rarely exact, so a window can let one hit too many through or keep the last one out), reads a
monotonic clock in memory that tests cannot move, and itself writes the algorithm twice, once in
Python and once in Lua. These thirty lines keep the counts exact and the clock injectable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from imgproc_core.ports.cache import RateLimit, RateLimitDecision

__all__ = ["MICROS_PER_SECOND", "GcraHit", "GcraRate", "epoch_micros"]

MICROS_PER_SECOND: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def epoch_micros(moment: datetime) -> int:
    """``moment`` in whole microseconds since the Unix epoch."""
    return (moment - _EPOCH) // _MICROSECOND


@dataclass(frozen=True, slots=True)
class GcraHit:
    decision: RateLimitDecision
    #: How far the TAT lies past now once this hit is counted, in units; ``None`` when the hit
    #: is refused, which leaves the TAT as it was.
    ahead: int | None


@dataclass(frozen=True, slots=True)
class GcraRate:
    """A :class:`~imgproc_core.ports.cache.RateLimit` in the algorithm's integer units."""

    limit: int
    #: The emission interval in units of 1/limit microsecond, which is the window in
    #: microseconds.
    interval: int

    @classmethod
    def of(cls, rate: RateLimit) -> GcraRate:
        """``ValueError`` for a rate that lets nothing through."""
        window_us = round(rate.window_seconds * MICROS_PER_SECOND)
        if rate.limit < 1 or window_us < 1:
            raise ValueError(f"a rate allows at least one hit per positive window, not {rate}")
        return cls(rate.limit, window_us)

    @property
    def window(self) -> int:
        """The window in units: the most the TAT may lie ahead of now."""
        return self.interval * self.limit

    def units(self, micros: int) -> int:
        """``micros`` microseconds in units of 1/limit microsecond."""
        return micros * self.limit

    def hit(self, ahead: int) -> GcraHit:
        """One hit when the TAT lies ``ahead`` units past now (0 when it has passed)."""
        ahead = max(ahead, 0)
        after = ahead + self.interval
        if after > self.window:
            refused = RateLimitDecision(
                allowed=False,
                limit=self.limit,
                remaining=0,
                reset_after=self._seconds(ahead),
                retry_after=self._seconds(after - self.window),
            )
            return GcraHit(refused, None)
        passed = RateLimitDecision(
            allowed=True,
            limit=self.limit,
            remaining=(self.window - after) // self.interval,
            reset_after=self._seconds(after),
            retry_after=0.0,
        )
        return GcraHit(passed, after)

    def _seconds(self, units: int) -> float:
        # Rounded up to the microsecond: a client that waits exactly this long gets through.
        return -(-units // self.limit) / MICROS_PER_SECOND
