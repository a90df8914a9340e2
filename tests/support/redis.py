"""Redis for tests: the project's private server, and the Redis adapters for the contract tests.

``redis_rate_limiter(request, clock)`` and ``redis_url_cache(request, clock)`` have the shape of
the contract tests' implementations: add ``pytest.param(redis_rate_limiter, id="redis",
marks=pytest.mark.integration)`` to a contract module's ``IMPLEMENTATIONS``. Each test gets a
key prefix of its own, so tests never see each other's keys, and its keys are deleted when it
ends.

Redis comes from ``IMGPROC_TEST_REDIS_URL`` when it is set, else from
``scripts/services/redis.sh start``. When neither gives a server that answers, the test fails
loudly: an integration test never skips for want of its service.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import redis

from imgproc_core.adapters.redis import RedisRateLimiter, RedisUrlCache, redis_client_from_url
from imgproc_core.ports.cache import RateLimit
from imgproc_core.ports.clock import Clock
from tests.support.waiting import wait_until

ROOT: Final = Path(__file__).resolve().parents[2]
REDIS_SCRIPT: Final = ROOT / "scripts" / "services" / "redis.sh"
REDIS_URL_VARIABLE: Final = "IMGPROC_TEST_REDIS_URL"
#: Keys the tests write start with this, so a leftover one is easy to recognise.
TEST_KEY_PREFIX: Final = "imgproc-test:"


@functools.cache
def redis_server_url() -> str:
    """The URL of a running test Redis, started on first use; fails the test if none."""
    url = os.environ.get(REDIS_URL_VARIABLE)
    if not url:
        url = _start_private_redis()
    client = redis_client_from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis at {url} does not answer ({exc}). Start it with "
            f"`{REDIS_SCRIPT.relative_to(ROOT)} start`, or point {REDIS_URL_VARIABLE} at a "
            "server where the tests may write keys under "
            f"{TEST_KEY_PREFIX!r}.",
            pytrace=False,
        )
    finally:
        client.close()
    return url


def _start_private_redis() -> str:
    def run(command: str) -> str:
        try:
            done = subprocess.run(
                [str(REDIS_SCRIPT), command],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"{REDIS_SCRIPT} {command} could not run: {exc}", pytrace=False)
        if done.returncode != 0:
            pytest.fail(
                f"{REDIS_SCRIPT} {command} failed with exit code {done.returncode} and "
                f"{REDIS_URL_VARIABLE} is not set; the integration tests need Redis.\n"
                f"{done.stdout}{done.stderr}",
                pytrace=False,
            )
        return done.stdout.strip()

    run("start")
    return run("url")


def unique_key_prefix(kind: str) -> str:
    """A prefix no other test uses, such as ``imgproc-test:3f2a...:rl:``."""
    return f"{TEST_KEY_PREFIX}{uuid.uuid4().hex}:{kind}:"


def delete_keys(client: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix`` (which holds no glob characters); how many went."""
    deleted = 0
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        deleted += int(client.delete(key))
    return deleted


def client_for_test(request: pytest.FixtureRequest, prefix: str) -> redis.Redis:
    """A client of the test Redis, closed when the test ends after deleting ``prefix``'s keys."""
    client = redis_client_from_url(redis_server_url())

    def clean_up() -> None:
        try:
            delete_keys(client, prefix)
        finally:
            client.close()

    request.addfinalizer(clean_up)
    return client


def redis_rate_limiter(request: pytest.FixtureRequest, clock: Clock) -> RedisRateLimiter:
    """A limiter on the test Redis that reads time from ``clock``, with keys of its own."""
    prefix = unique_key_prefix("rl")
    return RedisRateLimiter(client_for_test(request, prefix), clock, key_prefix=prefix)


def redis_url_cache(request: pytest.FixtureRequest, clock: Clock) -> RedisUrlCache:
    """A URL cache on the test Redis, expiring entries by ``clock``, with keys of its own."""
    prefix = unique_key_prefix("url")
    return RedisUrlCache(client_for_test(request, prefix), clock, key_prefix=prefix)


# -- helpers for the integration tests ----------------------------------------------------------


def count_passing_hits(
    url: str,
    key_prefix: str,
    rate: RateLimit,
    hits: int,
    use_server_time: bool,
    start: Any,
) -> int:
    """Run in a separate process: wait at ``start`` (a multiprocessing barrier), then hit one
    shared key ``hits`` times with a limiter of its own; how many passed."""
    from imgproc_core.adapters.system import SystemClock

    client = redis_client_from_url(url)
    try:
        clock = None if use_server_time else SystemClock()
        limiter = RedisRateLimiter(client, clock, key_prefix=key_prefix)
        start.wait(timeout=60)
        return sum(limiter.hit("shared", rate).allowed for _ in range(hits))
    finally:
        client.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ThrowawayRedis:
    """A redis-server of the test's own on ``port``, which the test stops and starts at will.

    It saves nothing, so every start begins empty.
    """

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail(
                "redis-server is not on PATH; this test starts one of its own "
                f"(`{REDIS_SCRIPT.relative_to(ROOT)} start` installs it)",
                pytrace=False,
            )
        self._folder.mkdir(parents=True, exist_ok=True)
        log = self._folder / "redis.log"
        self._process = subprocess.Popen(
            [
                server,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                *("--dir", str(self._folder), "--logfile", str(log)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process = self._process
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)

        def answers() -> bool:
            if process.poll() is not None:
                output = log.read_text() if log.exists() else ""
                pytest.fail(f"redis-server on port {self.port} exited:\n{output}")
            return bool(probe.ping())

        try:
            wait_until(
                answers,
                timeout=timeout,
                interval=0.05,
                message=f"redis-server on port {self.port} did not answer",
                ignoring=redis.RedisError,
            )
        finally:
            probe.close()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.kill()
        self._process.wait(timeout=30)
        self._process = None


@contextlib.contextmanager
def throwaway_redis(folder: Path) -> Iterator[ThrowawayRedis]:
    """A started :class:`ThrowawayRedis` on a free port, stopped when the block ends."""
    server = ThrowawayRedis(free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
