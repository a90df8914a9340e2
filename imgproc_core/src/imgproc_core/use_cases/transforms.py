"""Asking for a derived image, and rendering it on a worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from imgproc_core.domain.errors import (
    BlobNotFound,
    Conflict,
    ImageRejected,
    InvalidTransformation,
)
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.presets import PresetReference
from imgproc_core.domain.transformations import Transformation
from imgproc_core.domain.webhooks import WebhookEventType
from imgproc_core.ports import (
    BlobStorage,
    Clock,
    EncodedImage,
    ImageCodec,
    ImageRepository,
    UnitOfWorkFactory,
)
from imgproc_core.use_cases.derivatives import derived_filename, queue_derivative
from imgproc_core.use_cases.images import owned_image
from imgproc_core.use_cases.pipeline import render
from imgproc_core.use_cases.presets import resolve_transformation
from imgproc_core.use_cases.webhooks import WebhookEvents

__all__ = [
    "JobOutcome",
    "JobOutcomeStatus",
    "ProcessTransformJob",
    "RequestTransform",
    "RequestTransformCommand",
    "derived_filename",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestTransformCommand:
    user_id: str
    image_id: str
    transformation: Transformation | PresetReference


class JobOutcomeStatus(StrEnum):
    """How a job ended; every one of them means the job is done with (acknowledged)."""

    #: Rendered by this run.
    READY = "ready"
    #: Found already rendered (a job delivered twice); nothing was done.
    ALREADY_READY = "already_ready"
    #: Failed for good, with the reason on the image.
    FAILED = "failed"
    #: The image was deleted before or while the job ran.
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class JobOutcome:
    status: JobOutcomeStatus
    #: The image as the job left it; None when it is gone.
    image: Image | None


class RequestTransform:
    """Record a derived image of one of the caller's originals and queue the job that renders it.

    Only originals are transformed: a derivative is itself a rendering of an original, and its
    derivatives would live outside the original's folder and outlive its deletion. Asking to
    transform a derivative is refused with :class:`InvalidTransformation`.

    ``{"preset": NAME}`` is resolved first, the caller's preset before the service's (only the
    service's with ``presets_only``, which refuses any other transformation). The derived
    image's id is a hash of the source id and the resolved transformation, which makes the
    request idempotent: asking again, or through a preset that says the same, returns the same
    entry, unchanged, and queues nothing. The image row and its job are written in one
    transaction, so neither exists without the other.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        limits: Limits,
        presets_only: bool = False,
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._limits = limits
        self._presets_only = presets_only

    def __call__(self, command: RequestTransformCommand) -> Image:
        return self._request(command, vetted=False)

    def resolved(self, command: RequestTransformCommand) -> Image:
        """The same, for a transformation the service took before (a delivery link's, pinned
        when the link was made): no preset rule applies again."""
        return self._request(command, vetted=True)

    def _request(self, command: RequestTransformCommand, *, vetted: bool) -> Image:
        image_id: str | None = None
        try:
            with self._uow_factory() as uow:
                source = owned_image(uow.images, command.user_id, command.image_id)
                transformation = command.transformation
                if not vetted or isinstance(transformation, PresetReference):
                    transformation = resolve_transformation(
                        uow.presets,
                        command.user_id,
                        transformation,
                        presets_only=self._presets_only,
                    )
                image, created = queue_derivative(
                    uow, source, transformation, limits=self._limits, now=self._clock.now()
                )
                image_id = image.id
                if created:
                    uow.commit()
                return image
        except Conflict:
            if image_id is None:
                raise
            # A concurrent identical request committed first; its entry is the answer.
            with self._uow_factory() as uow:
                existing = uow.images.get(image_id)
            if existing is None:
                raise
            return existing


@dataclass(frozen=True, slots=True)
class _Work:
    """What a started job needs once the transaction that started it is closed."""

    image: Image
    transformation: Transformation
    source_key: str
    watermark_key: str | None


class _MissingDataError(Exception):
    """Bytes a job needs are gone for good; ``reason`` goes on the image."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProcessTransformJob:
    """Render the derived image a job names and record the result.

    Safe to run more than once for one job: a READY image is left alone, the output is written at
    the derivative's deterministic key (the same bytes land at the same path), and an image
    found PROCESSING (its worker died or gave up) is taken over and rendered again.

    Errors that retrying cannot cure (a corrupt or unsupported source, a transformation the
    source cannot take, a source or watermark whose bytes are gone) mark the image FAILED with a
    reason and return normally. Anything else (a dependency down, an unexpected error) puts the
    image back to PENDING and re-raises, so the caller retries the job with backoff.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        storage: BlobStorage,
        codec: ImageCodec,
        clock: Clock,
        limits: Limits,
        events: WebhookEvents | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._storage = storage
        self._codec = codec
        self._clock = clock
        self._limits = limits
        #: ``image.ready`` and ``image.failed``, recorded with the change.
        self._events = events

    def __call__(self, job: TransformJob) -> JobOutcome:
        started = self._start(job)
        if isinstance(started, JobOutcome):
            return started
        try:
            encoded = self._render(started)
            self._storage.put(started.image.storage_key, encoded.data, encoded.mimetype)
        except _MissingDataError as exc:
            return self._fail(job, exc.reason)
        except (ImageRejected, InvalidTransformation) as exc:
            return self._fail(job, f"{exc.code}: {exc.message}")
        except Exception:
            self._give_back(job)
            raise
        return self._finish(job, started, encoded)

    def _start(self, job: TransformJob) -> JobOutcome | _Work:
        now = self._clock.now()
        with self._uow_factory() as uow:
            image = uow.images.get(job.image_id)
            if image is None:
                return JobOutcome(JobOutcomeStatus.GONE, None)
            if image.status is JobStatus.READY:
                return JobOutcome(JobOutcomeStatus.ALREADY_READY, image)
            if image.status is JobStatus.FAILED:
                return JobOutcome(JobOutcomeStatus.FAILED, image)
            if image.source_id is None or image.transformation is None:
                raise InvalidTransformation(f"image {image.id} is not a derived image")
            if image.status is JobStatus.PROCESSING:
                # The run that started it is gone (its lease ran out); this one takes over,
                # through PENDING, so the state machine and the attempt count stay honest.
                image.requeue(now)
            image.start_processing(now)
            work, reason = None, None
            source = uow.images.get(image.source_id)
            if source is None:
                reason = "the source image was deleted"
            else:
                watermark_key, reason = self._watermark_key(uow.images, image)
                work = _Work(image, image.transformation, source.storage_key, watermark_key)
            if reason is not None:
                image.fail(reason, now)
            uow.images.update(image)
            uow.commit()
        if work is None or reason is not None:
            return JobOutcome(JobOutcomeStatus.FAILED, image)
        return work

    @staticmethod
    def _watermark_key(images: ImageRepository, image: Image) -> tuple[str | None, str | None]:
        watermark = image.transformation.watermark if image.transformation else None
        if watermark is None or watermark.image_id is None:
            return None, None
        mark = images.get(watermark.image_id)
        if mark is None or mark.user_id != image.user_id:
            return None, f"the watermark image {watermark.image_id} was deleted"
        return mark.storage_key, None

    def _render(self, work: _Work) -> EncodedImage:
        try:
            data = self._storage.get(work.source_key)
        except BlobNotFound:
            raise _MissingDataError("the source image's data is missing") from None
        watermark = None
        if work.watermark_key is not None:
            try:
                watermark = self._storage.get(work.watermark_key)
            except BlobNotFound:
                raise _MissingDataError("the watermark image's data is missing") from None
        return render(self._codec, data, work.transformation, self._limits, watermark=watermark)

    def _finish(self, job: TransformJob, work: _Work, encoded: EncodedImage) -> JobOutcome:
        now = self._clock.now()
        with self._uow_factory() as uow:
            image = uow.images.get(job.image_id)
            if image is not None and image.status is JobStatus.READY:
                return JobOutcome(JobOutcomeStatus.ALREADY_READY, image)
            if image is not None:
                # The bytes are right whatever happened to the row meanwhile (another run gave
                # it back, or failed it): bring it to READY through the allowed transitions.
                _bring_to_processing(image, now)
                image.finish(
                    size_bytes=len(encoded.data),
                    width=encoded.width,
                    height=encoded.height,
                    frames=encoded.frames,
                    now=now,
                )
                uow.images.update(image)
                if self._events is not None:
                    self._events.record(uow, WebhookEventType.IMAGE_READY, image)
                uow.commit()
                return JobOutcome(JobOutcomeStatus.READY, image)
        # Deleted while it was rendered: remove the bytes just written, or nothing would.
        try:
            self._storage.delete(work.image.storage_key)
        except Exception:
            logger.exception("could not remove %s of a deleted image", work.image.storage_key)
        return JobOutcome(JobOutcomeStatus.GONE, None)

    def _fail(self, job: TransformJob, reason: str) -> JobOutcome:
        logger.warning("job %s failed for good: %s", job.id, reason)
        now = self._clock.now()
        with self._uow_factory() as uow:
            image = uow.images.get(job.image_id)
            if image is None:
                return JobOutcome(JobOutcomeStatus.GONE, None)
            if image.status is JobStatus.READY:
                return JobOutcome(JobOutcomeStatus.ALREADY_READY, image)
            if image.status is not JobStatus.FAILED:
                image.fail(reason, now)
                uow.images.update(image)
                if self._events is not None:
                    self._events.record(uow, WebhookEventType.IMAGE_FAILED, image)
                uow.commit()
        return JobOutcome(JobOutcomeStatus.FAILED, image)

    def _give_back(self, job: TransformJob) -> None:
        try:
            with self._uow_factory() as uow:
                image = uow.images.get(job.image_id)
                if image is not None and image.status is JobStatus.PROCESSING:
                    image.requeue(self._clock.now())
                    uow.images.update(image)
                    uow.commit()
        except Exception:
            # The original error matters more; the image stays PROCESSING and the next run
            # takes it over.
            logger.exception("could not put image %s back to PENDING", job.image_id)


def _bring_to_processing(image: Image, now: datetime) -> None:
    if image.status is JobStatus.FAILED:
        image.requeue(now)
    if image.status is JobStatus.PENDING:
        image.start_processing(now)
