"""Contract of UrlCache, run against every implementation in IMPLEMENTATIONS.

Entries expire by the injected ManualClock, which the tests move; nothing sleeps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from imgproc_core.adapters.memory import InMemoryUrlCache, ManualClock
from imgproc_core.ports.cache import UrlCache
from tests.support.redis import redis_url_cache

Implementation = Callable[[pytest.FixtureRequest, ManualClock], UrlCache]


def _memory(request: pytest.FixtureRequest, clock: ManualClock) -> UrlCache:
    return InMemoryUrlCache(clock)


IMPLEMENTATIONS = [
    pytest.param(_memory, id="memory"),
    pytest.param(redis_url_cache, id="redis", marks=pytest.mark.integration),
]

URL = "https://storage.example/u1/a.jpg?X-Goog-Expires=300&X-Goog-Signature=abc%2Fdef"


@pytest.fixture(params=IMPLEMENTATIONS)
def cache(request: pytest.FixtureRequest, clock: ManualClock) -> UrlCache:
    implementation: Implementation = request.param
    return implementation(request, clock)


def test_a_stored_url_comes_back_whole(cache: UrlCache) -> None:
    cache.set("image:1", URL, 60)
    assert cache.get("image:1") == URL


def test_a_missing_key_is_none(cache: UrlCache) -> None:
    cache.set("image:1", URL, 60)
    assert cache.get("image:2") is None


def test_an_entry_lives_for_its_ttl(cache: UrlCache, clock: ManualClock) -> None:
    cache.set("short", "https://a", 10)
    cache.set("long", "https://b", 100)

    clock.advance(9)
    assert cache.get("short") == "https://a"

    clock.advance(2)
    assert cache.get("short") is None
    assert cache.get("long") == "https://b"

    clock.advance(90)
    assert cache.get("long") is None


def test_a_fractional_ttl_is_honoured(cache: UrlCache, clock: ManualClock) -> None:
    cache.set("k", "https://a", 2.5)
    clock.advance(2.4)
    assert cache.get("k") == "https://a"
    clock.advance(0.2)
    assert cache.get("k") is None


def test_set_replaces_the_url_and_the_ttl(cache: UrlCache, clock: ManualClock) -> None:
    cache.set("k", "https://old", 10)
    clock.advance(5)
    cache.set("k", "https://new", 20)

    clock.advance(10)
    assert cache.get("k") == "https://new"
    clock.advance(11)
    assert cache.get("k") is None


@pytest.mark.parametrize("ttl", [0, -1, -0.5])
def test_a_non_positive_ttl_keeps_nothing(cache: UrlCache, ttl: float) -> None:
    cache.set("fresh", "https://a", ttl)
    cache.set("known", "https://old", 60)
    cache.set("known", "https://new", ttl)

    assert cache.get("fresh") is None
    assert cache.get("known") is None


def test_delete_forgets_a_key(cache: UrlCache) -> None:
    cache.set("k", "https://a", 60)
    cache.set("other", "https://b", 60)

    cache.delete("k")
    cache.delete("k")
    cache.delete("never-set")

    assert cache.get("k") is None
    assert cache.get("other") == "https://b"


def test_concurrent_use_keeps_every_entry_consistent(cache: UrlCache) -> None:
    start = threading.Barrier(8)

    def churn(worker: int) -> list[str | None]:
        start.wait()
        seen: list[str | None] = []
        for n in range(100):
            key = f"k{n % 10}"
            cache.set(key, f"https://{key}/{worker}", 60)
            seen.append(cache.get(key))
            if n % 7 == 0:
                cache.delete(key)
        return seen

    with ThreadPoolExecutor(max_workers=8) as pool:
        seen = [url for urls in pool.map(churn, range(8)) for url in urls]

    # Whatever interleaving happened, a read gives a URL some writer stored under that key.
    valid = {f"https://k{n}/{worker}" for n in range(10) for worker in range(8)}
    assert {url for url in seen if url is not None} <= valid
    for n in range(10):
        value = cache.get(f"k{n}")
        assert value is None or value.startswith(f"https://k{n}/")
