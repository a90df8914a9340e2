""":class:`~imgproc_core.ports.JobMetrics` without a metrics library: one that records every
call, for tests and for services that read the counts themselves, and one that drops them."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

__all__ = ["InMemoryJobMetrics", "JobEnded", "NullJobMetrics"]


@dataclass(frozen=True, slots=True)
class JobEnded:
    """One :meth:`~imgproc_core.ports.JobMetrics.job_ended` call, as it was made."""

    outcome: str
    output_format: str | None
    seconds: float


class InMemoryJobMetrics:
    """Keeps every event in lists and counters. Thread-safe: job threads report at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = 0
        self._ended: list[JobEnded] = []
        self._dead_letters: Counter[str] = Counter()

    def job_started(self) -> None:
        with self._lock:
            self._started += 1

    def job_ended(self, outcome: str, output_format: str | None, seconds: float) -> None:
        with self._lock:
            self._ended.append(JobEnded(outcome, output_format, seconds))

    def job_dead_lettered(self, code: str) -> None:
        with self._lock:
            self._dead_letters[code] += 1

    @property
    def started(self) -> int:
        with self._lock:
            return self._started

    @property
    def ended(self) -> list[JobEnded]:
        """Every attempt that ended, in the order reported."""
        with self._lock:
            return list(self._ended)

    @property
    def in_flight(self) -> int:
        """Attempts started and not ended yet."""
        with self._lock:
            return self._started - len(self._ended)

    def outcomes(self) -> Counter[str]:
        """How many attempts ended with each outcome."""
        with self._lock:
            return Counter(ended.outcome for ended in self._ended)

    def dead_letters(self) -> Counter[str]:
        """How many jobs or messages were parked, by dead-letter code."""
        with self._lock:
            return Counter(self._dead_letters)


class NullJobMetrics:
    """Counts nothing: for a worker whose metrics nobody reads."""

    def job_started(self) -> None:
        pass

    def job_ended(self, outcome: str, output_format: str | None, seconds: float) -> None:
        pass

    def job_dead_lettered(self, code: str) -> None:
        pass
