"""Publishing jobs to a message broker: how the production profile's relay empties the outbox."""

from __future__ import annotations

from typing import Protocol

from imgproc_core.domain.jobs import TransformJob


class JobPublisher(Protocol):
    """Hands jobs to a broker. Publishing may buffer; only :meth:`flush` says they are stored.

    A job may reach the broker more than once (a relay that stops after publishing and before
    acknowledging its outbox rows publishes them again), so consumers are idempotent.
    """

    def publish(self, job: TransformJob) -> None:
        """Queue ``job`` for the broker; jobs of one source image keep their order.

        :class:`~imgproc_core.domain.errors.DependencyUnavailable` when the broker cannot be
        reached; the jobs published since the last flush then count as not delivered.
        """
        ...

    def flush(self) -> None:
        """Wait until the broker has stored every job published since the last flush.

        :class:`~imgproc_core.domain.errors.DependencyUnavailable` when any of them was not
        stored in time; none of them counts as delivered then, and all are forgotten.
        """
        ...
