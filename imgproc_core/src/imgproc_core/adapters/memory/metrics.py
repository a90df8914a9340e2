"""Job metrics in lists: :class:`~imgproc_core.ports.JobMetrics` that remembers every call."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EndedAttempt:
    """One :meth:`~imgproc_core.ports.JobMetrics.job_ended` call."""

    outcome: str
    output_format: str | None
    seconds: float


class InMemoryJobMetrics:
    """Records what a worker reported, for tests to read back. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = 0
        self._ended: list[EndedAttempt] = []
        self._dead_lettered: list[str] = []

    @property
    def started(self) -> int:
        """How many attempts began."""
        with self._lock:
            return self._started

    @property
    def in_flight(self) -> int:
        """Attempts begun and not ended yet."""
        with self._lock:
            return self._started - len(self._ended)

    @property
    def ended(self) -> list[EndedAttempt]:
        """Every ended attempt, in order."""
        with self._lock:
            return list(self._ended)

    @property
    def outcomes(self) -> list[str]:
        """The outcome of every ended attempt, in order."""
        with self._lock:
            return [attempt.outcome for attempt in self._ended]

    @property
    def dead_lettered(self) -> list[str]:
        """The code of every job or message parked, in order."""
        with self._lock:
            return list(self._dead_lettered)

    def job_started(self) -> None:
        with self._lock:
            self._started += 1

    def job_ended(self, outcome: str, output_format: str | None, seconds: float) -> None:
        with self._lock:
            self._ended.append(EndedAttempt(outcome, output_format, seconds))

    def job_dead_lettered(self, code: str) -> None:
        with self._lock:
            self._dead_lettered.append(code)


class InMemoryWebhookMetrics:
    """Records the webhook deliveries' outcomes, for tests to read back. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: list[str] = []

    def delivery_ended(self, outcome: str) -> None:
        with self._lock:
            self._outcomes.append(outcome)

    @property
    def outcomes(self) -> list[str]:
        with self._lock:
            return list(self._outcomes)
