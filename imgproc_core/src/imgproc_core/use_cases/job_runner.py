"""Running a job under the job policy, the same way in every kind of worker; parking what cannot
be done (the image FAILED with its reason, and on a broker a dead letter).

:class:`RunJob` is the runner: the embedded worker threads (``RunNextJob``, on the queue table)
and ``imgproc worker`` (on Kafka) both hand it their job. It tries the job, asks the
:class:`~imgproc_core.use_cases.retry_policy.JobPolicy` what follows a failure, and waits in
the worker's thread where the policy says to wait. What differs between
the two workers is only where a job's count of failed attempts lives, and so what a counted
retry does (``RunJobCommand.hand_back_retries``): a queue row keeps its count, so the embedded
worker hands the job back to the queue, due after the backoff; a Kafka message has no count
but the worker's, so ``imgproc worker`` waits and retries in place.

An outage is waited out in place by both, holding the job: the wait is no fault of the job and
uses up none of its attempts, and holding it keeps the jobs behind it where they are instead of
trying each in turn against a dependency that is down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.webhooks import WebhookEventType
from imgproc_core.ports import Clock, DeadLetterPublisher, JobMetrics, UnitOfWorkFactory
from imgproc_core.ports.messages import DeadLetter, DeadLetterCode, Delivery, TransformRequested
from imgproc_core.use_cases.retry_policy import FailureKind, JobPolicy, Step
from imgproc_core.use_cases.transforms import JobOutcome, JobOutcomeStatus
from imgproc_core.use_cases.webhooks import WebhookEvents

__all__ = [
    "GiveUpJob",
    "GiveUpJobCommand",
    "JobRun",
    "JobRunEnd",
    "KeepGoing",
    "ParkMessage",
    "ParkMessageCommand",
    "RunJob",
    "RunJobCommand",
    "Sleep",
]

logger = logging.getLogger(__name__)

#: Polled while a worker waits: False means stop waiting (the worker stops, or lost the job).
KeepGoing = Callable[[], bool]
#: How a worker sleeps between attempts (``time.sleep``; tests pass a faster one).
Sleep = Callable[[float], object]

#: How finely a wait notices that it should stop.
_WAIT_SLICE_SECONDS: Final = 0.25


def _always() -> bool:
    return True


class _NoJobMetrics:
    """Reports nowhere: the runner's metrics when none are given."""

    def job_started(self) -> None:
        pass

    def job_ended(self, outcome: str, output_format: str | None, seconds: float) -> None:
        pass

    def job_dead_lettered(self, code: str) -> None:
        pass


class _Waiting:
    """Waits between attempts: sliced, so that a worker that stops is not held up, and
    outlasting outages of a single step (a dead letter, parking a job)."""

    def __init__(self, policy: JobPolicy, sleep: Sleep) -> None:
        self._policy = policy
        self._sleep = sleep

    def wait(self, seconds: float, keep_going: KeepGoing) -> bool:
        """Sleep ``seconds``; False, at once, if ``keep_going`` turns False meanwhile."""
        left = seconds
        while True:
            if not keep_going():
                return False
            if left <= 0:
                return True
            step = min(_WAIT_SLICE_SECONDS, left)
            self._sleep(step)
            left -= step

    def outlasting_outages(self, action: Callable[[], object], keep_going: KeepGoing) -> bool:
        """Run ``action`` until it does not raise ``DependencyUnavailable``, waiting with the
        policy's outage backoff between tries; False when ``keep_going`` turned False first."""
        outages = 0
        while True:
            try:
                action()
                return True
            except DependencyUnavailable as exc:
                outages += 1
                delay = self._policy.outage_delay(outages)
                logger.warning("%s; trying again in %.1f s", exc.message, delay)
            if not self.wait(delay, keep_going):
                return False


@dataclass(frozen=True, slots=True)
class GiveUpJobCommand:
    job: TransformJob
    #: How many times the job was tried, the last one included.
    attempts: int
    #: The last error, as :func:`~imgproc_core.use_cases.describe_error` puts it.
    reason: str


class GiveUpJob:
    """Park a job that failed on every attempt: its image becomes FAILED with the last error,
    and the job leaves the queue table, for an operator to retry.

    An image that got READY meanwhile (another run of the same job) is left as it is. Returns
    the image as the job leaves it, or None when it is gone.
    """

    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, events: WebhookEvents | None = None
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._events = events

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
                if self._events is not None:
                    self._events.record(uow, WebhookEventType.IMAGE_FAILED, image)
            # In the production profile the row is the outbox's, normally gone by now; one
            # still there (its relay stopped before acknowledging it) must not publish again.
            uow.jobs.ack(job.id)
            uow.commit()
        return image


