"""Counting what the workers do with jobs, for an operator's dashboards and alerts."""

from __future__ import annotations

from typing import Protocol


class JobMetrics(Protocol):
    """Receives one call per event of a job's life on a worker, from whichever kind of worker
    runs it (the embedded threads or ``imgproc worker``). Calls come from job threads, so an
    implementation is thread-safe, and cheap: it sits on every job's path.
    """

    def job_started(self) -> None:
        """A worker began an attempt at a job (it is in flight until :meth:`job_ended`)."""
        ...

    def job_ended(self, outcome: str, output_format: str | None, seconds: float) -> None:
        """The attempt begun by the matching :meth:`job_started` ended.

        ``outcome`` is a :class:`~imgproc_core.use_cases.JobOutcomeStatus` value (``ready``,
        ``already_ready``, ``failed``, ``gone``) or, for an attempt that raised, ``retried``
        (a failure that will be tried again), ``unavailable`` (a dependency was down; the
        job waits, its attempts untouched) or ``gave_up`` (its last attempt).
        ``output_format`` is the format of the derived image (``jpeg``, ``webp``...) when
        known; ``seconds`` is the attempt's wall time.
        """
        ...

    def job_dead_lettered(self, code: str) -> None:
        """A job or message was parked for an operator, with the dead letter's ``code``."""
        ...


class WebhookMetrics(Protocol):
    """Hears of every webhook delivery's outcome, from the senders' threads: thread-safe."""

    def delivery_ended(self, outcome: str) -> None:
        """One attempt at a delivery ended (``delivered``, ``retried``, ``failed``), or it was
        dropped without one (``skipped``: its endpoint is disabled; ``gone``: deleted)."""
        ...
