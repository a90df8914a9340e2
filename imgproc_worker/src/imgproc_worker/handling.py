"""What the worker does with one job message: read it, and hand its job to the core's job
runner (:class:`~imgproc_core.use_cases.RunJob`), which runs, retries or parks it on the
dead-letter topic under the same policy as every worker. Kafka's consumer is not involved
here; :mod:`imgproc_worker.consumer` feeds it."""

from __future__ import annotations

import logging

from imgproc_core.ports.messages import DeadLetterCode, Delivery, MalformedMessage, decode_job
from imgproc_core.use_cases import (
    JobRunEnd,
    KeepGoing,
    ParkMessage,
    ParkMessageCommand,
    RunJob,
    RunJobCommand,
)

__all__ = ["Delivery", "KeepGoing", "MessageHandler"]

logger = logging.getLogger(__name__)


class MessageHandler:
    """Run the job of one message to an end that may be committed, or abandon it.

    ``__call__`` returns True when the message is done with: the job ended (rendered, found
    rendered, its image gone), or it failed for good and is parked on the dead-letter topic
    (a malformed message, a corrupt source, a job given up after its last attempt). It returns
    False when ``keep_going`` turned False while the job waited for another try: the offset is
    then left uncommitted and the next owner of the partition runs the job again. An attempt
    already running is never interrupted: it ends (within the job time limit) first.

    Retries happen in place: a message carries no count of failed attempts but this worker's.
    """

    def __init__(self, run_job: RunJob, park_message: ParkMessage, worker_id: str) -> None:
        self._run_job = run_job
        self._park_message = park_message
        self._worker_id = worker_id

    def __call__(self, delivery: Delivery, keep_going: KeepGoing) -> bool:
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
            return self._park_message(
                ParkMessageCommand(
                    delivery=delivery,
                    code=DeadLetterCode.MALFORMED,
                    reason=exc.message,
                    worker=self._worker_id,
                    keep_going=keep_going,
                )
            )
        run = self._run_job(
            RunJobCommand(
                job=requested.to_job(),
                worker=self._worker_id,
                keep_going=keep_going,
                delivery=delivery,
            )
        )
        return run.end is not JobRunEnd.ABANDONED
