"""The relay's step: claim a batch from the outbox, publish it, acknowledge it only once the
broker holds it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imgproc_core.adapters.memory import InMemoryJobPublisher, ManualClock
from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import TransformJob
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.ports import UnitOfWork, UnitOfWorkFactory
from imgproc_core.use_cases import (
    GetOutboxBacklog,
    OutboxBacklog,
    RelayOutbox,
    RequestTransform,
    RequestTransformCommand,
)

Upload = Callable[..., Image]
LEASE = 30.0


@pytest.fixture
def publisher() -> InMemoryJobPublisher:
    return InMemoryJobPublisher()


@pytest.fixture
def queued(
    request_transform: RequestTransform, upload: Upload, alice: str, clock: ManualClock
) -> list[TransformJob]:
    """Five jobs in the outbox, a second apart."""
    source = upload(alice)
    jobs = []
    for width in range(10, 15):
        image = request_transform(
            RequestTransformCommand(alice, source.id, Transformation(resize=Resize(width=width)))
        )
        jobs.append(TransformJob(image_id=image.id, source_id=source.id, user_id=alice))
        clock.advance(1)
    return jobs


def relay(
    uow_factory: UnitOfWorkFactory,
    publisher: InMemoryJobPublisher,
    clock: ManualClock,
    relay_id: str = "relay-1",
    batch_size: int = 2,
) -> RelayOutbox:
    return RelayOutbox(
        uow_factory, publisher, clock, relay_id, lease_seconds=LEASE, batch_size=batch_size
    )


def outbox_size(uow_factory: UnitOfWorkFactory) -> int:
    with uow_factory() as uow:
        return uow.jobs.pending_count()


def test_batches_are_published_oldest_first_and_leave_the_outbox(
    uow_factory: UnitOfWorkFactory,
    publisher: InMemoryJobPublisher,
    clock: ManualClock,
    queued: list[TransformJob],
) -> None:
    step = relay(uow_factory, publisher, clock, batch_size=2)

    assert [step(), step(), step(), step()] == [2, 2, 1, 0]

    assert publisher.delivered == queued
    assert outbox_size(uow_factory) == 0


def test_a_broker_down_gives_the_rows_back_for_the_next_attempt(
    uow_factory: UnitOfWorkFactory,
    publisher: InMemoryJobPublisher,
    clock: ManualClock,
    queued: list[TransformJob],
) -> None:
    publisher.available = False
    down = relay(uow_factory, publisher, clock, "relay-1", batch_size=10)
    with pytest.raises(DependencyUnavailable):
        down()
    assert outbox_size(uow_factory) == 5
    assert publisher.delivered == []

    # The broker is back: the next attempt publishes them, without waiting out a lease.
    publisher.available = True
    assert down() == 5
    assert publisher.delivered == queued
    assert outbox_size(uow_factory) == 0


def test_rows_the_database_cannot_take_back_wait_for_their_lease(
    uow_factory: UnitOfWorkFactory,
    publisher: InMemoryJobPublisher,
    clock: ManualClock,
    queued: list[TransformJob],
) -> None:
    opened = 0

    def second_one_fails() -> UnitOfWork:
        nonlocal opened
        opened += 1
        if opened == 2:
            raise DependencyUnavailable("the database is down", "database")
        return uow_factory()

    publisher.available = False
    with pytest.raises(DependencyUnavailable, match="broker"):
        relay(second_one_fails, publisher, clock, "relay-down", batch_size=10)()

    publisher.available = True
    other = relay(uow_factory, publisher, clock, "relay-up", batch_size=10)
    assert other() == 0
    clock.advance(LEASE)
    assert other() == 5
    assert publisher.delivered == queued
    assert outbox_size(uow_factory) == 0


class _FailsOnFlush(InMemoryJobPublisher):
    def flush(self) -> None:
        raise DependencyUnavailable("the broker did not acknowledge", "broker")


def test_nothing_is_acknowledged_unless_the_flush_succeeds(
    uow_factory: UnitOfWorkFactory, clock: ManualClock, queued: list[TransformJob]
) -> None:
    with pytest.raises(DependencyUnavailable):
        relay(uow_factory, _FailsOnFlush(), clock, batch_size=3)()
    assert outbox_size(uow_factory) == 5


def test_two_relays_split_the_outbox(
    uow_factory: UnitOfWorkFactory,
    publisher: InMemoryJobPublisher,
    clock: ManualClock,
    queued: list[TransformJob],
) -> None:
    first = relay(uow_factory, publisher, clock, "relay-1", batch_size=3)
    second = relay(uow_factory, publisher, clock, "relay-2", batch_size=3)

    assert first() + second() == 5

    assert sorted(job.id for job in publisher.delivered) == sorted(job.id for job in queued)


@pytest.mark.parametrize(("lease", "batch"), [(0.0, 1), (10.0, 0)])
def test_a_relay_needs_a_lease_and_a_batch(
    uow_factory: UnitOfWorkFactory,
    publisher: InMemoryJobPublisher,
    clock: ManualClock,
    lease: float,
    batch: int,
) -> None:
    with pytest.raises(ValueError, match="must be"):
        RelayOutbox(uow_factory, publisher, clock, "r", lease_seconds=lease, batch_size=batch)


def test_the_backlog_counts_the_jobs_and_ages_the_oldest(
    uow_factory: UnitOfWorkFactory,
    publisher: InMemoryJobPublisher,
    clock: ManualClock,
    queued: list[TransformJob],
) -> None:
    backlog = GetOutboxBacklog(uow_factory, clock)
    # The fixture queued five jobs a second apart and then moved on a second.
    assert backlog() == OutboxBacklog(depth=5, oldest_age_seconds=5.0)
    clock.advance(10)
    assert backlog() == OutboxBacklog(depth=5, oldest_age_seconds=15.0)

    assert relay(uow_factory, publisher, clock, batch_size=2)() == 2
    assert backlog() == OutboxBacklog(depth=3, oldest_age_seconds=13.0)

    relay(uow_factory, publisher, clock, batch_size=10)()
    assert backlog() == OutboxBacklog(depth=0, oldest_age_seconds=0.0)
