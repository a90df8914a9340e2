"""Rate limiting and URL caching in process memory: the embedded profile's real adapters."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Final

from imgproc_core.ports.cache import RateLimit, RateLimitDecision
from imgproc_core.ports.clock import Clock

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_MICROS_PER_SECOND: Final = 1_000_000


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


class InMemoryRateLimiter:
    """:class:`~imgproc_core.ports.RateLimiter` with the generic cell rate algorithm (GCRA).

    Each ``(key, rate)`` keeps one number, its theoretical arrival time (TAT): the moment the
    bucket would be empty again. A hit passes when, once counted, the TAT stays within one
    window of now; ``limit`` hits may come at once, then one every ``window / limit``. A refused
    hit changes nothing, so a client that keeps knocking is not locked out for longer.

    Times are integers in units of ``1 / limit`` microsecond: the emission interval
    ``window / limit`` is then a whole number of units, and exactly ``limit`` hits pass per
    window without float rounding letting one more in or keeping the last one out.

    A key whose TAT has passed holds no information (it behaves like a key never seen), so such
    keys are swept out; memory grows with the keys active within one window, not with every key
    ever seen.
    """

    def __init__(self, clock: Clock, *, sweep_threshold: int = 1024) -> None:
        self._clock = clock
        self._tats: dict[tuple[str, int, int], int] = {}
        self._lock = threading.Lock()
        self._sweep_threshold = sweep_threshold
        self._next_sweep = sweep_threshold

    def hit(self, key: str, rate: RateLimit) -> RateLimitDecision:
        limit = rate.limit
        window_us = round(rate.window_seconds * _MICROS_PER_SECOND)
        if limit < 1 or window_us < 1:
            raise ValueError(f"a rate allows at least one hit per positive window, not {rate}")
        interval = window_us
        window = window_us * limit
        state_key = (key, limit, window_us)
        with self._lock:
            now = _micros(self._clock.now()) * limit
            tat = max(self._tats.get(state_key, now), now)
            new_tat = tat + interval
            allow_at = new_tat - window
            if now < allow_at:
                return RateLimitDecision(
                    allowed=False,
                    limit=limit,
                    remaining=0,
                    reset_after=self._seconds(tat - now, limit),
                    retry_after=self._seconds(allow_at - now, limit),
                )
            self._tats[state_key] = new_tat
            if len(self._tats) >= self._next_sweep:
                self._sweep(now // limit)
        return RateLimitDecision(
            allowed=True,
            limit=limit,
            remaining=(window - (new_tat - now)) // interval,
            reset_after=self._seconds(new_tat - now, limit),
            retry_after=0.0,
        )

    def tracked_keys(self) -> int:
        """How many keys hold state (for tests and metrics; not part of the port)."""
        with self._lock:
            return len(self._tats)

    def _sweep(self, now_us: int) -> None:
        idle = [state for state, tat in self._tats.items() if tat <= now_us * state[1]]
        for state in idle:
            del self._tats[state]
        self._next_sweep = max(self._sweep_threshold, 2 * len(self._tats))

    @staticmethod
    def _seconds(units: int, limit: int) -> float:
        # Rounded up to the microsecond: a client that waits exactly this long gets through.
        return -(-units // limit) / _MICROS_PER_SECOND


class InMemoryUrlCache:
    """:class:`~imgproc_core.ports.UrlCache` in a dictionary with a time to live per entry.

    At most ``max_entries`` are kept; past that the least recently used go first. Expired
    entries are dropped when read, or sooner by that eviction.
    """

    def __init__(self, clock: Clock, *, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("a URL cache holds at least one entry")
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            url, expires_at = entry
            if self._clock.now() >= expires_at:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return url

    def set(self, key: str, url: str, ttl_seconds: float) -> None:
        with self._lock:
            if ttl_seconds <= 0:
                self._entries.pop(key, None)
                return
            self._entries[key] = (url, self._clock.now() + timedelta(seconds=ttl_seconds))
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def entry_count(self) -> int:
        """How many entries are held, expired ones included (not part of the port)."""
        with self._lock:
            return len(self._entries)
