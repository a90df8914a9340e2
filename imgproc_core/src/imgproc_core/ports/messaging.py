"""Publishing to a message broker: how the production profile's relay empties the outbox, and
where its workers park the messages they cannot process."""

from __future__ import annotations

from typing import Protocol

from imgproc_core.domain.jobs import TransformJob
from imgproc_core.ports.messages import DeadLetter


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


class DeadLetterPublisher(Protocol):
    """Parks messages that will not be processed again unless an operator says so.

    A letter is stored under :func:`~imgproc_core.ports.messages.dead_letter_key`, and letters
    published one after another are read back in that order. Thread-safe: the worker's threads
    share one.
    """

    def publish(self, letter: DeadLetter) -> None:
        """Store ``letter``; returns once it is stored.

        :class:`~imgproc_core.domain.errors.DependencyUnavailable` when the broker cannot be
        reached or does not store it in time; the letter then counts as not stored.
        """
        ...
