"""The job policy, as a table: what each kind of failure leads to, and the one backoff formula
that every wait of the service is taken from."""

from __future__ import annotations

import pytest

from imgproc_core.domain.errors import (
    CodecCrashed,
    CorruptImage,
    DecompressionBomb,
    DependencyUnavailable,
    InvalidTransformation,
    ProcessingTimeout,
)
from imgproc_core.use_cases import (
    MAX_BACKOFF_SECONDS,
    OUTAGE_BACKOFF_MAX_SECONDS,
    Backoff,
    FailureKind,
    JobPolicy,
    Step,
    describe_error,
)

POLICY = JobPolicy(max_attempts=3, backoff_seconds=1.0)


@pytest.mark.parametrize(
    ("error", "failures_before", "step", "kind", "failures_after", "delay"),
    [
        # A dependency down: wait, whatever the count, and count nothing.
        (DependencyUnavailable("storage is down", "storage"), 0, Step.WAIT, "outage", 0, 1.0),
        (DependencyUnavailable("database is down", "database"), 2, Step.WAIT, "outage", 2, 1.0),
        # Retrying cannot cure it: give up at the first attempt.
        (CorruptImage("truncated"), 0, Step.GIVE_UP, "permanent", 1, 0.0),
        (DecompressionBomb("too many pixels"), 0, Step.GIVE_UP, "permanent", 1, 0.0),
        (InvalidTransformation("not a derived image"), 0, Step.GIVE_UP, "permanent", 1, 0.0),
        # Might pass next time: retry with backoff while attempts are left...
        (ProcessingTimeout("slow"), 0, Step.RETRY, "transient", 1, 1.0),
        (CodecCrashed("killed"), 1, Step.RETRY, "transient", 2, 2.0),
        (RuntimeError("a bug"), 0, Step.RETRY, "transient", 1, 1.0),
        # ...and give up on the last one.
        (ProcessingTimeout("slow"), 2, Step.GIVE_UP, "transient", 3, 0.0),
        (RuntimeError("a bug"), 2, Step.GIVE_UP, "transient", 3, 0.0),
    ],
)
def test_what_follows_a_failed_attempt(
    error: Exception,
    failures_before: int,
    step: Step,
    kind: str,
    failures_after: int,
    delay: float,
) -> None:
    decision = POLICY.decide(error, failures_before, outages=0)

    assert (decision.step, decision.kind, decision.failures, decision.delay) == (
        step,
        FailureKind(kind),
        failures_after,
        delay,
    )
    assert decision.reason == describe_error(error)


def test_outages_in_a_row_wait_longer_up_to_their_cap() -> None:
    outage = DependencyUnavailable("storage is down", "storage")

    delays = [POLICY.decide(outage, 0, outages=n).delay for n in range(8)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert POLICY.outage_delay(1000) == OUTAGE_BACKOFF_MAX_SECONDS


def test_delays_grow_exponentially_up_to_their_caps() -> None:
    policy = JobPolicy(max_attempts=5, backoff_seconds=1.0, outage_backoff_max_seconds=30.0)

    assert [policy.retry_delay(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]
    assert policy.retry_delay(20) == MAX_BACKOFF_SECONDS
    assert [policy.outage_delay(n) for n in (1, 3, 5, 6, 50)] == [1.0, 4.0, 16.0, 30.0, 30.0]


def test_one_formula_for_every_backoff() -> None:
    backoff = Backoff(base_seconds=0.5, max_seconds=30.0)

    assert [backoff.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    # No overflow however long the outage.
    assert backoff.delay(10**9) == 30.0
    with pytest.raises(ValueError, match="at least one failure"):
        backoff.delay(0)
    with pytest.raises(ValueError, match="positive"):
        Backoff(base_seconds=0, max_seconds=1)


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        JobPolicy(max_attempts=0)


def test_one_attempt_gives_up_at_the_first_transient_failure() -> None:
    decision = JobPolicy(max_attempts=1).decide(ProcessingTimeout("slow"), 0, 0)

    assert decision.step is Step.GIVE_UP


def test_a_failure_reason_names_a_domain_error_by_its_code() -> None:
    assert describe_error(ProcessingTimeout("too slow")) == "processing_timeout: too slow"
    assert describe_error(KeyError("x")) == "KeyError: 'x'"
