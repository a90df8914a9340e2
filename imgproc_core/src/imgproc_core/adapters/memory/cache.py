"""Rate limiting and URL caching in process memory: the embedded profile's real adapters."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from imgproc_core.adapters.gcra import GcraRate, epoch_micros
from imgproc_core.ports.cache import RateLimit, RateLimitDecision
from imgproc_core.ports.clock import Clock


class InMemoryRateLimiter:
    """:class:`~imgproc_core.ports.RateLimiter` with the generic cell rate algorithm (GCRA) of
    :mod:`imgproc_core.adapters.gcra`, each ``(key, rate)``'s theoretical arrival time (TAT)
    kept in a dictionary, in the algorithm's units.

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
        gcra = GcraRate.of(rate)
        state_key = (key, gcra.limit, gcra.interval)
        with self._lock:
            now_us = epoch_micros(self._clock.now())
            now = gcra.units(now_us)
            tat = self._tats.get(state_key)
            hit = gcra.hit(0 if tat is None else tat - now)
            if hit.ahead is not None:
                self._tats[state_key] = now + hit.ahead
                if len(self._tats) >= self._next_sweep:
                    self._sweep(now_us)
        return hit.decision

    def tracked_keys(self) -> int:
        """How many keys hold state (for tests and metrics; not part of the port)."""
        with self._lock:
            return len(self._tats)

    def _sweep(self, now_us: int) -> None:
        idle = [state for state, tat in self._tats.items() if tat <= now_us * state[1]]
        for state in idle:
            del self._tats[state]
        self._next_sweep = max(self._sweep_threshold, 2 * len(self._tats))


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
