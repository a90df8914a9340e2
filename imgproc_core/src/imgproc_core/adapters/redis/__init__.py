"""The production profile's rate limiter and URL cache on Redis. Needs the ``redis`` extra.

Both adapters share one client (:func:`redis_client_from_url`) whose short timeouts make a
stopped Redis fail within about a second, and which reconnects on its own when Redis returns.
Whatever Redis raises leaves the adapters as
:class:`~imgproc_core.domain.errors.DependencyUnavailable`.
"""

from imgproc_core.adapters.redis.client import redis_client_from_url
from imgproc_core.adapters.redis.rate_limiter import (
    DEFAULT_RATE_LIMIT_PREFIX,
    RATE_LIMITER_DEPENDENCY,
    RedisRateLimiter,
)
from imgproc_core.adapters.redis.url_cache import (
    DEFAULT_URL_CACHE_PREFIX,
    URL_CACHE_DEPENDENCY,
    RedisUrlCache,
)

__all__ = [
    "DEFAULT_RATE_LIMIT_PREFIX",
    "DEFAULT_URL_CACHE_PREFIX",
    "RATE_LIMITER_DEPENDENCY",
    "URL_CACHE_DEPENDENCY",
    "RedisRateLimiter",
    "RedisUrlCache",
    "redis_client_from_url",
]
