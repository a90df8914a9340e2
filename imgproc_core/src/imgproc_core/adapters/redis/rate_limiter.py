"""GCRA rate limiting on Redis, so that every API process shares one exact count.

The arithmetic is :mod:`imgproc_core.adapters.gcra`'s, the one the in-memory limiter uses: this
adapter turns Redis's reply into a decision with the same :meth:`GcraRate.hit
<imgproc_core.adapters.gcra.GcraRate.hit>`, and the contract tests check, decision by decision,
that the two limiters agree with it.

Why a Lua script still applies the rule. The read of the theoretical arrival time (TAT), the
comparison with the window and the write of the new TAT must be one atomic step, or two API
processes both let the last hit of a window through. A script does that in one round trip and
never retries. The alternative, reading the TAT under ``WATCH`` and writing it in
``MULTI``/``EXEC`` with the Python arithmetic in between, is atomic too, but it takes four round
trips and starts over whenever another process wrote the key meanwhile. Measured against one
local Redis with every hit passing, it made about half the script's hits per second from one
process, and about a fifth from four processes hitting one key, where each hit was retried
about twice. A client hammering one key is exactly when a limiter must hold up, so the script
stays, and repeats only the one comparison it cannot do without (``ahead + interval >
window``). It returns how far the TAT lay past now and whether it counted the hit; Python
computes the decision from the former and checks it against the latter.

What the script adds is how the state is kept: Redis runs Lua 5.1, whose numbers are doubles,
exact as integers only below 2**53. An absolute time in units of 1/limit microsecond would pass
that (today is about 1.8e15 microseconds), so the script stores the TAT as whole microseconds
plus a remainder in 1/limit microsecond, and computes in units relative to now, which stay
below ``limit * window`` (checked here before the script runs).

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
from typing import Final

import redis

from imgproc_core.adapters.gcra import GcraRate, epoch_micros
from imgproc_core.adapters.redis.client import redis_errors_as_unavailable
from imgproc_core.ports.cache import RateLimit, RateLimitDecision
from imgproc_core.ports.clock import Clock

DEFAULT_RATE_LIMIT_PREFIX: Final = "imgproc:rl:"
RATE_LIMITER_DEPENDENCY: Final = "rate limiter"
DEFAULT_EXPIRY_GRACE_SECONDS: Final = 1.0

#: Past this, ``limit * window`` in units of 1/limit microsecond is no longer an exact double.
MAX_EXACT_UNITS: Final = 2**53

#: KEYS[1]: the TAT of one key at one rate, "<whole microseconds>:<remainder>".
#: ARGV: now in microseconds ('' for Redis's own clock), then the rate as
#: :class:`~imgproc_core.adapters.gcra.GcraRate` has it (limit, interval, window in units of
#: 1/limit microsecond), then the grace in milliseconds. Returns {counted, ahead}: 1 when the
#: hit passed and the TAT moved, and how far the TAT lay past now before the hit, in units.
GCRA_SCRIPT: Final = """
local limit = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
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

-- GcraRate.hit's rule: the one comparison that must happen here, atomically with the write.
local after = ahead + interval
if after > window then
  return {0, ahead}
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
local ttl = math.ceil(micros / 1000) + 1 + tonumber(ARGV[5])
redis.call('SET', KEYS[1], string.format('%.0f:%.0f', now + micros, remainder), 'PX', ttl)
return {1, ahead}
"""


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
        gcra = GcraRate.of(rate)
        if gcra.window >= MAX_EXACT_UNITS:
            raise ValueError(f"{rate} is too large to count exactly: lower the limit or window")
        now = "" if self._clock is None else str(epoch_micros(self._clock.now()))
        with redis_errors_as_unavailable(RATE_LIMITER_DEPENDENCY):
            reply = self._script(
                keys=[f"{self._key_prefix}{gcra.limit}:{gcra.interval}:{key}"],
                args=[now, gcra.limit, gcra.interval, gcra.window, self._grace_ms],
            )
        counted, ahead = (int(number) for number in reply)
        hit = gcra.hit(ahead)
        if (hit.ahead is not None) != bool(counted):
            raise RuntimeError(
                f"the rate limit script {'counted' if counted else 'refused'} a hit that "
                "imgproc_core.adapters.gcra did not: the two no longer apply the same rule"
            )
        return hit.decision
