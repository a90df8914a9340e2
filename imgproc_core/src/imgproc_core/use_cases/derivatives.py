"""Recording a derived image and queuing its job, inside a caller's unit of work.

``POST /transform``, a delivery link's first use and the variants of an upload all make
derivatives the same way, so the same transformation of the same source is always one image
and one job, whoever asks first.
"""

from __future__ import annotations

from datetime import datetime

from imgproc_core.domain.errors import InvalidTransformation, WatermarkNotFound
from imgproc_core.domain.formats import ANIMATED_FORMATS, EXTENSIONS, MEDIA_TYPES
from imgproc_core.domain.images import Image, derivative_key, sanitize_filename
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation, derived_image_id
from imgproc_core.ports import ImageRepository, UnitOfWork
from imgproc_core.use_cases.pipeline import RenderPlan, plan_render


def derived_filename(source_filename: str, output_format: str) -> str:
    """The source's filename with the output format's extension."""
    stem, dot, _ = source_filename.rpartition(".")
    return sanitize_filename(
        f"{stem if dot else source_filename}.{EXTENSIONS[output_format]}", output_format
    )


def queue_derivative(
    uow: UnitOfWork,
    source: Image,
    transformation: Transformation,
    *,
    limits: Limits,
    now: datetime,
) -> tuple[Image, bool]:
    """The derivative of ``source`` for ``transformation``, and whether it is new: recorded,
    with its job queued, in ``uow`` (the caller commits).

    Everything the source's recorded size tells is checked first (the render plan: a crop
    inside the source, an output within the limits; a watermark image of the owner's own), so
    a job only fails for what the bytes alone reveal. Its id is a hash of the source id and
    the resolved transformation: asking again finds the same image and queues nothing.
    """
    if transformation.is_identity:
        raise InvalidTransformation("ask for at least one transformation")
    if source.is_transformed:
        raise InvalidTransformation(
            f"image {source.id} is a derived image; transform its original "
            f"{source.source_id} instead"
        )
    plan = plan_render(
        transformation,
        source_format=source.format,
        width=source.width,
        height=source.height,
        limits=limits,
    )
    _check_watermark(uow.images, source.user_id, plan.transformation)
    image_id = derived_image_id(source.id, plan.transformation)
    existing = uow.images.get(image_id)
    if existing is not None:
        return existing, False
    image = _derived(source, image_id, plan, now)
    uow.images.add(image)
    uow.jobs.enqueue(TransformJob(image_id=image.id, source_id=source.id, user_id=source.user_id))
    return image, True


def _check_watermark(images: ImageRepository, user_id: str, transformation: Transformation) -> None:
    watermark = transformation.watermark
    if watermark is None or watermark.image_id is None:
        return
    mark = images.get(watermark.image_id)
    if mark is None or mark.user_id != user_id:
        raise WatermarkNotFound(
            f"no image {watermark.image_id!r} to use as a watermark", "watermark.image_id"
        )
    if mark.status is not JobStatus.READY:
        raise InvalidTransformation(
            f"the watermark image {mark.id} is {mark.status.value}, not READY",
            "watermark.image_id",
        )


def _derived(source: Image, image_id: str, plan: RenderPlan, now: datetime) -> Image:
    fmt = plan.transformation.output_format
    return Image(
        id=image_id,
        user_id=source.user_id,
        filename=derived_filename(source.filename, fmt),
        storage_key=derivative_key(source.user_id, source.id, image_id, fmt),
        mimetype=MEDIA_TYPES[fmt],
        format=fmt,
        size_bytes=0,
        width=plan.width,
        height=plan.height,
        frames=source.frames if fmt in ANIMATED_FORMATS else 1,
        status=JobStatus.PENDING,
        created_at=now,
        updated_at=now,
        source_id=source.id,
        transformation=plan.transformation,
    )
