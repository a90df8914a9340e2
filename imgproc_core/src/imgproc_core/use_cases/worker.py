"""The embedded worker's step: claim one queued job, run it, and settle it; and parking a job
that kept failing, which every kind of worker does the same way."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from imgproc_core.domain.errors import DomainError
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.ports import Clock, UnitOfWorkFactory
from imgproc_core.use_cases.transforms import ProcessTransformJob

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "GiveUpJob",
    "GiveUpJobCommand",
    "RunNextJob",
    "describe_error",
]

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class GiveUpJobCommand:
    job: TransformJob
    #: How many times the job was tried, the last one included.
    attempts: int
    #: The last error, as :func:`describe_error` puts it.
    reason: str


class GiveUpJob:
    """Park a job that failed on every attempt: its image becomes FAILED with the last error,
    and the job leaves the queue table, for an operator to retry.

    An image that got READY meanwhile (another run of the same job) is left as it is. Returns
    the image as the job leaves it, or None when it is gone.
    """

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def __call__(self, command: GiveUpJobCommand) -> Image | None:
        job = command.job
        with self._uow_factory() as uow:
            image = uow.images.get(job.image_id)
            if image is not None and image.status.can_become(JobStatus.FAILED):
                image.fail(
                    f"gave up after {command.attempts} attempts: {command.reason}",
                    self._clock.now(),
                )
                uow.images.update(image)
            # In the production profile the row is the outbox's, normally gone by now; one
            # still there (its relay stopped before acknowledging it) must not publish again.
            uow.jobs.ack(job.id)
            uow.commit()
        return image


class RunNextJob:
    """Claim the next due job from the queue table and run it; say whether there was one.

    A job that ends (rendered, failed for good, or its image gone) is acknowledged. A job that
    raised is given back with exponential backoff (``backoff_base_seconds * 2**attempts``, at
    most five minutes); on its ``max_attempts``-th failure its image is marked FAILED with the
    last error and the job is acknowledged, parked for an operator to retry. A worker that dies
    mid-job acknowledges nothing: its lease runs out and another worker claims the job again.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        process: ProcessTransformJob,
        clock: Clock,
        worker_id: str,
        lease_seconds: float = 120.0,
        max_attempts: int = 5,
        backoff_base_seconds: float = 1.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._uow_factory = uow_factory
        self._process = process
        self._clock = clock
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base_seconds
        self._give_up = GiveUpJob(uow_factory, clock)

    def __call__(self) -> bool:
        with self._uow_factory() as uow:
            job = uow.jobs.claim(self._worker_id, self._lease_seconds)
            uow.commit()
        if job is None:
            return False
        try:
            outcome = self._process(job)
        except Exception as exc:
            self._after_error(job, exc)
            return True
        logger.info("job %s: %s", job.id, outcome.status.value)
        with self._uow_factory() as uow:
            uow.jobs.ack(job.id)
            uow.commit()
        return True

    def backoff_seconds(self, attempts: int) -> float:
        """How long a job that has failed ``attempts`` times before waits after this failure."""
        return float(min(MAX_BACKOFF_SECONDS, self._backoff_base * 2.0 ** min(attempts, 64)))

    def _after_error(self, job: TransformJob, exc: Exception) -> None:
        attempt = job.attempts + 1
        reason = describe_error(exc)
        if attempt < self._max_attempts:
            delay = self.backoff_seconds(job.attempts)
            logger.warning(
                "job %s failed (attempt %d of %d), retrying in %.1f s: %s",
                job.id,
                attempt,
                self._max_attempts,
                delay,
                reason,
                exc_info=exc,
            )
            with self._uow_factory() as uow:
                uow.jobs.retry(job.id, delay)
                uow.commit()
            return
        logger.error("job %s gave up after %d attempts: %s", job.id, attempt, reason, exc_info=exc)
        self._give_up(GiveUpJobCommand(job=job, attempts=attempt, reason=reason))


def describe_error(exc: Exception) -> str:
    """An error as a failure reason: a domain error's code and message, else its type."""
    if isinstance(exc, DomainError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
