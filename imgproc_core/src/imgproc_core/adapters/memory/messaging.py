"""A broker in a list: :class:`~imgproc_core.ports.JobPublisher` for tests and embedded use."""

from __future__ import annotations

import threading

from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.domain.jobs import TransformJob


class InMemoryJobPublisher:
    """Published jobs wait in a buffer until :meth:`flush` moves them to :attr:`delivered`.

    Set :attr:`available` to False to play a broker that does not answer: publishing and
    flushing then raise :class:`DependencyUnavailable` and the buffer is dropped, as the port
    says. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer: list[TransformJob] = []
        self._delivered: list[TransformJob] = []
        self.available = True

    @property
    def delivered(self) -> list[TransformJob]:
        """Every job stored by a flush, in the order published (duplicates included)."""
        with self._lock:
            return list(self._delivered)

    def publish(self, job: TransformJob) -> None:
        with self._lock:
            self._check_available()
            self._buffer.append(job)

    def flush(self) -> None:
        with self._lock:
            self._check_available()
            self._delivered.extend(self._buffer)
            self._buffer.clear()

    def _check_available(self) -> None:
        if not self.available:
            self._buffer.clear()
            raise DependencyUnavailable("the message broker does not answer", "broker")
