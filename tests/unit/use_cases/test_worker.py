"""The embedded worker's step: claim, run, acknowledge or retry with backoff."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDatabase,
    InMemoryImageCodec,
    ManualClock,
)
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.ports import BlobStorage, UnitOfWorkFactory
from imgproc_core.use_cases import (
    MAX_BACKOFF_SECONDS,
    ProcessTransformJob,
    RequestTransform,
    RequestTransformCommand,
    RunNextJob,
)

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
) -> RunNextJob:
    process = ProcessTransformJob(uow_factory, storage, InMemoryImageCodec(), clock, limits)
    return RunNextJob(
        uow_factory,
        process,
        clock,
        "worker-1",
        lease_seconds=lease_seconds,
        max_attempts=max_attempts,
        backoff_base_seconds=backoff_base_seconds,
    )


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


def test_a_transient_failure_retries_with_growing_delays(
    uow_factory: UnitOfWorkFactory,
    flaky_storage: Callable[[int], BlobStorage],
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    run = worker(uow_factory, flaky_storage(3), clock, limits, backoff_base_seconds=1.0)

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
    assert run() is True  # storage is back
    assert queue_state(database, clock) == []
    image = stored_image(uow_factory, requested.id)
    assert image.status is JobStatus.READY
    assert image.attempts == 4


def test_the_backoff_is_capped(
    uow_factory: UnitOfWorkFactory,
    flaky_storage: Callable[[int], BlobStorage],
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    run = worker(
        uow_factory,
        flaky_storage(100),
        clock,
        limits,
        backoff_base_seconds=100.0,
        max_attempts=10,
    )
    delays = []
    for _ in range(4):
        assert run() is True
        [(_, delay)] = queue_state(database, clock)
        delays.append(delay)
        clock.advance(delay)
    assert delays == [100.0, 200.0, MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS]
    assert run.backoff_seconds(1000) == MAX_BACKOFF_SECONDS


def test_after_max_attempts_the_image_fails_and_the_job_is_parked(
    uow_factory: UnitOfWorkFactory,
    flaky_storage: Callable[[int], BlobStorage],
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    requested: Image,
) -> None:
    run = worker(uow_factory, flaky_storage(100), clock, limits, max_attempts=3)

    for _ in range(3):
        assert run() is True
        clock.advance(MAX_BACKOFF_SECONDS)

    image = stored_image(uow_factory, requested.id)
    assert image.status is JobStatus.FAILED
    assert image.failure_reason == (
        "gave up after 3 attempts: dependency_unavailable: storage is down"
    )
    assert queue_state(database, clock) == []
    assert run() is False


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


def test_max_attempts_must_be_positive(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    clock: ManualClock,
    limits: Limits,
) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        worker(uow_factory, storage, clock, limits, max_attempts=0)
