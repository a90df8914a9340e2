"""Contract of JobQueue, run against every implementation in IMPLEMENTATIONS.

Time is the injected ManualClock's: due times and leases are read from it, never from sleeping.
Jobs name images stored beforehand, so that adapters with foreign keys pass too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import msgspec
import pytest

from imgproc_core.adapters.memory import InMemoryDatabase, InMemoryUnitOfWork, ManualClock
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.users import User
from imgproc_core.ports.persistence import UnitOfWorkFactory
from tests.support.sql import postgres_unit_of_work_factory, sqlite_unit_of_work_factory

UserBuilder = Callable[..., User]
ImageBuilder = Callable[..., Image]
JobSeeder = Callable[[int], list[TransformJob]]
Implementation = Callable[[pytest.FixtureRequest, ManualClock], UnitOfWorkFactory]


def _memory(request: pytest.FixtureRequest, clock: ManualClock) -> UnitOfWorkFactory:
    database = InMemoryDatabase()
    return lambda: InMemoryUnitOfWork(database, clock)


IMPLEMENTATIONS = [
    pytest.param(_memory, id="memory"),
    pytest.param(sqlite_unit_of_work_factory, id="sqlite"),
    pytest.param(postgres_unit_of_work_factory, id="postgres", marks=pytest.mark.integration),
]

LEASE = 30.0


@pytest.fixture(params=IMPLEMENTATIONS)
def uow_factory(request: pytest.FixtureRequest, clock: ManualClock) -> UnitOfWorkFactory:
    implementation: Implementation = request.param
    return implementation(request, clock)


@pytest.fixture
def seed_jobs(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder, make_image: ImageBuilder
) -> JobSeeder:
    """Store ``n`` pending derivatives of one original and return their jobs (not queued)."""

    def seed(n: int) -> list[TransformJob]:
        owner = make_user()
        source = make_image(owner.id)
        derivatives = [
            make_image(owner.id, source_id=source.id, status=JobStatus.PENDING) for _ in range(n)
        ]
        with uow_factory() as uow:
            uow.users.add(owner)
            uow.images.add(source)
            uow.commit()
        with uow_factory() as uow:
            for derivative in derivatives:
                uow.images.add(derivative)
            uow.commit()
        return [
            TransformJob(image_id=image.id, source_id=source.id, user_id=owner.id)
            for image in derivatives
        ]

    return seed


def _enqueue(uow_factory: UnitOfWorkFactory, *jobs: TransformJob) -> None:
    with uow_factory() as uow:
        for job in jobs:
            uow.jobs.enqueue(job)
        uow.commit()


def _enqueue_one_second_apart(
    uow_factory: UnitOfWorkFactory, clock: ManualClock, jobs: list[TransformJob]
) -> None:
    for job in jobs:
        _enqueue(uow_factory, job)
        clock.advance(1)


def _claim(
    uow_factory: UnitOfWorkFactory, worker: str = "w1", lease: float = LEASE
) -> TransformJob | None:
    with uow_factory() as uow:
        job = uow.jobs.claim(worker, lease)
        uow.commit()
    return job


def _ack(uow_factory: UnitOfWorkFactory, job_id: str) -> None:
    with uow_factory() as uow:
        uow.jobs.ack(job_id)
        uow.commit()


def _retry(uow_factory: UnitOfWorkFactory, job_id: str, delay: float) -> None:
    with uow_factory() as uow:
        uow.jobs.retry(job_id, delay)
        uow.commit()


def _pending(uow_factory: UnitOfWorkFactory) -> int:
    with uow_factory() as uow:
        return uow.jobs.pending_count()


def test_an_empty_queue_has_nothing_to_claim(uow_factory: UnitOfWorkFactory) -> None:
    assert _claim(uow_factory) is None
    assert _pending(uow_factory) == 0


def test_a_queued_job_is_claimed_whole(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    (job,) = seed_jobs(1)
    job = msgspec.structs.replace(job, attempts=2)
    _enqueue(uow_factory, job)

    assert _pending(uow_factory) == 1
    assert _claim(uow_factory) == job
    assert _pending(uow_factory) == 1


def test_enqueue_is_idempotent_by_job_id(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    (job,) = seed_jobs(1)
    _enqueue(uow_factory, job, job)
    _enqueue(uow_factory, msgspec.structs.replace(job, attempts=5))

    assert _pending(uow_factory) == 1
    assert _claim(uow_factory) == job
    assert _claim(uow_factory) is None


def test_enqueueing_a_leased_job_again_keeps_its_lease(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    (job,) = seed_jobs(1)
    _enqueue(uow_factory, job)
    assert _claim(uow_factory) == job

    _enqueue(uow_factory, job)

    assert _claim(uow_factory, "w2") is None
    assert _pending(uow_factory) == 1


def test_claims_come_oldest_first(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    jobs = seed_jobs(4)
    _enqueue_one_second_apart(uow_factory, clock, [jobs[2], jobs[0], jobs[3], jobs[1]])

    claimed = [_claim(uow_factory, f"w{n}") for n in range(5)]

    assert claimed == [jobs[2], jobs[0], jobs[3], jobs[1], None]


def test_a_leased_job_is_not_claimed_again_until_the_lease_ends(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    first, second = seed_jobs(2)
    _enqueue_one_second_apart(uow_factory, clock, [first, second])

    assert _claim(uow_factory, "w1", lease=30) == first
    assert _claim(uow_factory, "w2", lease=30) == second
    clock.advance(29)
    assert _claim(uow_factory, "w3") is None

    clock.advance(2)
    assert _claim(uow_factory, "w3", lease=30) == first
    assert _claim(uow_factory, "w4", lease=30) == second
    assert _claim(uow_factory, "w5") is None


def test_an_acknowledged_job_is_gone(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    first, second = seed_jobs(2)
    _enqueue_one_second_apart(uow_factory, clock, [first, second])
    claimed = _claim(uow_factory)
    assert claimed == first

    _ack(uow_factory, first.id)

    assert _pending(uow_factory) == 1
    clock.advance(LEASE * 10)
    assert _claim(uow_factory) == second
    assert _claim(uow_factory) is None


def test_acknowledging_an_unknown_job_is_not_an_error(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    (job,) = seed_jobs(1)
    _enqueue(uow_factory, job)
    _ack(uow_factory, job.id)
    _ack(uow_factory, job.id)
    _ack(uow_factory, "0" * 32)
    assert _pending(uow_factory) == 0


def test_a_retried_job_is_due_after_its_delay_with_one_more_attempt(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    (job,) = seed_jobs(1)
    _enqueue(uow_factory, job)
    assert _claim(uow_factory, lease=300) == job

    _retry(uow_factory, job.id, delay=10)

    assert _pending(uow_factory) == 1
    clock.advance(9)
    assert _claim(uow_factory) is None
    # The retry gave the lease back: the job is due after the delay, not after the lease.
    clock.advance(2)
    again = _claim(uow_factory)
    assert again == msgspec.structs.replace(job, attempts=1)

    _retry(uow_factory, job.id, delay=0)
    assert _claim(uow_factory) == msgspec.structs.replace(job, attempts=2)


def test_a_retried_job_waits_behind_jobs_due_sooner(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    first, second = seed_jobs(2)
    _enqueue_one_second_apart(uow_factory, clock, [first, second])
    assert _claim(uow_factory) == first

    _retry(uow_factory, first.id, delay=5)
    clock.advance(6)

    assert _claim(uow_factory) == second
    assert _claim(uow_factory) == msgspec.structs.replace(first, attempts=1)


def test_retrying_an_unknown_job_is_not_an_error(uow_factory: UnitOfWorkFactory) -> None:
    _retry(uow_factory, "0" * 32, delay=1)
    assert _pending(uow_factory) == 0


def _renew(uow_factory: UnitOfWorkFactory, job_id: str, worker: str, lease: float) -> bool:
    with uow_factory() as uow:
        renewed = uow.jobs.renew_lease(job_id, worker, lease)
        uow.commit()
    return renewed


def test_a_renewed_lease_keeps_the_job_past_its_first_end(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    (job,) = seed_jobs(1)
    _enqueue(uow_factory, job)
    assert _claim(uow_factory, "w1") == job

    clock.advance(LEASE - 1)
    assert _renew(uow_factory, job.id, "w1", LEASE) is True
    clock.advance(LEASE - 1)
    assert _claim(uow_factory, "w2") is None
    clock.advance(1)
    assert _claim(uow_factory, "w2") == job


def test_a_lease_renewed_to_zero_lets_the_job_go_with_its_attempts(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    (job,) = seed_jobs(1)
    _enqueue(uow_factory, job)
    assert _claim(uow_factory, "w1") == job

    assert _renew(uow_factory, job.id, "w1", 0) is True

    assert _claim(uow_factory, "w2") == job


def test_a_lease_run_out_is_renewed_while_no_one_else_claimed_the_job(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    (job,) = seed_jobs(1)
    _enqueue(uow_factory, job)
    assert _claim(uow_factory, "w1") == job
    clock.advance(LEASE * 3)

    assert _renew(uow_factory, job.id, "w1", LEASE) is True
    assert _claim(uow_factory, "w2") is None


def test_a_job_no_longer_the_workers_is_not_renewed(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    taken_over, retried, acknowledged = seed_jobs(3)
    _enqueue(uow_factory, taken_over, retried, acknowledged)
    for _ in range(3):
        assert _claim(uow_factory, "w1") is not None
    _retry(uow_factory, retried.id, delay=0)
    _ack(uow_factory, acknowledged.id)
    clock.advance(LEASE)
    claimed_by_w2 = [_claim(uow_factory, "w2"), _claim(uow_factory, "w2")]
    assert {job.id for job in claimed_by_w2 if job} == {taken_over.id, retried.id}

    for job in (taken_over, retried, acknowledged):
        assert _renew(uow_factory, job.id, "w1", LEASE) is False
    assert _renew(uow_factory, "0" * 32, "w1", LEASE) is False
    # w2's leases are untouched: nothing is claimable.
    assert _claim(uow_factory, "w3") is None


def test_a_claim_rolled_back_leaves_the_job_claimable(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    (job,) = seed_jobs(1)
    _enqueue(uow_factory, job)

    with uow_factory() as uow:
        assert uow.jobs.claim("crashes", LEASE) == job

    assert _claim(uow_factory, "w2") == job


def test_a_job_claimed_in_an_open_unit_of_work_is_not_handed_out_twice(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    first, second = seed_jobs(2)
    _enqueue_one_second_apart(uow_factory, clock, [first, second])

    # The other claim runs in its own thread: an adapter may make it wait for the open unit of
    # work (a database lock) or skip the claimed row; either way it must not get ``first``.
    with ThreadPoolExecutor(max_workers=1) as pool, uow_factory() as slow:
        assert slow.jobs.claim("slow", LEASE) == first
        fast = pool.submit(_claim, uow_factory, "fast")
        slow.commit()
    assert fast.result() == second
    assert _claim(uow_factory, "late") is None


def test_an_uncommitted_enqueue_is_not_claimable_by_others(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    (job,) = seed_jobs(1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        with uow_factory() as uow:
            uow.jobs.enqueue(job)
            other = pool.submit(_claim, uow_factory, "other")
        assert other.result() is None
    assert _claim(uow_factory, "other") is None
    assert _pending(uow_factory) == 0


def test_concurrent_workers_never_share_a_job(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    jobs = seed_jobs(40)
    _enqueue(uow_factory, *jobs)
    start = threading.Barrier(8)

    def work(worker: str) -> list[str]:
        taken: list[str] = []
        start.wait()
        while (job := _claim(uow_factory, worker, lease=600)) is not None:
            taken.append(job.id)
        return taken

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, [f"worker-{n}" for n in range(8)]))

    claimed = [job_id for taken in results for job_id in taken]
    assert sorted(claimed) == sorted(job.id for job in jobs)
    assert len(set(claimed)) == len(claimed)


def _claim_batch(
    uow_factory: UnitOfWorkFactory, limit: int, worker: str = "w1", lease: float = LEASE
) -> list[TransformJob]:
    with uow_factory() as uow:
        jobs = uow.jobs.claim_batch(worker, lease, limit)
        uow.commit()
    return jobs


def test_an_empty_queue_gives_an_empty_batch(uow_factory: UnitOfWorkFactory) -> None:
    assert _claim_batch(uow_factory, 10) == []


def test_a_batch_takes_the_oldest_jobs_up_to_its_limit(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    jobs = seed_jobs(5)
    order = [jobs[3], jobs[1], jobs[4], jobs[0], jobs[2]]
    _enqueue_one_second_apart(uow_factory, clock, order)

    assert _claim_batch(uow_factory, 3, "w1") == order[:3]
    assert _claim_batch(uow_factory, 3, "w2") == order[3:]
    assert _claim_batch(uow_factory, 3, "w3") == []
    assert _pending(uow_factory) == 5


def test_a_batch_skips_leased_jobs_and_jobs_not_due_yet(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    first, second, third = seed_jobs(3)
    _enqueue_one_second_apart(uow_factory, clock, [first, second, third])
    assert _claim(uow_factory, "single", lease=30) == first
    assert _claim(uow_factory, "single", lease=30) == second
    _retry(uow_factory, second.id, delay=60)

    assert _claim_batch(uow_factory, 10, "batch", lease=30) == [third]

    clock.advance(31)
    assert _claim_batch(uow_factory, 10, "batch", lease=30) == [first, third]
    clock.advance(30)
    # The retried job is due last: its due time moved to the end of its delay.
    assert _claim_batch(uow_factory, 10, "batch", lease=30) == [
        first,
        third,
        msgspec.structs.replace(second, attempts=1),
    ]


def test_an_acknowledged_batch_is_gone(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    jobs = seed_jobs(4)
    _enqueue_one_second_apart(uow_factory, clock, jobs)
    batch = _claim_batch(uow_factory, 3)

    with uow_factory() as uow:
        for job in batch:
            uow.jobs.ack(job.id)
        uow.commit()

    assert _pending(uow_factory) == 1
    clock.advance(LEASE * 10)
    assert _claim_batch(uow_factory, 10) == [jobs[3]]


def test_a_batch_claim_rolled_back_leaves_its_jobs_claimable(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    jobs = seed_jobs(3)
    _enqueue_one_second_apart(uow_factory, clock, jobs)

    with uow_factory() as uow:
        assert uow.jobs.claim_batch("crashes", LEASE, 10) == jobs

    assert _claim_batch(uow_factory, 10, "w2") == jobs


def test_a_batch_needs_a_positive_limit(uow_factory: UnitOfWorkFactory) -> None:
    with uow_factory() as uow, pytest.raises(ValueError, match="at least one"):
        uow.jobs.claim_batch("w1", LEASE, 0)


def test_concurrent_batch_claimers_never_share_a_job(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    jobs = seed_jobs(60)
    _enqueue(uow_factory, *jobs)
    start = threading.Barrier(6)

    def relay(worker: str) -> list[str]:
        taken: list[str] = []
        start.wait()
        while batch := _claim_batch(uow_factory, 7, worker, lease=600):
            taken.extend(job.id for job in batch)
        return taken

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(relay, [f"relay-{n}" for n in range(6)]))

    claimed = [job_id for taken in results for job_id in taken]
    assert sorted(claimed) == sorted(job.id for job in jobs)
    assert len(set(claimed)) == len(claimed)


def _oldest(uow_factory: UnitOfWorkFactory) -> datetime | None:
    with uow_factory() as uow:
        return uow.jobs.oldest_enqueued_at()


def test_an_empty_queue_has_no_oldest_job(uow_factory: UnitOfWorkFactory) -> None:
    assert _oldest(uow_factory) is None


def test_the_oldest_job_is_dated_by_its_enqueueing_whatever_happened_to_it_since(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    first, second, third = seed_jobs(3)
    queued_at = clock.now()
    _enqueue_one_second_apart(uow_factory, clock, [first, second, third])

    oldest = _oldest(uow_factory)
    assert oldest is not None
    assert oldest.utcoffset() is not None
    assert oldest == queued_at
    # Leased or given back for a retry, a job keeps its place: it is still waiting.
    assert _claim(uow_factory) == first
    _retry(uow_factory, first.id, delay=60)
    assert _oldest(uow_factory) == queued_at

    _ack(uow_factory, first.id)
    assert _oldest(uow_factory) == queued_at + timedelta(seconds=1)
    _ack(uow_factory, second.id)
    _ack(uow_factory, third.id)
    assert _oldest(uow_factory) is None


def test_an_uncommitted_enqueue_is_not_the_oldest_job_for_others(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder
) -> None:
    (job,) = seed_jobs(1)
    with ThreadPoolExecutor(max_workers=1) as pool, uow_factory() as uow:
        uow.jobs.enqueue(job)
        assert uow.jobs.oldest_enqueued_at() is not None
        assert pool.submit(_oldest, uow_factory).result() is None


def _release(uow_factory: UnitOfWorkFactory, worker: str, *job_ids: str) -> None:
    with uow_factory() as uow:
        uow.jobs.release(worker, job_ids)
        uow.commit()


def test_released_jobs_are_claimable_at_once_as_they_were(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    jobs = seed_jobs(3)
    _enqueue_one_second_apart(uow_factory, clock, jobs)
    assert _claim_batch(uow_factory, 2, "relay-1", lease=600) == jobs[:2]

    _release(uow_factory, "relay-1", jobs[0].id, jobs[1].id)

    # In their old order, with no attempt counted, and without waiting for the lease.
    assert _claim_batch(uow_factory, 10, "relay-2") == jobs
    assert _pending(uow_factory) == 3


def test_only_the_holder_of_a_lease_releases_it(
    uow_factory: UnitOfWorkFactory, seed_jobs: JobSeeder, clock: ManualClock
) -> None:
    first, second = seed_jobs(2)
    _enqueue_one_second_apart(uow_factory, clock, [first, second])
    assert _claim(uow_factory, "relay-1", lease=30) == first
    clock.advance(31)
    # relay-1's lease ran out and relay-2 took the job over: relay-1 gives back nothing.
    assert _claim(uow_factory, "relay-2", lease=600) == first

    _release(uow_factory, "relay-1", first.id, second.id, "0" * 32)

    assert _claim_batch(uow_factory, 10, "relay-3") == [second]


def test_releasing_nothing_is_not_an_error(uow_factory: UnitOfWorkFactory) -> None:
    _release(uow_factory, "relay-1")
    assert _pending(uow_factory) == 0
