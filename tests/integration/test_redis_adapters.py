"""What the Redis adapters must get right beyond the shared port contracts: one exact count for
several processes, a script cache that Redis forgets, a Redis that is down or comes back, the
container's wiring and what the HTTP rate-limit guard does while Redis is away."""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from dependency_injector import providers
from litestar import Litestar, get, post
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.adapters.redis import (
    RATE_LIMITER_DEPENDENCY,
    URL_CACHE_DEPENDENCY,
    RedisRateLimiter,
    RedisUrlCache,
    redis_client_from_url,
)
from imgproc_core.adapters.redis.rate_limiter import GCRA_SCRIPT
from imgproc_core.container import build_container
from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.ports.cache import RateLimit
from imgproc_core.testing import settings_for_tests
from imgproc_http.errors import exception_handlers
from imgproc_http.rate_limits import RATE_LIMIT_OPT, RateLimitGuard, add_rate_limit_headers
from tests.support.redis import (
    count_passing_hits,
    delete_keys,
    free_port,
    redis_server_url,
    throwaway_redis,
    unique_key_prefix,
)

logger = logging.getLogger(__name__)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_url() -> str:
    return redis_server_url()


@pytest.fixture
def prefix() -> str:
    return unique_key_prefix("it")


@pytest.fixture
def client(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    client = redis_client_from_url(redis_url)
    try:
        yield client
    finally:
        delete_keys(client, prefix)
        client.close()


@pytest.fixture
def closed_port_url() -> str:
    """A Redis URL on a port where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


# -- one count for every process ------------------------------------------------------------------


@pytest.mark.parametrize("use_server_time", [True, False], ids=["server-time", "process-clock"])
def test_processes_sharing_one_redis_let_exactly_the_limit_through(
    redis_url: str, client: redis.Redis, prefix: str, use_server_time: bool
) -> None:
    rate = RateLimit(337, 3600.0)
    processes, hits = 4, 200
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    # A pool's tasks cannot take a plain barrier as an argument; a manager's proxy they can.
    with context.Manager() as manager, context.Pool(processes) as pool:
        barrier = manager.Barrier(processes)
        results = pool.starmap(
            count_passing_hits,
            [(redis_url, prefix, rate, hits, use_server_time, barrier)] * processes,
        )
    logger.info(
        "%d processes x %d hits: %s passed, %.3f s",
        processes,
        hits,
        results,
        time.perf_counter() - started,
    )

    assert sum(results) == rate.limit
    # The bucket is one key, and it expires once the window has refilled.
    keys = list(client.scan_iter(match=f"{prefix}*"))
    assert len(keys) == 1
    ttl_ms = client.pttl(keys[0])
    assert 0 < ttl_ms <= (rate.window_seconds + 2) * 1000


def test_a_key_expires_once_its_bucket_is_full_again(client: redis.Redis, prefix: str) -> None:
    clock = ManualClock()
    limiter = RedisRateLimiter(client, clock, key_prefix=prefix, expiry_grace_seconds=0.5)
    rate = RateLimit(4, 2.0)

    first = limiter.hit("k", rate)
    [key] = client.scan_iter(match=f"{prefix}*")
    one_hit_ttl = client.pttl(key)
    limiter.hit("k", rate)
    two_hits_ttl = client.pttl(key)

    # One hit fills the bucket back in 0.5 s, two in 1 s; plus the grace of 0.5 s.
    assert first.reset_after == pytest.approx(0.5)
    assert 900 <= one_hit_ttl <= 1002
    assert 1400 <= two_hits_ttl <= 1502


def test_a_rate_too_large_to_count_exactly_is_refused(client: redis.Redis, prefix: str) -> None:
    limiter = RedisRateLimiter(client, ManualClock(), key_prefix=prefix)
    with pytest.raises(ValueError, match="too large"):
        limiter.hit("k", RateLimit(10_000_000, 3600.0))
    with pytest.raises(ValueError, match="at least one hit"):
        limiter.hit("k", RateLimit(0, 60.0))


def test_server_time_counts_like_the_process_clock(client: redis.Redis, prefix: str) -> None:
    limiter = RedisRateLimiter(client, None, key_prefix=prefix)
    rate = RateLimit(3, 3600.0)

    decisions = [limiter.hit("k", rate) for _ in range(4)]

    assert limiter.uses_server_time
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert 0 < decisions[-1].retry_after <= 1200


# -- the script cache ---------------------------------------------------------------------------


def test_the_script_is_loaded_again_after_script_flush(client: redis.Redis, prefix: str) -> None:
    limiter = RedisRateLimiter(client, ManualClock(), key_prefix=prefix)
    rate = RateLimit(5, 60.0)
    sha = client.register_script(GCRA_SCRIPT).sha
    assert limiter.hit("k", rate).remaining == 4
    assert client.script_exists(sha) == [True]

    client.script_flush()
    assert client.script_exists(sha) == [False]

    assert limiter.hit("k", rate).remaining == 3
    assert client.script_exists(sha) == [True]


# -- a Redis that is down, or goes away and comes back --------------------------------------------


def test_a_stopped_redis_is_reported_unavailable(closed_port_url: str) -> None:
    client = redis_client_from_url(closed_port_url)
    clock = ManualClock()
    limiter = RedisRateLimiter(client, clock)
    cache = RedisUrlCache(client, clock)
    calls: dict[str, Any] = {
        "rate limiter hit": lambda: limiter.hit("k", RateLimit(5, 60.0)),
        "cache get": lambda: cache.get("k"),
        "cache set": lambda: cache.set("k", "https://a", 60),
        "cache delete": lambda: cache.delete("k"),
    }
    try:
        for name, call in calls.items():
            started = time.perf_counter()
            with pytest.raises(DependencyUnavailable) as raised:
                call()
            logger.info(
                "%s on a closed port: %s after %.3f s",
                name,
                type(raised.value.__cause__).__name__,
                time.perf_counter() - started,
            )
            expected = RATE_LIMITER_DEPENDENCY if name.startswith("rate") else URL_CACHE_DEPENDENCY
            assert raised.value.dependency == expected
            assert isinstance(raised.value.__cause__, redis.ConnectionError)
            assert raised.value.retry_after > 0
    finally:
        client.close()


def test_a_redis_that_comes_back_is_used_again_by_the_same_client(tmp_path: Path) -> None:
    with throwaway_redis(tmp_path / "redis") as server:
        client = redis_client_from_url(server.url)
        clock = ManualClock()
        limiter = RedisRateLimiter(client, clock)
        cache = RedisUrlCache(client, clock)
        rate = RateLimit(3, 60.0)
        try:
            assert limiter.hit("k", rate).remaining == 2
            cache.set("k", "https://a", 60)
            assert cache.get("k") == "https://a"

            server.stop()
            for call in (lambda: limiter.hit("k", rate), lambda: cache.get("k")):
                started = time.perf_counter()
                with pytest.raises(DependencyUnavailable):
                    call()
                logger.info("while down: failed after %.3f s", time.perf_counter() - started)

            server.start()
            started = time.perf_counter()
            # A new, empty server: the count starts afresh, the script is loaded again.
            assert limiter.hit("k", rate).remaining == 2
            logger.info("first hit after the restart: %.3f s", time.perf_counter() - started)
            assert cache.get("k") is None
            cache.set("k", "https://b", 60)
            assert cache.get("k") == "https://b"

            # A restart between two commands: the pooled connection is dead, and the client
            # replaces it on its own within the same call.
            server.stop()
            server.start()
            assert cache.get("k") is None
            assert limiter.hit("k", rate).remaining == 2
        finally:
            client.close()


# -- the container ------------------------------------------------------------------------------


def test_the_container_builds_both_adapters_on_one_client(redis_url: str, prefix: str) -> None:
    container = build_container(
        settings_for_tests(rate_limiter="redis", url_cache="redis", redis_url=redis_url)
    )
    container.init_resources()
    client = container.url_caching.client()
    assert container.rate_limiting.client() is client
    key = f"{prefix}container"
    try:
        limiter = container.rate_limiter()
        cache = container.url_cache()
        assert isinstance(limiter, RedisRateLimiter)
        assert limiter.uses_server_time
        assert isinstance(cache, RedisUrlCache)
        assert isinstance(client, redis.Redis)

        cache.set(key, "https://a", 60)
        assert cache.get(key) == "https://a"
        cache.delete(key)
        assert client.exists(f"imgproc:url:{key}") == 0
        assert limiter.hit(key, RateLimit(2, 60.0)).allowed
        assert client.exists(f"imgproc:rl:2:60000000:{key}") == 1
    finally:
        client.delete(f"imgproc:rl:2:60000000:{key}")
        container.shutdown_resources()


def test_the_container_opens_no_client_when_redis_is_not_chosen() -> None:
    container = build_container(settings_for_tests())
    container.init_resources()
    try:
        assert not list(container.traverse(types=[providers.Resource]))
        assert type(container.rate_limiter()).__name__ == "InMemoryRateLimiter"
    finally:
        container.shutdown_resources()


# -- the HTTP guard while Redis is down ---------------------------------------------------------


@post("/upload", opt={RATE_LIMIT_OPT: "upload"}, sync_to_thread=False)
def _upload() -> str:
    return "uploaded"


@post("/login", opt={RATE_LIMIT_OPT: "auth"}, sync_to_thread=False)
def _login() -> str:
    return "logged in"


@get("/open", sync_to_thread=False)
def _open() -> str:
    return "open"


def test_without_redis_uploads_pass_and_logins_are_refused(closed_port_url: str) -> None:
    client = redis_client_from_url(closed_port_url)
    registry = CollectorRegistry()
    rate = RateLimit(1, 60.0)
    guard = RateLimitGuard(
        RedisRateLimiter(client, ManualClock()),
        {"upload": rate, "transform": rate, "auth": rate},
        registry=registry,
    )
    app = Litestar(
        route_handlers=[_upload, _login, _open],
        guards=[guard],
        before_send=[add_rate_limit_headers],
        exception_handlers=exception_handlers(),
    )

    def counted(policy: str, outcome: str) -> float | None:
        return registry.get_sample_value(
            "imgproc_rate_limiter_unavailable_total", {"policy": policy, "outcome": outcome}
        )

    try:
        with TestClient(app) as http:
            uploads = [http.post("/upload") for _ in range(3)]
            login = http.post("/login")
            opened = http.get("/open")
    finally:
        client.close()

    # With a limit of one a minute, the second upload would be refused if anything counted.
    assert [r.status_code for r in uploads] == [201, 201, 201]
    assert all("RateLimit-Limit" not in r.headers for r in uploads)
    assert login.status_code == 503
    assert int(login.headers["Retry-After"]) >= 1
    assert login.json()["code"] == "dependency_unavailable"
    assert "rate limiter" in login.json()["detail"]
    assert opened.status_code == 200
    assert counted("upload", "allowed") == 3
    assert counted("auth", "refused") == 1
