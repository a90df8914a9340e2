"""Contract of RateLimiter, run against every implementation in IMPLEMENTATIONS.

Time is the injected ManualClock's: windows refill because the test moves the clock, so the
counts below are exact, never "about N".
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from imgproc_core.adapters.gcra import GcraRate, epoch_micros
from imgproc_core.adapters.memory import InMemoryRateLimiter, ManualClock
from imgproc_core.ports.cache import RateLimit, RateLimitDecision, RateLimiter
from tests.support.redis import redis_rate_limiter

Implementation = Callable[[pytest.FixtureRequest, ManualClock], RateLimiter]


def _memory(request: pytest.FixtureRequest, clock: ManualClock) -> RateLimiter:
    return InMemoryRateLimiter(clock)


IMPLEMENTATIONS = [
    pytest.param(_memory, id="memory"),
    pytest.param(redis_rate_limiter, id="redis", marks=pytest.mark.integration),
]

#: Rates whose interval (window / limit) is not a round number in binary or in decimal.
RATES = [
    RateLimit(1, 1.0),
    RateLimit(3, 1.0),
    RateLimit(5, 60.0),
    RateLimit(7, 0.7),
    RateLimit(10, 3600.0),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def limiter(request: pytest.FixtureRequest, clock: ManualClock) -> RateLimiter:
    implementation: Implementation = request.param
    return implementation(request, clock)


def _burst(limiter: RateLimiter, key: str, rate: RateLimit, hits: int) -> list[RateLimitDecision]:
    return [limiter.hit(key, rate) for _ in range(hits)]


@pytest.mark.parametrize("rate", RATES, ids=str)
def test_exactly_limit_hits_pass_at_once(limiter: RateLimiter, rate: RateLimit) -> None:
    decisions = _burst(limiter, "client", rate, rate.limit + 3)

    assert [d.allowed for d in decisions] == [True] * rate.limit + [False] * 3
    assert [d.remaining for d in decisions] == [*range(rate.limit - 1, -1, -1), 0, 0, 0]
    assert {d.limit for d in decisions} == {rate.limit}


@pytest.mark.parametrize("rate", RATES, ids=str)
def test_a_refused_hit_says_how_long_to_wait(
    limiter: RateLimiter, rate: RateLimit, clock: ManualClock
) -> None:
    *passed, refused = _burst(limiter, "client", rate, rate.limit + 1)

    assert all(d.retry_after == 0 for d in passed)
    assert not refused.allowed
    assert 0 < refused.retry_after <= rate.window_seconds
    assert 0 < refused.reset_after <= rate.window_seconds
    clock.advance(refused.retry_after)
    assert limiter.hit("client", rate).allowed


@pytest.mark.parametrize("rate", RATES, ids=str)
def test_a_window_refills(limiter: RateLimiter, rate: RateLimit, clock: ManualClock) -> None:
    _burst(limiter, "client", rate, rate.limit)

    clock.advance(rate.window_seconds)

    decisions = _burst(limiter, "client", rate, rate.limit + 1)
    assert [d.allowed for d in decisions] == [True] * rate.limit + [False]


def test_a_window_refills_gradually(limiter: RateLimiter, clock: ManualClock) -> None:
    rate = RateLimit(10, 60.0)
    _burst(limiter, "client", rate, 10)

    clock.advance(30)

    decisions = _burst(limiter, "client", rate, 6)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]


@pytest.mark.parametrize("rate", RATES, ids=str)
def test_after_reset_after_a_full_burst_passes_again(
    limiter: RateLimiter, rate: RateLimit, clock: ManualClock
) -> None:
    last = limiter.hit("client", rate)
    for _ in range(rate.limit):
        clock.advance(rate.window_seconds / (3 * rate.limit))
        last = limiter.hit("client", rate)

    assert 0 < last.reset_after <= rate.window_seconds
    clock.advance(last.reset_after)
    decisions = _burst(limiter, "client", rate, rate.limit + 1)
    assert [d.allowed for d in decisions] == [True] * rate.limit + [False]


def test_a_full_window_resets_after_about_one_window(
    limiter: RateLimiter, clock: ManualClock
) -> None:
    rate = RateLimit(4, 60.0)
    *_, last = _burst(limiter, "client", rate, 4)
    refused = limiter.hit("client", rate)

    assert last.remaining == 0
    assert last.reset_after == pytest.approx(60, abs=1e-3)
    assert refused.reset_after >= refused.retry_after > 0


def test_refused_hits_do_not_extend_the_wait(limiter: RateLimiter, clock: ManualClock) -> None:
    rate = RateLimit(2, 10.0)
    _burst(limiter, "client", rate, 2)
    refusals = _burst(limiter, "client", rate, 50)

    assert not any(d.allowed for d in refusals)
    assert refusals[-1].retry_after == pytest.approx(refusals[0].retry_after)
    clock.advance(refusals[0].retry_after)
    assert limiter.hit("client", rate).allowed


def test_every_decision_is_the_one_gcra_arithmetic(
    limiter: RateLimiter, clock: ManualClock
) -> None:
    """A seeded random walk of hits and clock steps, some landing a microsecond short of the
    announced wait: every field of every decision is what ``GcraRate.hit`` gives on a TAT that
    the test keeps itself."""
    rates = [RateLimit(3, 1.0), RateLimit(7, 0.7), RateLimit(6, 10.0), RateLimit(1, 0.3)]
    tats: dict[tuple[str, RateLimit], int] = {}
    rng = random.Random(20260101)
    refused = 0
    for step in range(2000):
        key, rate = rng.choice("ab"), rng.choice(rates)
        gcra = GcraRate.of(rate)
        now = gcra.units(epoch_micros(clock.now()))
        expected = gcra.hit(tats.get((key, rate), now) - now)
        if expected.ahead is not None:
            tats[key, rate] = now + expected.ahead

        assert limiter.hit(key, rate) == expected.decision, f"step {step}"

        if not expected.decision.allowed:
            refused += 1
            short_by = timedelta(microseconds=1) if rng.random() < 0.5 else timedelta(0)
            clock.advance(timedelta(seconds=expected.decision.retry_after) - short_by)
        else:
            clock.advance(rng.choice([0.0, 0.0, rng.random() * rate.window_seconds / 2]))
    assert refused > 100


def test_keys_are_independent(limiter: RateLimiter) -> None:
    rate = RateLimit(2, 60.0)
    assert [d.allowed for d in _burst(limiter, "alice", rate, 3)] == [True, True, False]

    assert [d.allowed for d in _burst(limiter, "bob", rate, 3)] == [True, True, False]
    assert [d.allowed for d in _burst(limiter, "alice:upload", rate, 1)] == [True]


def test_concurrent_hits_pass_exactly_the_limit(limiter: RateLimiter) -> None:
    rate = RateLimit(100, 60.0)
    start = threading.Barrier(8)

    def hammer(_: int) -> int:
        start.wait()
        return sum(limiter.hit("shared", rate).allowed for _ in range(50))

    with ThreadPoolExecutor(max_workers=8) as pool:
        passed = sum(pool.map(hammer, range(8)))

    assert passed == 100
