"""The job runner's own rules, beyond the policy's table: holding a job, parking it with or
without a dead letter, giving up through an outage, and counting attempts from the job's."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imgproc_core.adapters.memory import (
    InMemoryDeadLetterPublisher,
    InMemoryJobMetrics,
    ManualClock,
)
from imgproc_core.domain.errors import CorruptImage, DependencyUnavailable, ProcessingTimeout
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.ports import UnitOfWorkFactory
from imgproc_core.ports.messages import DeadLetterCode, Delivery, encode_job, job_key
from imgproc_core.use_cases import (
    GiveUpJob,
    GiveUpJobCommand,
    JobOutcome,
    JobPolicy,
    JobRunEnd,
    ProcessTransformJob,
    RequestTransform,
    RequestTransformCommand,
    RunJob,
    RunJobCommand,
)
from tests.support.jobs import ScriptedProcess

Upload = Callable[..., Image]
POLICY = JobPolicy(max_attempts=3, backoff_seconds=1.0)


@pytest.fixture
def job(request_transform: RequestTransform, upload: Upload, alice: str) -> TransformJob:
    source = upload(alice)
    image = request_transform(
        RequestTransformCommand(alice, source.id, Transformation(resize=Resize(width=100)))
    )
    return TransformJob(image_id=image.id, source_id=source.id, user_id=alice)


def runner(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    process: Callable[[TransformJob], JobOutcome],
    *,
    dead_letters: InMemoryDeadLetterPublisher | None = None,
    metrics: InMemoryJobMetrics | None = None,
    give_up: Callable[[GiveUpJobCommand], Image | None] | None = None,
    policy: JobPolicy = POLICY,
) -> RunJob:
    return RunJob(
        process,
        give_up or GiveUpJob(uow_factory, clock),
        clock,
        policy,
        dead_letters,
        metrics,
        sleep=clock.advance,
    )


def status(uow_factory: UnitOfWorkFactory, image_id: str) -> JobStatus:
    with uow_factory() as uow:
        image = uow.images.get(image_id)
    assert image is not None
    return image.status


def delivery(job: TransformJob) -> Delivery:
    return Delivery(topic="jobs", partition=0, offset=9, key=job_key(job), value=encode_job(job))


def test_a_hold_that_meets_an_outage_waits_like_any_attempt(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    process: ProcessTransformJob,
    job: TransformJob,
) -> None:
    holds = iter([DependencyUnavailable("database is down", "database"), None, None])

    def hold() -> bool:
        failure = next(holds)
        if failure is not None:
            raise failure
        return True

    scripted = ScriptedProcess(process, DependencyUnavailable("storage is down", "storage"))
    start = clock.now()

    run = runner(uow_factory, clock, scripted)(RunJobCommand(job, "w", hold=hold))

    assert run.end is JobRunEnd.DONE
    assert run.failures == 0
    # The storage's outage, then the database's: the second in a row waits twice as long.
    assert (clock.now() - start).total_seconds() == 1 + 2
    assert status(uow_factory, job.image_id) is JobStatus.READY


def test_a_permanent_error_gives_up_at_once_with_a_failed_letter(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    process: ProcessTransformJob,
    job: TransformJob,
) -> None:
    letters = InMemoryDeadLetterPublisher()
    metrics = InMemoryJobMetrics()
    scripted = ScriptedProcess(process, CorruptImage("truncated"))

    run = runner(uow_factory, clock, scripted, dead_letters=letters, metrics=metrics)(
        RunJobCommand(job, "w", delivery=delivery(job))
    )

    assert (run.end, run.failures, scripted.calls) == (JobRunEnd.GAVE_UP, 1, 1)
    assert status(uow_factory, job.image_id) is JobStatus.FAILED
    (letter,) = letters.letters
    assert letter.code == DeadLetterCode.FAILED
    assert letter.reason == "gave up after 1 attempts: corrupt_image: truncated"
    assert metrics.outcomes == ["gave_up"]
    assert metrics.dead_lettered == [DeadLetterCode.FAILED]


def test_failures_are_counted_from_the_jobs_own_attempts(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    process: ProcessTransformJob,
    job: TransformJob,
) -> None:
    scripted = ScriptedProcess(process, ProcessingTimeout("slow"))
    retried = TransformJob(
        image_id=job.image_id, source_id=job.source_id, user_id=job.user_id, attempts=2
    )

    run = runner(uow_factory, clock, scripted)(RunJobCommand(retried, "w"))

    assert (run.end, run.failures) == (JobRunEnd.GAVE_UP, 3)


def test_giving_up_waits_out_a_database_outage(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    process: ProcessTransformJob,
    job: TransformJob,
) -> None:
    real = GiveUpJob(uow_factory, clock)
    outages = [DependencyUnavailable("database is down", "database")] * 2

    def give_up(command: GiveUpJobCommand) -> Image | None:
        if outages:
            raise outages.pop()
        return real(command)

    scripted = ScriptedProcess(process, *(ProcessingTimeout("slow") for _ in range(3)))

    run = runner(uow_factory, clock, scripted, give_up=give_up)(RunJobCommand(job, "w"))

    assert run.end is JobRunEnd.GAVE_UP
    assert status(uow_factory, job.image_id) is JobStatus.FAILED


def test_a_job_rendered_meanwhile_is_not_parked(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    process: ProcessTransformJob,
    job: TransformJob,
) -> None:
    letters = InMemoryDeadLetterPublisher()
    metrics = InMemoryJobMetrics()

    def rendered_by_another_run() -> None:
        if status(uow_factory, job.image_id) is not JobStatus.READY:
            process(job)

    scripted = ScriptedProcess(
        process, ProcessingTimeout("slow"), before_each=rendered_by_another_run
    )
    run = runner(
        uow_factory,
        clock,
        scripted,
        dead_letters=letters,
        metrics=metrics,
        policy=JobPolicy(max_attempts=1),
    )

    assert run(RunJobCommand(job, "w", delivery=delivery(job))).end is JobRunEnd.DONE
    assert letters.letters == []
    assert metrics.dead_lettered == []


def test_a_job_from_a_message_needs_somewhere_to_park(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    process: ProcessTransformJob,
    job: TransformJob,
) -> None:
    scripted = ScriptedProcess(process, CorruptImage("truncated"))

    with pytest.raises(RuntimeError, match="dead-letter publisher"):
        runner(uow_factory, clock, scripted)(RunJobCommand(job, "w", delivery=delivery(job)))