@dataclass(frozen=True, slots=True)
class ParkMessageCommand:
    #: The message as it was delivered; its bytes go on the dead letter unchanged.
    delivery: Delivery
    #: A :class:`~imgproc_core.ports.messages.DeadLetterCode`.
    code: str
    reason: str
    #: The worker that parks it, named on the letter.
    worker: str
    keep_going: KeepGoing = _always
    #: What the message said, when it could be read.
    job: TransformRequested | None = None
    #: Attempts this worker made before parking it (0 for a message never run).
    attempts: int = 0


class ParkMessage:
    """Put a message on the dead-letter topic for an operator, waiting out a broker that does
    not answer; count it in the metrics. Returns False when ``keep_going`` turned False before
    the letter was stored (the message is then not done with)."""

    def __init__(
        self,
        dead_letters: DeadLetterPublisher,
        clock: Clock,
        policy: JobPolicy | None = None,
        metrics: JobMetrics | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._dead_letters = dead_letters
        self._clock = clock
        self._metrics = metrics or _NoJobMetrics()
        self._waiting = _Waiting(policy or JobPolicy(), sleep)

    def __call__(self, command: ParkMessageCommand) -> bool:
        delivery = command.delivery
        letter = DeadLetter(
            code=command.code,
            reason=command.reason,
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            key=None if delivery.key is None else delivery.key.decode("utf-8", "replace"),
            value=delivery.value or b"",
            job=command.job,
            attempts=command.attempts,
            worker=command.worker,
            dead_at=self._clock.now(),
        )
        if not self._waiting.outlasting_outages(
            lambda: self._dead_letters.publish(letter), command.keep_going
        ):
            return False
        self._metrics.job_dead_lettered(command.code)
        logger.warning(
            "parked %s[%d]@%d on the dead-letter topic (%s): %s",
            delivery.topic,
            delivery.partition,
            delivery.offset,
            command.code,
            command.reason,
        )
        return True


class JobRunEnd(StrEnum):
    """How :class:`RunJob` left a job."""

    #: Rendered, found rendered, or its image gone: done with.
    DONE = "done"
    #: Failed for good (a corrupt source): its image is FAILED, the job parked.
    FAILED = "failed"
    #: Its last attempt failed: its image is FAILED, the job parked and out of the queue.
    GAVE_UP = "gave_up"
    #: A counted failure, with ``hand_back_retries``: the caller gives the job back to its
    #: queue, due after ``JobRun.delay``.
    RETRY_LATER = "retry_later"
    #: ``keep_going`` turned False, or ``hold`` said the job is no longer this worker's,
    #: while the job waited: nothing is settled, the job is someone else's to run again.
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class JobRun:
    end: JobRunEnd
    #: The last attempt's outcome, when it did not raise.
    outcome: JobOutcome | None
    #: The job's counted failed attempts, those before this run included.
    failures: int
    #: With :attr:`JobRunEnd.RETRY_LATER`: how long the job waits before its next attempt.
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class RunJobCommand:
    #: The job; its ``attempts`` are the failed attempts counted before this run.
    job: TransformJob
    #: The worker running it, named in logs and on dead letters.
    worker: str
    keep_going: KeepGoing = _always
    #: Called before each attempt after the first: False when the job is no longer this
    #: worker's (its lease went to another), which abandons it. ``DependencyUnavailable``
    #: counts as an outage.
    hold: Callable[[], bool] | None = None
    #: End the run at a counted failure (:attr:`JobRunEnd.RETRY_LATER`) instead of waiting
    #: and retrying in place.
    hand_back_retries: bool = False
    #: The message the job came in, for its dead letter; None parks without one.
    delivery: Delivery | None = None


class RunJob:
    """Run one job to an end under the job policy: the runner of every worker.

    Each attempt calls ``process`` (:class:`~imgproc_core.use_cases.ProcessTransformJob`) and
    reports to ``metrics``. After a failed attempt the policy decides: an outage waits with
    capped backoff and is tried again, counting nothing, for as long as it lasts and
    ``keep_going`` holds; a transient failure is retried with backoff (in place, or handed
    back); a permanent one, or the ``max_attempts``-th failure, gives up: ``give_up`` marks
    the image FAILED with the reason and takes the job out of the queue. A job that failed for
    good (a corrupt source) and a job given up are parked: on a dead letter when the job came
    in a message (``RunJobCommand.delivery``), else in the FAILED image alone; either way
    counted by ``metrics.job_dead_lettered``. An attempt in hand is never interrupted.
    """

    def __init__(
        self,
        process: Callable[[TransformJob], JobOutcome],
        give_up: Callable[[GiveUpJobCommand], Image | None],
        clock: Clock,
        policy: JobPolicy | None = None,
        dead_letters: DeadLetterPublisher | None = None,
        metrics: JobMetrics | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._process = process
        self._give_up = give_up
        self._policy = policy or JobPolicy()
        self._metrics = metrics or _NoJobMetrics()
        self._waiting = _Waiting(self._policy, sleep)
        self._park_message = (
            None
            if dead_letters is None
            else ParkMessage(dead_letters, clock, self._policy, self._metrics, sleep)
        )

    @property
    def policy(self) -> JobPolicy:
        return self._policy

    def __call__(self, command: RunJobCommand) -> JobRun:
        job = command.job
        failures, outages = job.attempts, 0
        first = True
        while True:
            if not first and command.hold is not None:
                try:
                    held = command.hold()
                except DependencyUnavailable as exc:
                    outages += 1
                    if not self._wait_out(job, exc.message, outages, command):
                        return JobRun(JobRunEnd.ABANDONED, None, failures)
                    continue
                if not held:
                    logger.warning("job %s is no longer %s's; leaving it", job.id, command.worker)
                    return JobRun(JobRunEnd.ABANDONED, None, failures)
            first = False
            started = time.perf_counter()
            self._metrics.job_started()
            try:
                outcome = self._process(job)
            except Exception as exc:
                decision = self._policy.decide(exc, failures, outages)
                self._metrics.job_ended(_ATTEMPT_OUTCOMES[decision.step], None, _since(started))
                if decision.step is Step.WAIT:
                    outages += 1
                    if not self._wait_out(job, decision.reason, outages, command):
                        return JobRun(JobRunEnd.ABANDONED, None, failures)
                    continue
                failures, outages = decision.failures, 0
                if decision.step is Step.GIVE_UP:
                    return self._give_up_on(command, decision.kind, failures, decision.reason, exc)
                logger.warning(
                    "job %s failed (attempt %d of %d), retrying in %.1f s: %s",
                    job.id,
                    failures,
                    self._policy.max_attempts,
                    decision.delay,
                    decision.reason,
                    exc_info=exc,
                )
                if command.hand_back_retries:
                    return JobRun(JobRunEnd.RETRY_LATER, None, failures, decision.delay)
                if not self._waiting.wait(decision.delay, command.keep_going):
                    return JobRun(JobRunEnd.ABANDONED, None, failures)
                continue
            image = outcome.image
            self._metrics.job_ended(
                outcome.status.value, image.format if image else None, _since(started)
            )
            logger.info("job %s: %s", job.id, outcome.status.value)
            if outcome.status is not JobOutcomeStatus.FAILED:
                return JobRun(JobRunEnd.DONE, outcome, failures)
            reason = (image.failure_reason if image else None) or "failed"
            if not self._park(command, DeadLetterCode.FAILED, reason, failures + 1):
                return JobRun(JobRunEnd.ABANDONED, outcome, failures)
            return JobRun(JobRunEnd.FAILED, outcome, failures + 1)

    def _wait_out(
        self, job: TransformJob, reason: str, outages: int, command: RunJobCommand
    ) -> bool:
        delay = self._policy.outage_delay(outages)
        logger.warning("job %s: %s; trying again in %.1f s", job.id, reason, delay)
        return self._waiting.wait(delay, command.keep_going)

    def _give_up_on(
        self,
        command: RunJobCommand,
        kind: FailureKind,
        failures: int,
        reason: str,
        exc: Exception,
    ) -> JobRun:
        job = command.job
        logger.error("job %s gave up after %d attempts: %s", job.id, failures, reason, exc_info=exc)
        given_up: list[Image | None] = []
        give_up = GiveUpJobCommand(job=job, attempts=failures, reason=reason)
        if not self._waiting.outlasting_outages(
            lambda: given_up.append(self._give_up(give_up)), command.keep_going
        ):
            return JobRun(JobRunEnd.ABANDONED, None, failures)
        image = given_up[0]
        if image is None or image.status is JobStatus.READY:
            # Deleted, or rendered by another run meanwhile: nothing to park.
            return JobRun(JobRunEnd.DONE, None, failures)
        code = DeadLetterCode.FAILED if kind is FailureKind.PERMANENT else DeadLetterCode.GAVE_UP
        if not self._park(command, code, image.failure_reason or reason, failures):
            return JobRun(JobRunEnd.ABANDONED, None, failures)
        return JobRun(JobRunEnd.GAVE_UP, None, failures)

    def _park(self, command: RunJobCommand, code: str, reason: str, attempts: int) -> bool:
        if command.delivery is None:
            self._metrics.job_dead_lettered(code)
            return True
        if self._park_message is None:
            raise RuntimeError("a job that came in a message needs a dead-letter publisher")
        return self._park_message(
            ParkMessageCommand(
                delivery=command.delivery,
                code=code,
                reason=reason,
                worker=command.worker,
                keep_going=command.keep_going,
                job=TransformRequested.from_job(command.job),
                attempts=attempts,
            )
        )


#: The metrics outcome of an attempt that raised, by what the policy made of it.
_ATTEMPT_OUTCOMES: Final = {
    Step.WAIT: "unavailable",
    Step.RETRY: "retried",
    Step.GIVE_UP: "gave_up",
}


def _since(started: float) -> float:
    return time.perf_counter() - started
