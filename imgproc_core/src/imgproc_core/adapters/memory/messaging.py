"""A broker in a list: :class:`~imgproc_core.ports.JobPublisher` and
:class:`~imgproc_core.ports.DeadLetterPublisher` for tests and embedded use."""

from __future__ import annotations

import threading

from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.domain.jobs import TransformJob
from imgproc_core.ports.messages import DeadLetter, dead_letter_key


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


class InMemoryDeadLetterPublisher:
    """The dead-letter topic as a list of ``(key, letter)`` pairs, in the order published.

    Set :attr:`available` to False to play a broker that does not answer (every publish raises
    :class:`DependencyUnavailable`), or :attr:`failures` to N for one that fails the next N
    publishes and then answers again. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stored: list[tuple[bytes | None, DeadLetter]] = []
        self.available = True
        self.failures = 0

    @property
    def letters(self) -> list[DeadLetter]:
        """Every letter stored, in the order published."""
        with self._lock:
            return [letter for _, letter in self._stored]

    @property
    def stored(self) -> list[tuple[bytes | None, DeadLetter]]:
        """Every letter stored with the key it was stored under."""
        with self._lock:
            return list(self._stored)

    def publish(self, letter: DeadLetter) -> None:
        with self._lock:
            if not self.available or self.failures > 0:
                self.failures = max(0, self.failures - 1)
                raise DependencyUnavailable("the message broker does not answer", "broker")
            self._stored.append((dead_letter_key(letter), letter))
