"""How work that failed is tried again: the one backoff formula, and the job policy on it.

Every worker of the service (the embedded threads, ``imgproc worker``) and every loop that
waits for a dependency (the relay) takes its delays from :class:`Backoff` (kept in the domain,
:mod:`imgproc_core.domain.backoff`, and exported here as before), so that there is one formula to
read and to test. :class:`JobPolicy` says what follows a failed attempt at a job:

==========================================  =========  ====================================
what the attempt raised                     kind       what follows
==========================================  =========  ====================================
``DependencyUnavailable`` (database,        outage     wait ``outage_delay(n)`` (capped),
storage, broker, codec pool down)                      try again; no attempt is used up
``ImageRejected``, ``InvalidInput``         permanent  give up now: retrying cannot cure it
anything else (time limit, crashed codec,   transient  retry after ``retry_delay(n)``; on the
unexpected error)                                      ``max_attempts``-th, give up
==========================================  =========  ====================================

A job whose source turns out corrupt does not raise: ``ProcessTransformJob`` marks its image
FAILED and returns, and the runner parks it at once, after one attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from imgproc_core.domain.backoff import Backoff
from imgproc_core.domain.errors import (
    DependencyUnavailable,
    DomainError,
    ImageRejected,
    InvalidInput,
)

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "OUTAGE_BACKOFF_MAX_SECONDS",
    "Backoff",
    "Decision",
    "FailureKind",
    "JobPolicy",
    "Step",
    "classify",
    "describe_error",
]

#: The longest wait between two attempts of a job that keeps failing.
MAX_BACKOFF_SECONDS: Final = 300.0
#: The longest wait between two tries while a dependency is down: short, so that work resumes
#: soon after the dependency is back.
OUTAGE_BACKOFF_MAX_SECONDS: Final = 30.0


class FailureKind(StrEnum):
    """What a failed attempt says about the job."""

    #: A dependency is down: no fault of the job.
    OUTAGE = "outage"
    #: The job can never succeed as it is.
    PERMANENT = "permanent"
    #: It might succeed next time.
    TRANSIENT = "transient"


def classify(exc: BaseException) -> FailureKind:
    if isinstance(exc, DependencyUnavailable):
        return FailureKind.OUTAGE
    if isinstance(exc, ImageRejected | InvalidInput):
        return FailureKind.PERMANENT
    return FailureKind.TRANSIENT


class Step(StrEnum):
    """What the policy says comes after a failed attempt."""

    #: Wait ``delay`` and try again, the attempt not counted (an outage).
    WAIT = "wait"
    #: Wait ``delay`` and try again, the attempt counted.
    RETRY = "retry"
    #: Stop: the job is parked, its image FAILED.
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    kind: FailureKind
    #: Seconds to wait before the next attempt (0 when giving up).
    delay: float
    #: Counted failures of the job, this one included when it counts.
    failures: int
    #: The error, as :func:`describe_error` puts it.
    reason: str


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """Retry, backoff, outage and give-up rules for transform jobs (the table in this module's
    docstring), the same in every worker. A job is tried ``max_attempts`` times in all, counted
    failures ``backoff_seconds * 2**n`` apart (at most ``max_backoff_seconds``); outages are
    waited out ``backoff_seconds * 2**n`` apart (at most ``outage_backoff_max_seconds``) for as
    long as they last, without counting."""

    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS
    outage_backoff_max_seconds: float = OUTAGE_BACKOFF_MAX_SECONDS

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    @property
    def retries(self) -> Backoff:
        return Backoff(self.backoff_seconds, self.max_backoff_seconds)

    @property
    def outages(self) -> Backoff:
        return Backoff(self.backoff_seconds, self.outage_backoff_max_seconds)

    def retry_delay(self, failures: int) -> float:
        """The wait after the job's ``failures``-th counted failure."""
        return self.retries.delay(failures)

    def outage_delay(self, outages: int) -> float:
        """The wait after the ``outages``-th time in a row that a dependency did not answer."""
        return self.outages.delay(outages)

    def decide(self, exc: BaseException, failures: int, outages: int) -> Decision:
        """What follows an attempt that raised ``exc``, when ``failures`` counted failures and
        ``outages`` outages in a row came before it."""
        kind = classify(exc)
        reason = describe_error(exc)
        if kind is FailureKind.OUTAGE:
            return Decision(Step.WAIT, kind, self.outage_delay(outages + 1), failures, reason)
        failures += 1
        if kind is FailureKind.PERMANENT or failures >= self.max_attempts:
            return Decision(Step.GIVE_UP, kind, 0.0, failures, reason)
        return Decision(Step.RETRY, kind, self.retry_delay(failures), failures, reason)


def describe_error(exc: BaseException) -> str:
    """An error as a failure reason: a domain error's code and message, else its type."""
    if isinstance(exc, DomainError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
