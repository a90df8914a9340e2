"""The derived image's job state machine, driven by random sequences of transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from imgproc_core.domain.errors import InvalidStateTransition
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus

#: The allowed moves, written out here rather than read from the domain, so the test states
#: the rules independently.
ALLOWED: Final[dict[JobStatus, set[JobStatus]]] = {
    JobStatus.PENDING: {JobStatus.PROCESSING, JobStatus.FAILED},
    JobStatus.PROCESSING: {JobStatus.READY, JobStatus.FAILED, JobStatus.PENDING},
    JobStatus.FAILED: {JobStatus.PENDING},
    JobStatus.READY: set(),
}

START: Final = datetime(2026, 1, 1, tzinfo=UTC)


def new_image() -> Image:
    return Image(
        id="derived",
        user_id="user",
        filename="a.png",
        storage_key="user/src/derived.png",
        mimetype="image/png",
        format="png",
        size_bytes=0,
        width=10,
        height=10,
        status=JobStatus.PENDING,
        created_at=START,
        updated_at=START,
        source_id="src",
    )


class JobLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.image = new_image()
        self.now = START
        self.status = JobStatus.PENDING
        self.starts = 0
        self.reached_ready = False
        self.history: list[JobStatus] = [JobStatus.PENDING]

    def _tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def _perform(self, move: str, reason: str, now: datetime) -> None:
        if move == "start":
            self.image.start_processing(now)
        elif move == "finish":
            self.image.finish(size_bytes=123, width=7, height=5, frames=1, now=now)
        elif move == "fail":
            self.image.fail(reason, now)
        else:
            self.image.requeue(now)

    def _attempt(self, target: JobStatus, move: str, reason: str = "") -> None:
        before = (self.image.status, self.image.attempts, self.image.updated_at)
        before_fields = (self.image.size_bytes, self.image.failure_reason)
        now = self._tick()
        if target in ALLOWED[self.status]:
            self._perform(move, reason, now)
            self.starts += move == "start"
            self.status = target
            self.history.append(target)
            assert self.image.updated_at == now
            return
        with pytest.raises(InvalidStateTransition):
            self._perform(move, reason, now)
        # A refused move changes nothing at all.
        assert (self.image.status, self.image.attempts, self.image.updated_at) == before
        assert (self.image.size_bytes, self.image.failure_reason) == before_fields

    @rule()
    def start_processing(self) -> None:
        self._attempt(JobStatus.PROCESSING, "start")

    @rule()
    def finish(self) -> None:
        self._attempt(JobStatus.READY, "finish")
        if self.status is JobStatus.READY:
            self.reached_ready = True
            assert (self.image.size_bytes, self.image.width, self.image.height) == (123, 7, 5)
            assert self.image.failure_reason is None

    @rule(reason=st.sampled_from(["corrupt_image: truncated", "gave up after 5 attempts"]))
    def fail(self, reason: str) -> None:
        was_failed = self.status is JobStatus.FAILED
        self._attempt(JobStatus.FAILED, "fail", reason)
        if self.status is JobStatus.FAILED and not was_failed:
            assert self.image.failure_reason == reason

    @rule()
    def requeue(self) -> None:
        self._attempt(JobStatus.PENDING, "requeue")

    @precondition(lambda self: self.status is JobStatus.READY)
    @rule()
    def nothing_leaves_ready(self) -> None:
        for move, target in (
            ("start", JobStatus.PROCESSING),
            ("fail", JobStatus.FAILED),
            ("requeue", JobStatus.PENDING),
            ("finish", JobStatus.READY),
        ):
            self._attempt(target, move, "late failure")
        assert self.image.status is JobStatus.READY

    @invariant()
    def status_matches_the_model(self) -> None:
        assert self.image.status is self.status

    @invariant()
    def attempts_count_the_starts(self) -> None:
        assert self.image.attempts == self.starts

    @invariant()
    def ready_is_final(self) -> None:
        if self.reached_ready:
            assert self.image.status is JobStatus.READY
            assert self.history[-1] is JobStatus.READY
            assert self.history.index(JobStatus.READY) == len(self.history) - 1


TestJobLifecycle = JobLifecycle.TestCase


@pytest.mark.parametrize("status", list(JobStatus))
def test_the_domain_table_matches_the_rules(status: JobStatus) -> None:
    for target in JobStatus:
        assert status.can_become(target) is (target in ALLOWED[status])


def test_a_job_that_keeps_failing_counts_every_start() -> None:
    image = new_image()
    now = START
    for _ in range(3):
        image.start_processing(now)
        image.requeue(now)
    image.start_processing(now)
    image.fail("gave up", now)
    assert image.attempts == 4
    assert image.status is JobStatus.FAILED
    with pytest.raises(InvalidStateTransition):
        image.finish(size_bytes=1, width=1, height=1, frames=1, now=now)


def test_a_retried_job_forgets_why_it_failed() -> None:
    image = new_image()
    image.start_processing(START)
    image.fail("the source is truncated", START)
    assert image.failure_reason == "the source is truncated"
    image.requeue(START + timedelta(seconds=1))
    assert image.status is JobStatus.PENDING
    assert image.failure_reason is None
