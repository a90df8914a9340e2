"""What the in-memory adapters promise beyond their ports' contracts: bounded memory, the
helpers tests rely on, and behaviour only a single process can show deterministically."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from imgproc_core.adapters.blob_keys import MAX_KEY_CHARS
from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDatabase,
    InMemoryPasswordHasher,
    InMemoryRateLimiter,
    InMemoryTokenIssuer,
    InMemoryUnitOfWork,
    InMemoryUrlCache,
    ManualClock,
    check_blob_key,
    in_memory_unit_of_work_factory,
)
from imgproc_core.adapters.memory.clock import DEFAULT_START
from imgproc_core.domain.errors import InvalidToken
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.users import User
from imgproc_core.ports.cache import RateLimit

# -- ManualClock -------------------------------------------------------------------------------


def test_a_manual_clock_starts_at_a_fixed_moment() -> None:
    assert ManualClock().now() == DEFAULT_START == ManualClock().now()
    assert DEFAULT_START.tzinfo is UTC


def test_a_manual_clock_needs_an_aware_start_and_speaks_utc() -> None:
    with pytest.raises(ValueError, match="aware"):
        ManualClock(datetime(2026, 1, 1))
    paris = timezone(timedelta(hours=1))
    clock = ManualClock(datetime(2026, 1, 1, 12, tzinfo=paris))
    assert clock.now() == datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_a_manual_clock_moves_only_forward() -> None:
    clock = ManualClock()
    assert clock.advance(1.5) == DEFAULT_START + timedelta(seconds=1.5)
    assert clock.advance(timedelta(minutes=1)) == DEFAULT_START + timedelta(seconds=61.5)
    assert clock.advance(0) == clock.now()
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    assert clock.now() == DEFAULT_START + timedelta(seconds=61.5)


def test_a_manual_clock_loses_no_step_between_threads() -> None:
    clock = ManualClock()

    def step(_: int) -> None:
        for _ in range(1000):
            clock.advance(timedelta(milliseconds=1))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(step, range(8)))

    assert clock.now() == DEFAULT_START + timedelta(seconds=8)


# -- InMemoryBlobStorage -----------------------------------------------------------------------


def test_blob_storage_keeps_the_content_type_and_lists_keys() -> None:
    storage = InMemoryBlobStorage()
    storage.put("u1/b.png", b"b", "image/png")
    storage.put("u1/a.jpg", b"a", "image/jpeg")
    assert storage.content_type("u1/b.png") == "image/png"
    assert storage.keys() == ["u1/a.jpg", "u1/b.png"]


def test_blob_storage_copies_what_it_is_given() -> None:
    storage = InMemoryBlobStorage()
    data = bytearray(b"abc")
    storage.put("u1/a.jpg", data, "image/jpeg")  # type: ignore[arg-type]
    data[0] = ord("z")
    assert storage.get("u1/a.jpg") == b"abc"


def test_a_signed_url_carries_base_url_expiry_and_filename() -> None:
    clock = ManualClock()
    storage = InMemoryBlobStorage("memory://test", clock=clock)
    signed = storage.signed_url("u1/a.jpg", 60, filename="a b.jpg")
    expires = int((DEFAULT_START + timedelta(seconds=60)).timestamp())
    assert signed.url == f"memory://test/u1/a.jpg?expires={expires}&filename=a+b.jpg"


def test_the_memory_storage_applies_the_shared_key_length_limit() -> None:
    longest = "/".join(["a" * 100] * 5) + "/" + "b" * 7
    assert len(longest) == MAX_KEY_CHARS
    assert check_blob_key(longest) == longest
    with pytest.raises(ValueError, match=str(MAX_KEY_CHARS)):
        check_blob_key(longest + "c")


# -- InMemoryRateLimiter -----------------------------------------------------------------------


def test_a_rate_limiter_forgets_idle_keys() -> None:
    clock = ManualClock()
    limiter = InMemoryRateLimiter(clock, sweep_threshold=100)
    rate = RateLimit(5, 10.0)
    for n in range(1000):
        limiter.hit(f"client-{n}", rate)
        clock.advance(0.1)

    # Only the clients seen within the last window (10 s, 100 hits) can still hold state.
    assert limiter.tracked_keys() <= 200
    clock.advance(10)
    limiter.hit("late", rate)
    assert limiter.tracked_keys() <= 200


def test_a_forgotten_key_behaves_like_a_new_one() -> None:
    clock = ManualClock()
    limiter = InMemoryRateLimiter(clock, sweep_threshold=1)
    rate = RateLimit(2, 10.0)
    assert [limiter.hit("a", rate).allowed for _ in range(3)] == [True, True, False]
    clock.advance(10)
    limiter.hit("b", rate)
    assert [limiter.hit("a", rate).allowed for _ in range(3)] == [True, True, False]


def test_the_same_key_under_two_rates_counts_separately() -> None:
    limiter = InMemoryRateLimiter(ManualClock())
    strict, loose = RateLimit(1, 60.0), RateLimit(3, 60.0)
    assert [limiter.hit("k", strict).allowed for _ in range(2)] == [True, False]
    assert [limiter.hit("k", loose).allowed for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize("rate", [RateLimit(0, 60.0), RateLimit(5, 0.0), RateLimit(5, -1.0)])
def test_a_rate_that_allows_nothing_is_refused(rate: RateLimit) -> None:
    with pytest.raises(ValueError, match="rate"):
        InMemoryRateLimiter(ManualClock()).hit("k", rate)


# -- InMemoryUrlCache --------------------------------------------------------------------------


def test_the_url_cache_evicts_the_least_recently_used() -> None:
    cache = InMemoryUrlCache(ManualClock(), max_entries=3)
    for key in "abc":
        cache.set(key, f"https://{key}", 60)
    assert cache.get("a") == "https://a"

    cache.set("d", "https://d", 60)

    assert cache.entry_count() == 3
    assert cache.get("b") is None
    assert [cache.get(key) for key in "acd"] == ["https://a", "https://c", "https://d"]


def test_the_url_cache_drops_an_expired_entry_when_read() -> None:
    clock = ManualClock()
    cache = InMemoryUrlCache(clock)
    cache.set("k", "https://k", 1)
    clock.advance(2)
    assert cache.get("k") is None
    assert cache.entry_count() == 0


def test_the_url_cache_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        InMemoryUrlCache(ManualClock(), max_entries=0)


# -- InMemoryPasswordHasher and InMemoryTokenIssuer --------------------------------------------


def test_the_fake_hash_says_what_it_is() -> None:
    assert re.fullmatch(r"fake\$[0-9a-f]{32}\$[0-9a-f]{64}", InMemoryPasswordHasher().hash("pw"))


def test_the_fake_token_issuer_forgets_expired_tokens() -> None:
    clock = ManualClock()
    issuer = InMemoryTokenIssuer(clock, ttl_seconds=10)
    old = issuer.issue("u").token
    clock.advance(11)
    for _ in range(2000):
        issuer.issue("u")
    with pytest.raises(InvalidToken, match="unknown"):
        issuer.verify(old)


def test_the_fake_token_issuer_needs_a_positive_ttl() -> None:
    with pytest.raises(ValueError, match="positive"):
        InMemoryTokenIssuer(ManualClock(), ttl_seconds=0)


# -- InMemoryUnitOfWork ------------------------------------------------------------------------


def _user(clock: ManualClock, **overrides: object) -> User:
    fields: dict[str, object] = {
        "id": "1" * 32,
        "username": "alice",
        "password_hash": "fake$x$y",
        "created_at": clock.now(),
    }
    fields.update(overrides)
    return User(**fields)  # type: ignore[arg-type]


def _image(clock: ManualClock, image_id: str, **overrides: object) -> Image:
    fields: dict[str, object] = {
        "id": image_id,
        "user_id": "1" * 32,
        "filename": "a.jpg",
        "storage_key": f"{'1' * 32}/{image_id}.jpg",
        "mimetype": "image/jpeg",
        "format": "jpeg",
        "size_bytes": 1,
        "width": 1,
        "height": 1,
        "status": JobStatus.READY,
        "created_at": clock.now(),
        "updated_at": clock.now(),
    }
    fields.update(overrides)
    return Image(**fields)  # type: ignore[arg-type]


def _job(n: int) -> TransformJob:
    return TransformJob(image_id=f"{n:032x}", source_id="f" * 32, user_id="1" * 32)


def test_a_claim_locks_the_job_until_its_unit_of_work_ends() -> None:
    clock = ManualClock()
    new_uow = in_memory_unit_of_work_factory(InMemoryDatabase(), clock)
    with new_uow() as uow:
        uow.jobs.enqueue(_job(1))
        clock.advance(1)
        uow.jobs.enqueue(_job(2))
        uow.commit()

    with new_uow() as slow:
        assert slow.jobs.claim("slow", 30) == _job(1)
        with new_uow() as fast:
            assert fast.jobs.claim("fast", 30) == _job(2)
            assert fast.jobs.claim("fast", 30) is None
            fast.rollback()
        with new_uow() as other:
            assert other.jobs.claim("other", 30) == _job(2)
        # Rolled back: the lock is gone and the lease was never written.

    with new_uow() as uow:
        assert uow.jobs.claim("again", 30) == _job(1)
        assert uow.jobs.claim("again", 30) == _job(2)


def test_naive_datetimes_are_refused() -> None:
    clock = ManualClock()
    naive = datetime(2026, 1, 1)
    with InMemoryUnitOfWork(InMemoryDatabase(), clock) as uow:
        with pytest.raises(ValueError, match="aware"):
            uow.users.add(_user(clock, created_at=naive))
        with pytest.raises(ValueError, match="aware"):
            uow.images.add(_image(clock, "a" * 32, updated_at=naive))


def test_leases_and_delays_are_checked() -> None:
    with InMemoryUnitOfWork(InMemoryDatabase(), ManualClock()) as uow:
        with pytest.raises(ValueError, match="lease"):
            uow.jobs.claim("w", 0)
        with pytest.raises(ValueError, match="retry"):
            uow.jobs.retry("x", -1)


def test_negative_pages_are_refused() -> None:
    with InMemoryUnitOfWork(InMemoryDatabase(), ManualClock()) as uow:
        with pytest.raises(ValueError, match="negative"):
            uow.images.list_for_user("u", offset=-1, limit=10)
        with pytest.raises(ValueError, match="negative"):
            uow.users.list(limit=-1)


def test_the_database_holds_copies_of_what_was_committed() -> None:
    clock = ManualClock()
    database = InMemoryDatabase()
    user = _user(clock)
    with InMemoryUnitOfWork(database, clock) as uow:
        uow.users.add(user)
        uow.commit()
    user.username = "mallory"
    with database.lock:
        assert database.users[user.id].username == "alice"
        assert database.users[user.id] is not user


def test_a_unit_of_work_can_be_entered_again() -> None:
    clock = ManualClock()
    uow = InMemoryUnitOfWork(InMemoryDatabase(), clock)
    with uow:
        uow.users.add(_user(clock))
    with uow:
        assert uow.users.get("1" * 32) is None
        uow.users.add(_user(clock))
        uow.commit()
    with uow:
        assert uow.users.get("1" * 32) is not None


def test_usernames_can_be_swapped_in_one_unit_of_work() -> None:
    clock = ManualClock()
    new_uow = in_memory_unit_of_work_factory(InMemoryDatabase(), clock)
    alice = _user(clock)
    bob = _user(clock, id="2" * 32, username="bob")
    with new_uow() as uow:
        uow.users.add(alice)
        uow.users.add(bob)
        uow.commit()
    with new_uow() as uow:
        alice.username = "tmp"
        uow.users.update(alice)
        bob.username = "alice"
        uow.users.update(bob)
        alice.username = "bob"
        uow.users.update(alice)
        uow.commit()
    with new_uow() as uow:
        assert uow.users.get_by_username("alice") == bob
        assert uow.users.get_by_username("bob") == alice


def test_many_threads_share_one_database_safely() -> None:
    clock = ManualClock()
    new_uow = in_memory_unit_of_work_factory(InMemoryDatabase(), clock)
    start = threading.Barrier(8)

    def add_images(worker: int) -> None:
        start.wait()
        for n in range(50):
            with new_uow() as uow:
                uow.images.add(_image(clock, f"{worker:016x}{n:016x}"))
                uow.jobs.enqueue(_job(worker * 1000 + n))
                uow.commit()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(add_images, range(8)))

    with new_uow() as uow:
        assert uow.images.count_by_status()[JobStatus.READY] == 400
        assert uow.jobs.pending_count() == 400
