"""Parking a job that failed on every attempt, as both kinds of worker do."""

from __future__ import annotations

from collections.abc import Callable

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.ports import UnitOfWorkFactory
from imgproc_core.use_cases import (
    GiveUpJob,
    GiveUpJobCommand,
    ProcessTransformJob,
    RequestTransform,
    RequestTransformCommand,
)

Upload = Callable[..., Image]


def _requested(request_transform: RequestTransform, upload: Upload, user: str) -> TransformJob:
    source = upload(user)
    image = request_transform(
        RequestTransformCommand(user, source.id, Transformation(resize=Resize(width=50)))
    )
    return TransformJob(image_id=image.id, source_id=source.id, user_id=user)


def _image(uow_factory: UnitOfWorkFactory, image_id: str) -> Image | None:
    with uow_factory() as uow:
        return uow.images.get(image_id)


def test_the_image_fails_with_the_reason_and_the_job_leaves_the_queue(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    request_transform: RequestTransform,
    upload: Upload,
    alice: str,
) -> None:
    job = _requested(request_transform, upload, alice)

    image = GiveUpJob(uow_factory, clock)(
        GiveUpJobCommand(job=job, attempts=5, reason="processing_timeout: too slow")
    )

    assert image is not None
    assert image == _image(uow_factory, job.image_id)
    assert image.status is JobStatus.FAILED
    assert image.failure_reason == "gave up after 5 attempts: processing_timeout: too slow"
    with uow_factory() as uow:
        assert uow.jobs.pending_count() == 0


def test_an_image_rendered_meanwhile_stays_ready(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    request_transform: RequestTransform,
    upload: Upload,
    alice: str,
    process: ProcessTransformJob,
) -> None:
    job = _requested(request_transform, upload, alice)
    process(job)

    image = GiveUpJob(uow_factory, clock)(GiveUpJobCommand(job=job, attempts=5, reason="late"))

    assert image is not None
    assert image.status is JobStatus.READY
    assert image.failure_reason is None


def test_a_deleted_image_is_no_error(
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
) -> None:
    job = TransformJob(image_id="0" * 32, source_id="1" * 32, user_id="2" * 32)

    assert GiveUpJob(uow_factory, clock)(GiveUpJobCommand(job, 3, "gone")) is None
