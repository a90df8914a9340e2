"""The Redis client both adapters share, and the translation of its failures.

A rate limit is checked on the way into every limited request, so a Redis that is down or
stuck must cost a request about a second, not the library's defaults (5 s timeouts and ten
retries). A returning Redis needs nothing from anyone: the pool drops a connection the server
closed before lending it out, and a connection that breaks while in use is replaced by one
quick retry. Timeouts are not retried: the command may have run, and running the rate limit
script twice would count one hit twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from imgproc_core.domain.errors import DependencyUnavailable

CONNECT_TIMEOUT_SECONDS: Final = 0.5
COMMAND_TIMEOUT_SECONDS: Final = 1.0
#: A connection idle for longer is checked with PING before it carries a command.
HEALTH_CHECK_INTERVAL_SECONDS: Final = 10
CONNECTION_RETRIES: Final = 1


def redis_client_from_url(url: str, **options: Any) -> redis.Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``) that fails fast.

    ``options`` go to :meth:`redis.Redis.from_url` and win over the defaults here; options in
    the URL's query string (``?socket_timeout=2``) win over both. Nothing connects until the
    first command.
    """
    settings: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": COMMAND_TIMEOUT_SECONDS,
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
        "retry": Retry(
            ExponentialWithJitterBackoff(base=0.01, cap=0.1),
            CONNECTION_RETRIES,
            supported_errors=(RedisConnectionError,),
        ),
    }
    settings.update(options)
    return redis.Redis.from_url(url, **settings)


@contextmanager
def redis_errors_as_unavailable(dependency: str) -> Iterator[None]:
    """Turn whatever Redis raises into :class:`DependencyUnavailable` for ``dependency``.

    Refused and dropped connections, timeouts, a server still loading its data set, a
    read-only replica during a failover and a full memory are outages; an error reply to a
    well-formed command (a key of the wrong type left by something else) cannot be fixed by
    the caller either. Both leave the service without this dependency until Redis is sorted
    out, so both are reported the same way, with the exception's class in the message for the
    operator.
    """
    try:
        yield
    except RedisError as exc:
        reason = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {reason[0]}" if reason else type(exc).__name__
        raise DependencyUnavailable(
            f"Redis does not answer for the {dependency}: {detail}", dependency
        ) from exc
