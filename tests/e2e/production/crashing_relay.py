"""``python -m tests.e2e.production.crashing_relay``: ``imgproc relay``, configured by
``IMGPROC_*`` as it is, that SIGKILLs itself as soon as the broker has stored its first batch
and before that batch is acknowledged in the outbox: the crash between publishing and
acknowledging, on cue instead of by luck."""

from __future__ import annotations

import logging
import os
import signal
import threading

from dependency_injector import providers

from imgproc_core.container import build_container
from imgproc_core.domain.jobs import TransformJob
from imgproc_core.ports import JobPublisher
from imgproc_core.settings import Settings
from imgproc_worker.runtime import LOG_FORMAT, run_relay, stop_on_signals

logger = logging.getLogger(__name__)

#: What the relay logs right before it dies; the test waits for it.
DYING_LINE = "the broker holds the batch; dying before acknowledging it"


class _DiesAfterFlushing:
    def __init__(self, publisher: JobPublisher) -> None:
        self._publisher = publisher
        self._published = 0

    def publish(self, job: TransformJob) -> None:
        self._publisher.publish(job)
        self._published += 1

    def flush(self) -> None:
        self._publisher.flush()
        logger.warning("%s (%d jobs)", DYING_LINE, self._published)
        os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    container = build_container(Settings.from_env())
    container.init_resources()
    container.job_publisher.override(
        providers.Object(_DiesAfterFlushing(container.job_publisher()))
    )
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            run_relay(container, stop)
    finally:
        container.shutdown_resources()


if __name__ == "__main__":
    main()
