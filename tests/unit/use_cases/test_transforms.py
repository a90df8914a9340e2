"""Requesting derived images and rendering them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDatabase,
    InMemoryImageCodec,
    InMemoryUnitOfWork,
    ManualClock,
    fake_image_bytes,
)
from imgproc_core.domain.errors import (
    CropOutsideImage,
    DependencyUnavailable,
    ImageNotFound,
    InvalidTransformation,
    OutputTooLarge,
    WatermarkNotFound,
)
from imgproc_core.domain.images import Image, derivative_key
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import (
    Crop,
    Resize,
    Transformation,
    Watermark,
    derived_image_id,
    parse_transformation,
)
from imgproc_core.ports import BlobStorage, EncodedImage, ImageInfo, UnitOfWorkFactory
from imgproc_core.use_cases import (
    DeleteImage,
    ImageQuery,
    JobOutcomeStatus,
    ProcessTransformJob,
    RequestTransform,
    RequestTransformCommand,
)

Upload = Callable[..., Image]

HALF = Transformation(resize=Resize(width=200))


def job_for(image: Image) -> TransformJob:
    assert image.source_id is not None
    return TransformJob(image_id=image.id, source_id=image.source_id, user_id=image.user_id)


def stored_image(uow_factory: UnitOfWorkFactory, image_id: str) -> Image | None:
    with uow_factory() as uow:
        return uow.images.get(image_id)


def queued_jobs(database: InMemoryDatabase) -> list[TransformJob]:
    with database.lock:
        return [row.job for row in database.jobs.values()]


class NoCache:
    """A URL cache that keeps nothing."""

    def get(self, key: str) -> str | None:
        return None

    def set(self, key: str, url: str, ttl_seconds: float) -> None:
        pass

    def delete(self, key: str) -> None:
        pass


class RecordingCodec:
    """The in-memory codec, remembering what it was asked to transform."""

    def __init__(self, on_transform: Callable[[], None] | None = None) -> None:
        self._inner = InMemoryImageCodec()
        self.watermarks: list[bytes | None] = []
        self._on_transform = on_transform

    def probe(self, data: bytes, limits: Limits) -> ImageInfo:
        return self._inner.probe(data, limits)

    def transform(
        self,
        data: bytes,
        transformation: Transformation,
        limits: Limits,
        watermark: bytes | None = None,
    ) -> EncodedImage:
        self.watermarks.append(watermark)
        if self._on_transform is not None:
            self._on_transform()
        return self._inner.transform(data, transformation, limits, watermark)


# -- request -------------------------------------------------------------------------------------


def test_request_records_a_pending_derivative_and_queues_its_job(
    request_transform: RequestTransform,
    upload: Upload,
    uow_factory: UnitOfWorkFactory,
    database: InMemoryDatabase,
    clock: ManualClock,
    alice: str,
) -> None:
    source = upload(alice, fmt="png", width=400, height=300, filename="cat.png")
    transformation = Transformation(resize=Resize(width=200), format="webp")

    derived = request_transform(RequestTransformCommand(alice, source.id, transformation))

    resolved = transformation.resolved("png")
    assert resolved.quality == 80
    assert derived.id == derived_image_id(source.id, resolved)
    assert derived.transformation == resolved
    assert derived.status is JobStatus.PENDING
    assert derived.source_id == source.id
    assert derived.user_id == alice
    assert (derived.format, derived.mimetype) == ("webp", "image/webp")
    assert (derived.width, derived.height) == (200, 150)
    assert derived.size_bytes == 0
    assert derived.filename == "cat.webp"
    assert derived.storage_key == derivative_key(alice, source.id, derived.id, "webp")
    assert derived.created_at == clock.now()
    assert stored_image(uow_factory, derived.id) == derived
    assert queued_jobs(database) == [
        TransformJob(image_id=derived.id, source_id=source.id, user_id=alice)
    ]


def test_the_output_format_defaults_to_the_sources(
    request_transform: RequestTransform, upload: Upload, alice: str
) -> None:
    jpeg = upload(alice, fmt="jpeg", filename="a.jpg")
    tiff = upload(alice, fmt="tiff", filename="scan.tiff")
    from_jpeg = request_transform(
        RequestTransformCommand(alice, jpeg.id, Transformation(flip=True))
    )
    from_tiff = request_transform(
        RequestTransformCommand(alice, tiff.id, Transformation(flip=True))
    )
    assert from_jpeg.transformation is not None
    assert (from_jpeg.format, from_jpeg.transformation.quality) == ("jpeg", 85)
    assert (from_tiff.format, from_tiff.filename) == ("png", "scan.png")


def test_a_repeated_request_returns_the_same_entry_and_queues_one_job(
    request_transform: RequestTransform,
    upload: Upload,
    database: InMemoryDatabase,
    clock: ManualClock,
    alice: str,
) -> None:
    source = upload(alice, fmt="jpeg")
    first = request_transform(
        RequestTransformCommand(alice, source.id, parse_transformation({"rotate": 90}))
    )
    clock.advance(5)
    second = request_transform(
        RequestTransformCommand(
            alice,
            source.id,
            parse_transformation(
                {"transformations": {"rotate": -270, "format": "jpg", "quality": 85, "flip": False}}
            ),
        )
    )
    assert second == first
    assert len(queued_jobs(database)) == 1


def test_a_request_for_a_rendered_derivative_returns_it_and_queues_nothing(
    request_transform: RequestTransform,
    process: ProcessTransformJob,
    upload: Upload,
    uow_factory: UnitOfWorkFactory,
    database: InMemoryDatabase,
    alice: str,
) -> None:
    source = upload(alice)
    derived = request_transform(RequestTransformCommand(alice, source.id, HALF))
    process(job_for(derived))
    with uow_factory() as uow:
        uow.jobs.ack(derived.id)
        uow.commit()

    again = request_transform(RequestTransformCommand(alice, source.id, HALF))

    assert again.status is JobStatus.READY
    assert again == stored_image(uow_factory, derived.id)
    assert queued_jobs(database) == []


def test_a_lost_race_returns_the_winners_entry(
    database: InMemoryDatabase,
    clock: ManualClock,
    limits: Limits,
    upload: Upload,
    alice: str,
) -> None:
    source = upload(alice)
    rival = RequestTransform(lambda: InMemoryUnitOfWork(database, clock), clock, limits)

    class RivalCommitsFirst(InMemoryUnitOfWork):
        def commit(self) -> None:
            rival(RequestTransformCommand(alice, source.id, HALF))
            super().commit()

    racing = RequestTransform(lambda: RivalCommitsFirst(database, clock), clock, limits)
    result = racing(RequestTransformCommand(alice, source.id, HALF))

    assert result.id == derived_image_id(source.id, HALF.resolved(source.format))
    assert len(queued_jobs(database)) == 1
    with database.lock:
        assert len(database.images) == 2


@pytest.mark.parametrize("whose", ["other user", "unknown"])
def test_transforming_an_image_that_is_not_yours_is_not_found(
    request_transform: RequestTransform,
    upload: Upload,
    database: InMemoryDatabase,
    alice: str,
    bob: str,
    whose: str,
) -> None:
    image_id = upload(alice).id if whose == "other user" else "0" * 32
    with pytest.raises(ImageNotFound):
        request_transform(RequestTransformCommand(bob, image_id, HALF))
    assert queued_jobs(database) == []


def test_a_crop_outside_the_source_is_refused_at_request_time(
    request_transform: RequestTransform, upload: Upload, database: InMemoryDatabase, alice: str
) -> None:
    source = upload(alice, width=400, height=300)
    crop = Transformation(crop=Crop(x=300, y=0, width=101, height=100))
    with pytest.raises(CropOutsideImage) as raised:
        request_transform(RequestTransformCommand(alice, source.id, crop))
    assert raised.value.field == "crop"
    assert queued_jobs(database) == []
    with database.lock:
        assert list(database.images) == [source.id]


def test_a_crop_inside_the_source_plans_its_size(
    request_transform: RequestTransform, upload: Upload, alice: str
) -> None:
    source = upload(alice, width=400, height=300)
    crop = Transformation(crop=Crop(x=300, y=0, width=100, height=300), rotate=90)
    derived = request_transform(RequestTransformCommand(alice, source.id, crop))
    assert (derived.width, derived.height) == (300, 100)


def test_a_resize_above_the_output_limit_is_refused(
    request_transform: RequestTransform,
    upload: Upload,
    database: InMemoryDatabase,
    limits: Limits,
    alice: str,
) -> None:
    source = upload(alice, width=400, height=300)
    too_wide = Transformation(resize=Resize(width=limits.max_output_side + 1))
    with pytest.raises(OutputTooLarge) as raised:
        request_transform(RequestTransformCommand(alice, source.id, too_wide))
    assert raised.value.field == "resize"
    assert queued_jobs(database) == []


def test_a_watermark_image_must_be_the_callers(
    request_transform: RequestTransform,
    upload: Upload,
    database: InMemoryDatabase,
    alice: str,
    bob: str,
) -> None:
    source = upload(alice)
    bobs_logo = upload(bob)
    for image_id in (bobs_logo.id, "nosuchimage"):
        marked = Transformation(watermark=Watermark(image_id=image_id))
        with pytest.raises(WatermarkNotFound) as raised:
            request_transform(RequestTransformCommand(alice, source.id, marked))
        assert raised.value.field == "watermark.image_id"
    assert queued_jobs(database) == []


def test_an_own_watermark_image_is_accepted(
    request_transform: RequestTransform, upload: Upload, alice: str
) -> None:
    source = upload(alice)
    logo = upload(alice, width=50, height=20)
    marked = Transformation(watermark=Watermark(image_id=logo.id, opacity=0.3))
    derived = request_transform(RequestTransformCommand(alice, source.id, marked))
    assert derived.transformation is not None
    assert derived.transformation.watermark == Watermark(image_id=logo.id, opacity=0.3)


def test_a_watermark_image_not_rendered_yet_is_refused(
    request_transform: RequestTransform, upload: Upload, alice: str
) -> None:
    source = upload(alice)
    pending = request_transform(RequestTransformCommand(alice, source.id, HALF))
    marked = Transformation(watermark=Watermark(image_id=pending.id))
    with pytest.raises(InvalidTransformation) as raised:
        request_transform(RequestTransformCommand(alice, source.id, marked))
    assert raised.value.field == "watermark.image_id"
    assert "PENDING" in raised.value.message


def test_a_derivative_is_not_transformed_again(
    request_transform: RequestTransform, upload: Upload, alice: str
) -> None:
    source = upload(alice)
    derived = request_transform(RequestTransformCommand(alice, source.id, HALF))
    with pytest.raises(InvalidTransformation) as raised:
        request_transform(RequestTransformCommand(alice, derived.id, Transformation(flip=True)))
    assert source.id in raised.value.message
    assert raised.value.field is None


def test_an_empty_transformation_is_refused(
    request_transform: RequestTransform, upload: Upload, alice: str
) -> None:
    source = upload(alice)
    with pytest.raises(InvalidTransformation):
        request_transform(RequestTransformCommand(alice, source.id, Transformation()))


# -- process -------------------------------------------------------------------------------------


@pytest.fixture
def requested(request_transform: RequestTransform, upload: Upload, alice: str) -> Image:
    source = upload(alice, fmt="png", width=400, height=300)
    return request_transform(RequestTransformCommand(alice, source.id, HALF))


def test_processing_renders_and_records_the_derivative(
    process: ProcessTransformJob,
    requested: Image,
    storage: InMemoryBlobStorage,
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
) -> None:
    clock.advance(3)

    outcome = process(job_for(requested))

    assert outcome.status is JobOutcomeStatus.READY
    image = stored_image(uow_factory, requested.id)
    assert image is not None
    assert outcome.image == image
    assert image.status is JobStatus.READY
    assert image.attempts == 1
    assert image.updated_at == clock.now()
    data = storage.get(requested.storage_key)
    assert image.size_bytes == len(data) > 0
    assert (image.width, image.height) == (200, 150)
    assert storage.content_type(requested.storage_key) == "image/png"


def test_processing_a_job_twice_does_the_work_once(
    process: ProcessTransformJob,
    requested: Image,
    storage: InMemoryBlobStorage,
    uow_factory: UnitOfWorkFactory,
) -> None:
    first = process(job_for(requested))
    data = storage.get(requested.storage_key)

    second = process(job_for(requested))

    assert (first.status, second.status) == (JobOutcomeStatus.READY, JobOutcomeStatus.ALREADY_READY)
    assert second.image == first.image
    assert storage.get(requested.storage_key) == data
    image = stored_image(uow_factory, requested.id)
    assert image is not None
    assert image.attempts == 1


def test_a_job_whose_worker_died_after_writing_is_rendered_again_identically(
    requested: Image,
    database: InMemoryDatabase,
    storage: InMemoryBlobStorage,
    codec: InMemoryImageCodec,
    clock: ManualClock,
    limits: Limits,
    uow_factory: UnitOfWorkFactory,
) -> None:
    class DiesAtSecondCommit(InMemoryUnitOfWork):
        commits = 0

        def commit(self) -> None:
            DiesAtSecondCommit.commits += 1
            if DiesAtSecondCommit.commits == 2:
                raise SystemExit("killed")
            super().commit()

    dying = ProcessTransformJob(
        lambda: DiesAtSecondCommit(database, clock), storage, codec, clock, limits
    )
    with pytest.raises(SystemExit):
        dying(job_for(requested))
    abandoned = stored_image(uow_factory, requested.id)
    assert abandoned is not None
    assert abandoned.status is JobStatus.PROCESSING
    written = storage.get(requested.storage_key)

    outcome = ProcessTransformJob(uow_factory, storage, codec, clock, limits)(job_for(requested))

    assert outcome.status is JobOutcomeStatus.READY
    assert outcome.image is not None
    assert outcome.image.attempts == 2
    assert storage.get(requested.storage_key) == written
    assert storage.keys().count(requested.storage_key) == 1


def test_a_job_for_a_deleted_image_is_gone(
    process: ProcessTransformJob,
    requested: Image,
    storage: InMemoryBlobStorage,
    uow_factory: UnitOfWorkFactory,
    alice: str,
) -> None:
    assert requested.source_id is not None
    DeleteImage(uow_factory, storage, NoCache())(ImageQuery(alice, requested.source_id))

    outcome = process(job_for(requested))

    assert (outcome.status, outcome.image) == (JobOutcomeStatus.GONE, None)
    assert storage.keys() == []


def test_an_image_deleted_while_rendering_leaves_no_blob(
    requested: Image,
    storage: InMemoryBlobStorage,
    clock: ManualClock,
    limits: Limits,
    uow_factory: UnitOfWorkFactory,
    alice: str,
) -> None:
    def delete_meanwhile() -> None:
        DeleteImage(uow_factory, storage, NoCache())(ImageQuery(alice, requested.id))

    codec = RecordingCodec(on_transform=delete_meanwhile)
    process = ProcessTransformJob(uow_factory, storage, codec, clock, limits)

    outcome = process(job_for(requested))

    assert outcome.status is JobOutcomeStatus.GONE
    assert not storage.exists(requested.storage_key)


def test_a_corrupt_source_fails_for_good_with_a_reason(
    process: ProcessTransformJob,
    requested: Image,
    storage: InMemoryBlobStorage,
    uow_factory: UnitOfWorkFactory,
) -> None:
    source = stored_image(uow_factory, requested.source_id or "")
    assert source is not None
    truncated = fake_image_bytes("png", source.width, source.height)[:-7]
    storage.put(source.storage_key, truncated, "image/png")

    outcome = process(job_for(requested))

    assert outcome.status is JobOutcomeStatus.FAILED
    image = stored_image(uow_factory, requested.id)
    assert image is not None
    assert image.status is JobStatus.FAILED
    assert image.failure_reason is not None
    assert image.failure_reason.startswith("corrupt_image")
    assert not storage.exists(requested.storage_key)


def test_a_missing_source_blob_fails_for_good(
    process: ProcessTransformJob,
    requested: Image,
    storage: InMemoryBlobStorage,
    uow_factory: UnitOfWorkFactory,
) -> None:
    source = stored_image(uow_factory, requested.source_id or "")
    assert source is not None
    storage.delete(source.storage_key)

    outcome = process(job_for(requested))

    assert outcome.status is JobOutcomeStatus.FAILED
    assert outcome.image is not None
    assert outcome.image.failure_reason == "the source image's data is missing"


def test_a_missing_source_row_fails_for_good(
    process: ProcessTransformJob, requested: Image, database: InMemoryDatabase
) -> None:
    with database.lock:
        del database.images[requested.source_id or ""]

    outcome = process(job_for(requested))

    assert outcome.status is JobOutcomeStatus.FAILED
    assert outcome.image is not None
    assert outcome.image.failure_reason == "the source image was deleted"


def test_a_failed_job_delivered_again_does_nothing(
    process: ProcessTransformJob,
    requested: Image,
    storage: InMemoryBlobStorage,
    uow_factory: UnitOfWorkFactory,
) -> None:
    source = stored_image(uow_factory, requested.source_id or "")
    assert source is not None
    storage.delete(source.storage_key)
    failed = process(job_for(requested))

    again = process(job_for(requested))

    assert again.status is JobOutcomeStatus.FAILED
    assert again.image == failed.image


@pytest.mark.parametrize("error", ["storage down", "unexpected"])
def test_a_transient_failure_puts_the_image_back_and_raises(
    requested: Image,
    clock: ManualClock,
    limits: Limits,
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    flaky_storage: Callable[[int], BlobStorage],
    error: str,
) -> None:
    if error == "storage down":
        process = ProcessTransformJob(
            uow_factory, flaky_storage(1), InMemoryImageCodec(), clock, limits
        )
        expected: type[Exception] = DependencyUnavailable
    else:

        def explode() -> None:
            raise RuntimeError("out of file descriptors")

        codec = RecordingCodec(on_transform=explode)
        process = ProcessTransformJob(uow_factory, storage, codec, clock, limits)
        expected = RuntimeError

    with pytest.raises(expected):
        process(job_for(requested))

    image = stored_image(uow_factory, requested.id)
    assert image is not None
    assert image.status is JobStatus.PENDING
    assert image.failure_reason is None
    assert image.attempts == 1


def test_a_watermark_images_bytes_reach_the_codec(
    request_transform: RequestTransform,
    upload: Upload,
    storage: InMemoryBlobStorage,
    clock: ManualClock,
    limits: Limits,
    uow_factory: UnitOfWorkFactory,
    alice: str,
) -> None:
    source = upload(alice)
    logo = upload(alice, width=40, height=20)
    marked = Transformation(watermark=Watermark(image_id=logo.id))
    derived = request_transform(RequestTransformCommand(alice, source.id, marked))
    codec = RecordingCodec()
    process = ProcessTransformJob(uow_factory, storage, codec, clock, limits)

    outcome = process(job_for(derived))

    assert outcome.status is JobOutcomeStatus.READY
    assert codec.watermarks == [storage.get(logo.storage_key)]


def test_a_deleted_watermark_image_fails_the_job(
    request_transform: RequestTransform,
    process: ProcessTransformJob,
    upload: Upload,
    storage: InMemoryBlobStorage,
    uow_factory: UnitOfWorkFactory,
    alice: str,
) -> None:
    source = upload(alice)
    logo = upload(alice, width=40, height=20)
    marked = Transformation(watermark=Watermark(image_id=logo.id))
    derived = request_transform(RequestTransformCommand(alice, source.id, marked))
    DeleteImage(uow_factory, storage, NoCache())(ImageQuery(alice, logo.id))

    outcome = process(job_for(derived))

    assert outcome.status is JobOutcomeStatus.FAILED
    assert outcome.image is not None
    assert outcome.image.failure_reason == f"the watermark image {logo.id} was deleted"
