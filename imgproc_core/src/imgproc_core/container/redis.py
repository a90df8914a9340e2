"""Redis's composition root: download URLs cached and rate limits counted once for every API
process. Needs the ``redis`` extra."""

from __future__ import annotations

from collections.abc import Iterator

import redis
from dependency_injector import containers, providers

from imgproc_core.adapters.redis import RedisRateLimiter, RedisUrlCache, redis_client_from_url
from imgproc_core.ports import Clock
from imgproc_core.settings import Settings


def open_client(url: str) -> Iterator[redis.Redis]:
    """A client of ``url``. It connects on its first command, so opening it needs no running
    Redis; its connections are closed with the container's resources."""
    client = redis_client_from_url(url)
    try:
        yield client
    finally:
        client.close()


class RedisCaching(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    client = providers.Resource(open_client, settings.provided.redis_url)
    url_cache = providers.Singleton(RedisUrlCache, client, clock)
    #: On Redis's own clock: every API process counts against the same time, whatever the
    #: hosts' clocks say.
    rate_limiter = providers.Singleton(RedisRateLimiter, client, clock=None)
