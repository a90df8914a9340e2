"""Signed download URLs cached in Redis, shared by every API process.

Each entry is stored as ``"<expiry in microseconds since the epoch>|<url>"`` with a Redis
expiry (``PX``) of the same length. Two clocks thus bound an entry's life, and the earlier one
wins:

- the injected clock, checked on every read: this is what the contract tests drive with a
  :class:`~imgproc_core.adapters.memory.ManualClock`, which Redis's own clock does not follow;
- Redis's expiry, which removes the entry from memory without anyone reading it.

In production both are wall clocks and agree to within the hosts' clock skew; an entry that
one of them drops a little early is only a cache miss, and a miss costs one fresh signature.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

import redis

from imgproc_core.adapters.redis.client import redis_errors_as_unavailable
from imgproc_core.ports.clock import Clock

DEFAULT_URL_CACHE_PREFIX: Final = "imgproc:url:"
URL_CACHE_DEPENDENCY: Final = "cache"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_SEPARATOR: Final = "|"


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


class RedisUrlCache:
    """:class:`~imgproc_core.ports.UrlCache` on Redis strings with a time to live.

    Keys are ``{key_prefix}{key}``. An entry that cannot be read back (written by something
    else, or not UTF-8) is a miss, not an error.
    """

    def __init__(
        self, client: redis.Redis, clock: Clock, key_prefix: str = DEFAULT_URL_CACHE_PREFIX
    ) -> None:
        self._client = client
        self._clock = clock
        self._key_prefix = key_prefix

    def get(self, key: str) -> str | None:
        with redis_errors_as_unavailable(URL_CACHE_DEPENDENCY):
            stored: object = self._client.get(self._redis_key(key))
        if isinstance(stored, bytes):
            try:
                stored = stored.decode()
            except UnicodeDecodeError:
                return None
        if not isinstance(stored, str):
            return None
        expiry, separator, url = stored.partition(_SEPARATOR)
        if not separator or not expiry.isdigit():
            return None
        if int(expiry) <= _micros(self._clock.now()):
            return None
        return url

    def set(self, key: str, url: str, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            # Keeping nothing includes not keeping the entry this one would have replaced.
            self.delete(key)
            return
        expires_at = self._clock.now() + timedelta(seconds=ttl_seconds)
        ttl_ms = max(1, math.ceil(ttl_seconds * 1000))
        value = f"{_micros(expires_at)}{_SEPARATOR}{url}"
        with redis_errors_as_unavailable(URL_CACHE_DEPENDENCY):
            self._client.set(self._redis_key(key), value, px=ttl_ms)

    def delete(self, key: str) -> None:
        with redis_errors_as_unavailable(URL_CACHE_DEPENDENCY):
            self._client.delete(self._redis_key(key))

    def _redis_key(self, key: str) -> str:
        return f"{self._key_prefix}{key}"
