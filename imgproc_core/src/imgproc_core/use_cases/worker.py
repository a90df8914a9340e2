"""The embedded worker's step: claim one queued job from the queue table, run it under the job
policy, and settle it in the queue."""

from __future__ import annotations

import logging

from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.ports import UnitOfWorkFactory
from imgproc_core.use_cases.job_runner import (
    JobRunEnd,
    KeepGoing,
    RunJob,
    RunJobCommand,
)

__all__ = ["RunNextJob"]

logger = logging.getLogger(__name__)


def _always() -> bool:
    return True


class RunNextJob:
    """Claim the next due job from the queue table, run it with :class:`RunJob`, and settle
    it; say whether there was one.

    How each end is settled in the queue:

    - done, or failed for good: acknowledged (the image says READY or FAILED, and why);
    - a counted failure with attempts left: given back with one more attempt counted, due
      after the policy's backoff, so that the thread takes other jobs meanwhile;
    - the last attempt failed: the runner parked it (image FAILED, row acknowledged);
    - a dependency down: the thread waits it out holding the job, its attempts untouched.
      Before each new attempt it renews the job's lease, so no other worker takes the job
      over while it waits, however long the outage; should the lease have gone to another
      worker meanwhile (a database down for longer than the lease), this one leaves the job
      to it. A worker told to stop while it waits lets the job go at once, still uncounted.

    A worker that dies mid-job settles nothing: its lease runs out and another worker claims
    the job again.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        run_job: RunJob,
        worker_id: str,
        lease_seconds: float = 120.0,
    ) -> None:
        self._uow_factory = uow_factory
        self._run_job = run_job
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds

    def __call__(self, keep_going: KeepGoing = _always) -> bool:
        """Run one job, if one is due; ``keep_going`` turning False cuts short a wait between
        attempts."""
        with self._uow_factory() as uow:
            job = uow.jobs.claim(self._worker_id, self._lease_seconds)
            uow.commit()
        if job is None:
            return False
        run = self._run_job(
            RunJobCommand(
                job=job,
                worker=self._worker_id,
                keep_going=keep_going,
                hold=lambda: self._renew_lease(job.id, self._lease_seconds),
                hand_back_retries=True,
            )
        )
        if run.end in (JobRunEnd.DONE, JobRunEnd.FAILED):
            with self._uow_factory() as uow:
                uow.jobs.ack(job.id)
                uow.commit()
        elif run.end is JobRunEnd.RETRY_LATER:
            with self._uow_factory() as uow:
                uow.jobs.retry(job.id, run.delay)
                uow.commit()
        elif run.end is JobRunEnd.ABANDONED:
            self._let_go(job.id)
        return True

    def _renew_lease(self, job_id: str, lease_seconds: float) -> bool:
        with self._uow_factory() as uow:
            held = uow.jobs.renew_lease(job_id, self._worker_id, lease_seconds)
            uow.commit()
        return held

    def _let_go(self, job_id: str) -> None:
        try:
            self._renew_lease(job_id, 0.0)
        except DependencyUnavailable as exc:
            logger.warning(
                "could not let job %s go (%s); it is free once its lease runs out",
                job_id,
                exc.message,
            )
