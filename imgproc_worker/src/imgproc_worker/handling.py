"""What the worker does with one job message: run it, retry it, or park it on the dead-letter
topic. Kafka's consumer is not involved here; :mod:`imgproc_worker.consumer` feeds it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Final

from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import TransformJob
from imgproc_core.ports import Clock, DeadLetterPublisher
from imgproc_core.ports.messages import (
    DeadLetter,
    DeadLetterCode,
    Delivery,
    MalformedMessage,
    TransformRequested,
    decode_job,
)
from imgproc_core.use_cases import (
    MAX_BACKOFF_SECONDS,
    GiveUpJobCommand,
    JobOutcome,
    JobOutcomeStatus,
    describe_error,
)

__all__ = ["Delivery", "MessageHandler", "RetryPolicy"]

logger = logging.getLogger(__name__)

#: How finely a wait between attempts notices that it should stop.
_WAIT_SLICE_SECONDS: Final = 0.25

KeepGoing = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a job is retried in the worker that holds it.

    Two kinds of trouble, two rules:

    - the job itself failed (its time limit, a crashed codec process, an unexpected error):
      tried ``max_attempts`` times in all, ``backoff_seconds * 2**n`` apart (at most five
      minutes), then given up: the image is FAILED and the message parked;
    - a dependency is down (database, storage, the codec pool): that is no fault of the job,
      and failing it would lose it, so it is tried again, ``backoff_seconds * 2**n`` apart but
      at most ``outage_backoff_max_seconds``, for as long as the outage lasts and the worker
      holds the partition, without using up the job's attempts.
    """

    max_attempts: int = 5
    backoff_seconds: float = 1.0
    outage_backoff_max_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def retry_delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure of the job."""
        return float(min(MAX_BACKOFF_SECONDS, self.backoff_seconds * 2.0 ** min(failures - 1, 64)))

    def outage_delay(self, outages: int) -> float:
        """The wait after the ``outages``-th time in a row a dependency did not answer."""
        return float(
            min(self.outage_backoff_max_seconds, self.backoff_seconds * 2.0 ** min(outages - 1, 64))
        )


class _Abandoned(Exception):
    """The worker stops, or lost the partition, while the message waits for another try."""


class MessageHandler:
    """Run the job of one message to an end that may be committed, or abandon it.

    ``__call__`` returns True when the message is done with: the job ended (rendered, found
    rendered, its image gone), or it failed for good and is parked on the dead-letter topic
    (a malformed message, a corrupt source, a job given up after its last attempt). It returns
    False when ``keep_going`` turned False while the job waited for another try: the offset is
    then left uncommitted and the next owner of the partition runs the job again. An attempt
    already running is never interrupted: it ends (within the job time limit) first.
    """

    def __init__(
        self,
        process: Callable[[TransformJob], JobOutcome],
        give_up: Callable[[GiveUpJobCommand], Image | None],
        dead_letters: DeadLetterPublisher,
        clock: Clock,
        worker_id: str,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._process = process
        self._give_up = give_up
        self._dead_letters = dead_letters
        self._clock = clock
        self._worker_id = worker_id
        self._policy = policy or RetryPolicy()

    def __call__(self, delivery: Delivery, keep_going: KeepGoing) -> bool:
        try:
            self._handle(delivery, keep_going)
        except _Abandoned:
            return False
        return True

    def _handle(self, delivery: Delivery, keep_going: KeepGoing) -> None:
        try:
            requested = decode_job(delivery.value)
        except MalformedMessage as exc:
            logger.warning(
                "parking the malformed message at %s[%d]@%d: %s",
                delivery.topic,
                delivery.partition,
                delivery.offset,
                exc.message,
            )
            self._park(delivery, None, DeadLetterCode.MALFORMED, exc.message, 0, keep_going)
            return
        job = requested.to_job()
        outcome, failures = self._run(job, delivery, requested, keep_going)
        if outcome is None:
            return
        logger.info("job %s: %s", job.id, outcome.status.value)
        if outcome.status is JobOutcomeStatus.FAILED:
            reason = (outcome.image.failure_reason if outcome.image else None) or "failed"
            self._park(delivery, requested, DeadLetterCode.FAILED, reason, failures + 1, keep_going)

    def _run(
        self,
        job: TransformJob,
        delivery: Delivery,
        requested: TransformRequested,
        keep_going: KeepGoing,
    ) -> tuple[JobOutcome | None, int]:
        """The job's outcome and how many attempts failed before it; no outcome when it was
        given up (and parked)."""
        failures = outages = 0
        while True:
            try:
                return self._process(job), failures
            except DependencyUnavailable as exc:
                outages += 1
                delay = self._policy.outage_delay(outages)
                logger.warning("job %s: %s; trying again in %.1f s", job.id, exc.message, delay)
            except Exception as exc:
                failures += 1
                outages = 0
                reason = describe_error(exc)
                if failures >= self._policy.max_attempts:
                    logger.error(
                        "job %s gave up after %d attempts: %s",
                        job.id,
                        failures,
                        reason,
                        exc_info=exc,
                    )
                    command = GiveUpJobCommand(job=job, attempts=failures, reason=reason)
                    self._outlasting_outages(partial(self._give_up, command), keep_going)
                    self._park(
                        delivery,
                        requested,
                        DeadLetterCode.GAVE_UP,
                        f"gave up after {failures} attempts: {reason}",
                        failures,
                        keep_going,
                    )
                    return None, failures
                delay = self._policy.retry_delay(failures)
                logger.warning(
                    "job %s failed (attempt %d of %d), retrying in %.1f s: %s",
                    job.id,
                    failures,
                    self._policy.max_attempts,
                    delay,
                    reason,
                    exc_info=exc,
                )
            self._wait(delay, keep_going)

    def _park(
        self,
        delivery: Delivery,
        job: TransformRequested | None,
        code: str,
        reason: str,
        attempts: int,
        keep_going: KeepGoing,
    ) -> None:
        letter = DeadLetter(
            code=code,
            reason=reason,
            topic=delivery.topic,
            partition=delivery.partition,
            offset=delivery.offset,
            key=None if delivery.key is None else delivery.key.decode("utf-8", "replace"),
            value=delivery.value or b"",
            job=job,
            attempts=attempts,
            worker=self._worker_id,
            dead_at=self._clock.now(),
        )
        self._outlasting_outages(partial(self._dead_letters.publish, letter), keep_going)
        logger.warning(
            "parked %s[%d]@%d on the dead-letter topic (%s): %s",
            delivery.topic,
            delivery.partition,
            delivery.offset,
            code,
            reason,
        )

    def _outlasting_outages(self, action: Callable[[], object], keep_going: KeepGoing) -> None:
        outages = 0
        while True:
            try:
                action()
                return
            except DependencyUnavailable as exc:
                outages += 1
                delay = self._policy.outage_delay(outages)
                logger.warning("%s; trying again in %.1f s", exc.message, delay)
            self._wait(delay, keep_going)

    @staticmethod
    def _wait(seconds: float, keep_going: KeepGoing) -> None:
        deadline = time.monotonic() + seconds
        while True:
            if not keep_going():
                raise _Abandoned
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(_WAIT_SLICE_SECONDS, left))
