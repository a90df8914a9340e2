"""The embedded worker's step: claim, run under the job policy, and settle the job in the queue
table: acknowledged, handed back with backoff, parked, or held through an outage. Waits move
the test's clock instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDatabase,
    InMemoryImageCodec,
    InMemoryJobMetrics,
    ManualClock,
)
from imgproc_core.domain.errors import DependencyUnavailable, ProcessingTimeout
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.ports import BlobStorage, UnitOfWorkFactory
from imgproc_core.ports.messages import DeadLetterCode
from imgproc_core.use_cases import (
    MAX_BACKOFF_SECONDS,
    GiveUpJob,
    JobOutcome,
    JobPolicy,
    ProcessTransformJob,
    RequestTransform,
    RequestTransformCommand,
    RunJob,
    RunNextJob,
)
from tests.support.jobs import ScriptedProcess

Upload = Callable[..., Image]


def stored_image(uow_factory: UnitOfWorkFactory, image_id: str) -> Image:
    with uow_factory() as uow:
        image = uow.images.get(image_id)
    assert image is not None
    return image


def queue_state(database: InMemoryDatabase, clock: ManualClock) -> list[tuple[int, float]]:
    """For each queued job: its attempts and the seconds until it is due."""
    with database.lock:
        return [
            (row.job.attempts, (row.due_at - clock.now()).total_seconds())
            for row in database.jobs.values()
        ]


def claim(uow_factory: UnitOfWorkFactory, worker: str) -> TransformJob | None:
    with uow_factory() as uow:
        job = uow.jobs.claim(worker, 120.0)
        uow.commit()
    return job


@pytest.fixture
def requested(request_transform: RequestTransform, upload: Upload, alice: str) -> Image:
    source = upload(alice)
    return request_transform(
        RequestTransformCommand(alice, source.id, Transformation(resize=Resize(width=100)))
    )


def worker(
    uow_factory: UnitOfWorkFactory,
    storage: BlobStorage,
    clock: ManualClock,
    limits: Limits,
    *,
    lease_seconds: float = 120.0,
    max_attempts: int = 5,
    backoff_base_seconds: float = 1.0,
    failures: tuple[Exception, ...] = (),
    before_each: Callable[[], object] | None = None,
    metrics: InMemoryJobMetrics | None = None,
) -> RunNextJob:
    """A worker on the real ProcessTransformJob, which first raises ``failures``, one an
    attempt."""
    process: Callable[[TransformJob], JobOutcome] = ProcessTransformJob(
        uow_factory, storage, InMemoryImageCodec(), clock, limits
    )
    if failures or before_each:
        process = ScriptedProcess(process, *failures, before_each=before_each)
    policy = JobPolicy(max_attempts=max_attempts, backoff_seconds=backoff_base_seconds)
    run_job = RunJob(
        process,
        GiveUpJob(uow_factory, clock),
        clock,
        policy,
        metrics=metrics,
        sleep=clock.advance,
    )
    return RunNextJob(uow_factory, run_job, "worker-1", lease_seconds=lease_seconds)


def timeouts(count: int) -> tuple[Exception, ...]:
    return tuple(ProcessingTimeout("too slow") for _ in range(count))


def test_an_empty_queue_has_nothing_to_run(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    clock: ManualClock,
    limits: Limits,
) -> None:
    assert worker(uow_factory, storage, clock, limits)() is False


def test_a_job_is_run_and_acknowledged(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    run = worker(uow_factory, storage, clock, limits)

    assert run() is True

    assert stored_image(uow_factory, requested.id).status is JobStatus.READY
    assert storage.exists(requested.storage_key)
    assert queue_state(database, clock) == []
    assert run() is False


def test_a_job_that_fails_for_good_is_acknowledged(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    source = stored_image(uow_factory, requested.source_id or "")
    storage.put(source.storage_key, b"not an image at all", "image/png")

    assert worker(uow_factory, storage, clock, limits)() is True

    image = stored_image(uow_factory, requested.id)
    assert image.status is JobStatus.FAILED
    assert image.failure_reason
    assert queue_state(database, clock) == []


def test_a_job_whose_image_is_gone_is_acknowledged(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    with database.lock:
        del database.images[requested.id]

    assert worker(uow_factory, storage, clock, limits)() is True
    assert queue_state(database, clock) == []


def test_a_transient_failure_is_handed_back_with_growing_delays(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    run = worker(uow_factory, storage, clock, limits, failures=timeouts(3))

    assert run() is True
    assert queue_state(database, clock) == [(1, 1.0)]
    assert stored_image(uow_factory, requested.id).status is JobStatus.PENDING
    assert run() is False  # not due yet

    clock.advance(1)
    assert run() is True
    assert queue_state(database, clock) == [(2, 2.0)]

    clock.advance(2)
    assert run() is True
    assert queue_state(database, clock) == [(3, 4.0)]

    clock.advance(4)
    assert run() is True  # fast enough this time
    assert queue_state(database, clock) == []
    assert stored_image(uow_factory, requested.id).status is JobStatus.READY


def test_the_backoff_is_capped(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    run = worker(
        uow_factory,
        storage,
        clock,
        limits,
        backoff_base_seconds=100.0,
        max_attempts=10,
        failures=timeouts(100),
    )
    delays = []
    for _ in range(4):
        assert run() is True
        [(_, delay)] = queue_state(database, clock)
        delays.append(delay)
        clock.advance(delay)
    assert delays == [100.0, 200.0, MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS]


def test_after_max_attempts_the_image_fails_and_the_job_is_parked(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    metrics = InMemoryJobMetrics()
    run = worker(
        uow_factory, storage, clock, limits, max_attempts=3, failures=timeouts(3), metrics=metrics
    )

    for _ in range(3):
        assert run() is True
        clock.advance(MAX_BACKOFF_SECONDS)

    image = stored_image(uow_factory, requested.id)
    assert image.status is JobStatus.FAILED
    assert image.failure_reason == "gave up after 3 attempts: processing_timeout: too slow"
    assert queue_state(database, clock) == []
    assert run() is False
    assert metrics.outcomes == ["retried", "retried", "gave_up"]
    # Parked in the FAILED image: the queue table has no dead-letter topic, but it counts.
    assert metrics.dead_lettered == [DeadLetterCode.GAVE_UP]


def test_a_job_of_a_dead_worker_is_taken_over_after_its_lease(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    with uow_factory() as uow:
        claimed = uow.jobs.claim("worker-that-dies", 60)
        image = uow.images.get(requested.id)
        assert claimed is not None
        assert image is not None
        image.start_processing(clock.now())
        uow.images.update(image)
        uow.commit()
    run = worker(uow_factory, storage, clock, limits, lease_seconds=60)

    assert run() is False  # still leased
    clock.advance(60)
    assert run() is True

    image = stored_image(uow_factory, requested.id)
    assert image.status is JobStatus.READY
    assert image.attempts == 2
    assert queue_state(database, clock) == []


def test_an_outage_is_waited_out_holding_the_job_without_counting_an_attempt(
    uow_factory: UnitOfWorkFactory,
    flaky_storage: Callable[[int], BlobStorage],
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    """Storage down for 3 minutes, longer than the lease and than five attempts' backoff: the
    worker renews its lease while it waits, so no other worker takes the job, and the job
    neither fails nor uses up an attempt."""
    metrics = InMemoryJobMetrics()
    others: list[TransformJob | None] = []
    run = worker(
        uow_factory,
        flaky_storage(10),
        clock,
        limits,
        lease_seconds=60,
        before_each=lambda: others.append(claim(uow_factory, "worker-2")),
        metrics=metrics,
    )
    start = clock.now()

    assert run() is True

    assert (clock.now() - start).total_seconds() == 1 + 2 + 4 + 8 + 16 + 5 * 30
    assert others == [None] * 11
    image = stored_image(uow_factory, requested.id)
    assert image.status is JobStatus.READY
    assert queue_state(database, clock) == []
    assert metrics.outcomes == ["unavailable"] * 10 + ["ready"]
    assert metrics.dead_lettered == []


def test_a_worker_stopped_during_an_outage_lets_the_job_go_uncounted(
    uow_factory: UnitOfWorkFactory,
    flaky_storage: Callable[[int], BlobStorage],
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    run = worker(uow_factory, flaky_storage(10), clock, limits)

    assert run(lambda: False) is True

    assert stored_image(uow_factory, requested.id).status is JobStatus.PENDING
    # Free at once for the next worker, with no attempt counted.
    assert queue_state(database, clock) == [(0, 0.0)]
    taken = claim(uow_factory, "worker-2")
    assert taken is not None
    assert taken.attempts == 0


def test_a_job_whose_lease_went_to_another_worker_is_left_to_it(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    """A database down for longer than the lease: when it is back, another worker may have
    claimed the job first; the waiting one then leaves it alone."""

    def lease_taken_over_once() -> None:
        with uow_factory() as uow:
            if uow.jobs.renew_lease(requested.id, "worker-1", 0):
                assert uow.jobs.claim("worker-2", 120) is not None
            uow.commit()

    outage = DependencyUnavailable("database is down", "database")
    run = worker(
        uow_factory, storage, clock, limits, failures=(outage,), before_each=lease_taken_over_once
    )

    assert run() is True

    with database.lock:
        (row,) = database.jobs.values()
    assert (row.leased_by, row.job.attempts) == ("worker-2", 0)
    assert stored_image(uow_factory, requested.id).status is JobStatus.PENDING
