"""GCRA rate limiting in one Lua script, so that every API process shares one exact count.

The algorithm is :class:`~imgproc_core.adapters.memory.InMemoryRateLimiter`'s, and so are its
promises: exactly ``limit`` hits per window, a refused hit changes nothing, waits are rounded up
to the microsecond. What changes is where the state lives (a Redis string per key and rate)
and how the numbers are kept exact: Redis runs Lua 5.1, whose numbers are doubles, exact as
integers only below 2**53. An absolute time in units of 1/limit microsecond would pass that
(today is about 1.8e15 microseconds), so the script stores the theoretical arrival time (TAT)
as whole microseconds plus a remainder in 1/limit microsecond, and computes in units relative
to now, which stay below ``limit * window`` (checked here before the script runs).

Where "now" comes from is a choice made per instance:

- ``clock=None``: Redis's ``TIME``, read inside the script. Every API process, on every host,
  measures against the same clock, so the count is exact whatever their clocks say. This is
  the production wiring. (Writing after ``TIME`` in a script needs Redis 5 or later, where
  scripts are replicated by their effects.)
- ``clock=some_clock``: the caller's clock, sent as an argument. Tests drive time with a
  :class:`~imgproc_core.adapters.memory.ManualClock`; in production the processes agree only
  as far as their clocks do (with NTP, milliseconds: a few hits' worth of slack on a
  one-second window, nothing on a minute).

Each key expires when its bucket is full again (the TAT has passed), plus a grace period
(``expiry_grace_seconds``) so that a process whose clock lags Redis's never finds a state that
Redis dropped early; an expired key and a key past its TAT mean the same thing. Memory
therefore holds only the keys active within the last window.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

import redis

from imgproc_core.adapters.redis.client import redis_errors_as_unavailable
from imgproc_core.ports.cache import RateLimit, RateLimitDecision
from imgproc_core.ports.clock import Clock

DEFAULT_RATE_LIMIT_PREFIX: Final = "imgproc:rl:"
RATE_LIMITER_DEPENDENCY: Final = "rate limiter"
DEFAULT_EXPIRY_GRACE_SECONDS: Final = 1.0

#: Past this, ``limit * window`` in units of 1/limit microsecond is no longer an exact double.
MAX_EXACT_UNITS: Final = 2**53
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_MICROS_PER_SECOND: Final = 1_000_000

#: KEYS[1]: the state of one key at one rate, "<TAT microseconds>:<remainder>".
#: ARGV: now in microseconds ('' for Redis's own clock), limit, window in microseconds,
#: grace in milliseconds. Returns {allowed, reset units, retry units} in 1/limit microsecond,
#: where the reset units of a passing hit are its new TAT.
GCRA_SCRIPT: Final = """
local limit = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local window = interval * limit
local now
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
else
  now = tonumber(ARGV[1])
end

local ahead = 0
local stored = redis.call('GET', KEYS[1])
if stored then
  local micros, remainder = string.match(stored, '^(%d+):(%d+)$')
  if micros then
    ahead = (tonumber(micros) - now) * limit + tonumber(remainder)
    if ahead < 0 then
      ahead = 0
    end
  end
end

local after = ahead + interval
if after > window then
  return {0, ahead, after - window}
end

local micros = math.floor(after / limit)
local remainder = after - micros * limit
if remainder < 0 then
  micros = micros - 1
  remainder = remainder + limit
elseif remainder >= limit then
  micros = micros + 1
  remainder = remainder - limit
end
local ttl = math.ceil(micros / 1000) + 1 + tonumber(ARGV[4])
redis.call('SET', KEYS[1], string.format('%.0f:%.0f', now + micros, remainder), 'PX', ttl)
return {1, after, 0}
"""


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


class RedisRateLimiter:
    """:class:`~imgproc_core.ports.RateLimiter` on Redis: GCRA in one atomic script.

    ``clock`` is where time comes from; ``None`` reads Redis's own clock (see the module's
    documentation for the trade-off). Keys are ``{key_prefix}{limit}:{window µs}:{key}``, so
    the same key at two rates keeps two independent counts, as in memory. The script is
    loaded once and run by its SHA1; a Redis that forgot it (a restart, ``SCRIPT FLUSH``) gets
    it again on the same call.
    """

    def __init__(
        self,
        client: redis.Redis,
        clock: Clock | None,
        key_prefix: str = DEFAULT_RATE_LIMIT_PREFIX,
        *,
        expiry_grace_seconds: float = DEFAULT_EXPIRY_GRACE_SECONDS,
    ) -> None:
        if expiry_grace_seconds < 0:
            raise ValueError("the expiry grace is not negative")
        self._clock = clock
        self._key_prefix = key_prefix
        self._grace_ms = math.ceil(expiry_grace_seconds * 1000)
        self._script = client.register_script(GCRA_SCRIPT)

    @property
    def uses_server_time(self) -> bool:
        return self._clock is None

    def hit(self, key: str, rate: RateLimit) -> RateLimitDecision:
        limit = rate.limit
        window_us = round(rate.window_seconds * _MICROS_PER_SECOND)
        if limit < 1 or window_us < 1:
            raise ValueError(f"a rate allows at least one hit per positive window, not {rate}")
        interval = window_us
        window = window_us * limit
        if window >= MAX_EXACT_UNITS:
            raise ValueError(f"{rate} is too large to count exactly: lower the limit or window")
        now = "" if self._clock is None else str(_micros(self._clock.now()))
        with redis_errors_as_unavailable(RATE_LIMITER_DEPENDENCY):
            reply = self._script(
                keys=[f"{self._key_prefix}{limit}:{window_us}:{key}"],
                args=[now, limit, window_us, self._grace_ms],
            )
        allowed, reset_units, retry_units = (int(number) for number in reply)
        if not allowed:
            return RateLimitDecision(
                allowed=False,
                limit=limit,
                remaining=0,
                reset_after=_seconds(reset_units, limit),
                retry_after=_seconds(retry_units, limit),
            )
        return RateLimitDecision(
            allowed=True,
            limit=limit,
            remaining=(window - reset_units) // interval,
            reset_after=_seconds(reset_units, limit),
            retry_after=0.0,
        )


def _seconds(units: int, limit: int) -> float:
    # Rounded up to the microsecond: a client that waits exactly this long gets through.
    return -(-units // limit) / _MICROS_PER_SECOND
