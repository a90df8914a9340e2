"""The embedded profile's workers: threads in the HTTP process that run queued transform jobs.

With the queue table (``IMGPROC_QUEUE=table``) and ``IMGPROC_WORKER_THREADS`` > 0, the app's
lifespan starts that many daemon threads. Each loops on the ``RunNextJob`` use case: claim the
oldest due job, run it under the job policy that every worker shares, settle it; when the queue
is empty it sleeps briefly, or until a transform request in this process signals a new job.
While a dependency (storage, database) is down, a thread waits it out holding its job, whose
attempts the outage does not use up.

On shutdown (SIGTERM, Ctrl-C) the threads stop claiming, finish the job in hand and commit it
(a job waiting out an outage is let go, for the next start to take), then exit. The queue
lives in the database, so jobs survive a restart. A process killed outright leaves its jobs
leased: another worker (or this one, restarted) claims them again once the lease runs out,
``IMGPROC_JOB_LEASE_SECONDS`` after the claim (120 s by default: longer than the 60 s job time
limit, so a slow job is never claimed twice while it is still running).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Final

logger = logging.getLogger(__name__)

#: How long an idle worker sleeps before looking at the queue again, unless woken.
IDLE_SECONDS: Final = 0.5
#: How long a worker waits after an unexpected error (the database down, say) before retrying.
ERROR_BACKOFF_SECONDS: Final = 2.0

#: Stop waiting between attempts when this turns False.
KeepGoing = Callable[[], bool]
#: One step of a worker: run the next due job, if there is one; say whether there was.
JobStep = Callable[[KeepGoing], bool]
RunNextJobFactory = Callable[[str], JobStep]


class JobSignal:
    """Wakes idle workers when this process has just queued a job. Without workers it does
    nothing; the queue table is the source of truth either way, signals only save a sleep."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def notify(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> None:
        if self._event.wait(timeout):
            self._event.clear()


class EmbeddedWorkers:
    """``threads`` worker threads, each with its own ``RunNextJob`` built by ``run_next_job``
    from a worker id (``host:pid:n``, so leases show which process holds a job)."""

    def __init__(
        self,
        run_next_job: RunNextJobFactory,
        threads: int,
        signal: JobSignal,
        *,
        idle_seconds: float = IDLE_SECONDS,
        error_backoff_seconds: float = ERROR_BACKOFF_SECONDS,
    ) -> None:
        if threads < 1:
            raise ValueError("embedded workers need at least one thread")
        self._run_next_job = run_next_job
        self._count = threads
        self._signal = signal
        self._idle = idle_seconds
        self._error_backoff = error_backoff_seconds
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> int:
        return sum(thread.is_alive() for thread in self._threads)

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the embedded workers are already started")
        self._stopping.clear()
        prefix = f"{socket.gethostname()}:{os.getpid()}"
        # Built here, not in the threads, so that a wiring error stops the start loudly.
        runners = [self._run_next_job(f"{prefix}:{number}") for number in range(self._count)]
        for number, runner in enumerate(runners):
            thread = threading.Thread(
                target=self._loop,
                args=(f"{prefix}:{number}", runner),
                name=f"imgproc-worker-{number}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        logger.info("started %d embedded worker thread(s)", self._count)

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming jobs, and wait up to ``timeout`` seconds for the ones in hand."""
        self._stopping.set()
        self._signal.notify()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning(
                    "%s still busy at shutdown; its job's lease will expire", thread.name
                )
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        logger.info("embedded workers stopped")

    def _keep_going(self) -> bool:
        return not self._stopping.is_set()

    def _loop(self, worker_id: str, run_next_job: JobStep) -> None:
        while not self._stopping.is_set():
            try:
                found = run_next_job(self._keep_going)
            except Exception:
                logger.exception("worker %s could not run a job; retrying shortly", worker_id)
                self._stopping.wait(self._error_backoff)
                continue
            if not found and not self._stopping.is_set():
                self._signal.wait(self._idle)
