"""The production profile's relay: from the outbox (the job queue table) to the message broker."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from imgproc_core.domain.jobs import TransformJob
from imgproc_core.ports import Clock, JobPublisher, UnitOfWorkFactory

__all__ = ["GetOutboxBacklog", "OutboxBacklog", "RelayOutbox"]

logger = logging.getLogger(__name__)


class RelayOutbox:
    """Publish one batch of queued jobs to the broker; return how many were relayed.

    The batch is claimed with a lease in a transaction of its own (other relays skip leased
    rows), published, flushed until the broker has stored every message, and only then
    acknowledged, in one transaction. So a job leaves the outbox only once the broker holds it:

    - the broker down: :class:`~imgproc_core.domain.errors.DependencyUnavailable` is raised
      and the rows are given back at once, so that the next attempt after the broker's return
      publishes them; if the database cannot take them back, they stay leased until the lease
      runs out, and then any relay publishes them again;
    - a relay that dies between publishing and acknowledging leaves its rows leased, and they
      are published again after the lease: consumers see a job twice, which they take in
      their stride (rendering is idempotent).

    ``lease_seconds`` should exceed the time a flush may take; a shorter lease only costs
    duplicates.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        publisher: JobPublisher,
        clock: Clock,
        relay_id: str,
        lease_seconds: float = 120.0,
        batch_size: int = 100,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self._uow_factory = uow_factory
        self._publisher = publisher
        self._clock = clock
        self._relay_id = relay_id
        self._lease_seconds = lease_seconds
        self._batch_size = batch_size

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def __call__(self) -> int:
        with self._uow_factory() as uow:
            jobs = uow.jobs.claim_batch(self._relay_id, self._lease_seconds, self._batch_size)
            uow.commit()
        if not jobs:
            return 0
        started = self._clock.now()
        try:
            for job in jobs:
                self._publisher.publish(job)
            self._publisher.flush()
        except Exception:
            self._give_back(jobs)
            raise
        with self._uow_factory() as uow:
            for job in jobs:
                uow.jobs.ack(job.id)
            uow.commit()
        elapsed = (self._clock.now() - started).total_seconds()
        if elapsed > self._lease_seconds:
            logger.warning(
                "relaying %d jobs took %.1f s, longer than the %.1f s lease: other relays may "
                "have published them too",
                len(jobs),
                elapsed,
                self._lease_seconds,
            )
        logger.debug("relayed %d jobs", len(jobs))
        return len(jobs)

    def _give_back(self, jobs: list[TransformJob]) -> None:
        # Some of them may have reached the broker: published again, they are duplicates,
        # which consumers take in their stride.
        try:
            with self._uow_factory() as uow:
                uow.jobs.release(self._relay_id, [job.id for job in jobs])
                uow.commit()
        except Exception:
            logger.warning(
                "could not give back %d unpublished jobs; they wait for their lease to end",
                len(jobs),
                exc_info=True,
            )


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    """What waits in the outbox: how many jobs, and how long the oldest has waited (0 when
    there is none)."""

    depth: int
    oldest_age_seconds: float


class GetOutboxBacklog:
    """The outbox's backlog, read in one transaction: for an operator's metrics. A backlog
    that grows, or whose oldest job keeps ageing, means jobs are not reaching the broker."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def __call__(self) -> OutboxBacklog:
        with self._uow_factory() as uow:
            depth = uow.jobs.pending_count()
            oldest = uow.jobs.oldest_enqueued_at()
        if oldest is None:
            return OutboxBacklog(depth, 0.0)
        # Clocks of different hosts may disagree a little: an age is never negative.
        age = max(0.0, (self._clock.now() - oldest).total_seconds())
        return OutboxBacklog(depth, age)
