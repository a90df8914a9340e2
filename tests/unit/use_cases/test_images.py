"""Uploading, listing, reading, downloading and deleting images."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDatabase,
    InMemoryImageCodec,
    InMemoryUnitOfWork,
    InMemoryUrlCache,
    ManualClock,
    fake_image_bytes,
)
from imgproc_core.domain.errors import (
    DecompressionBomb,
    DependencyUnavailable,
    ImageNotFound,
    ImageNotReady,
    ImageProcessingFailed,
    ImageTooLarge,
    InvalidPagination,
    TooManyFrames,
    UnsupportedImageType,
)
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.ports import SignedUrl, UnitOfWork, UnitOfWorkFactory
from imgproc_core.use_cases import (
    MAX_PAGE_LIMIT,
    DeleteImage,
    GetDownloadUrl,
    GetImageMetadata,
    ImageQuery,
    ImageRemoval,
    ListImages,
    ListImagesQuery,
    ProcessTransformJob,
    RequestTransform,
    RequestTransformCommand,
    UploadImage,
    UploadImageCommand,
    download_cache_key,
)

Upload = Callable[..., Image]


class CountingStorage(InMemoryBlobStorage):
    """Counts the URLs it signs."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.signed = 0

    def signed_url(
        self, key: str, expires_in_seconds: int, *, filename: str | None = None
    ) -> SignedUrl:
        self.signed += 1
        return super().signed_url(key, expires_in_seconds, filename=filename)


class BrokenDeletes(InMemoryBlobStorage):
    """Stores and reads, but cannot delete: the storage went away after the commit."""

    def delete(self, key: str) -> None:
        raise DependencyUnavailable("storage is down", "storage")

    def delete_prefix(self, prefix: str) -> int:
        raise DependencyUnavailable("storage is down", "storage")


class RecordingStorage(InMemoryBlobStorage):
    """Notes every removal it is asked for."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.removals: list[str] = []

    def delete(self, key: str) -> None:
        self.removals.append(key)
        super().delete(key)

    def delete_prefix(self, prefix: str) -> int:
        self.removals.append(prefix)
        return super().delete_prefix(prefix)


class DownCache:
    """A URL cache that does not answer."""

    def get(self, key: str) -> str | None:
        raise DependencyUnavailable("redis is down", "cache")

    def set(self, key: str, url: str, ttl_seconds: float) -> None:
        raise DependencyUnavailable("redis is down", "cache")

    def delete(self, key: str) -> None:
        raise DependencyUnavailable("redis is down", "cache")


def stored_image(uow_factory: UnitOfWorkFactory, image_id: str) -> Image | None:
    with uow_factory() as uow:
        return uow.images.get(image_id)


def set_status(uow_factory: UnitOfWorkFactory, image: Image, status: JobStatus) -> None:
    with uow_factory() as uow:
        current = uow.images.get(image.id)
        assert current is not None
        current.status = status
        current.failure_reason = "corrupt_image: truncated" if status is JobStatus.FAILED else None
        uow.images.update(current)
        uow.commit()


def derive(
    request_transform: RequestTransform, user_id: str, source: Image, width: int = 100
) -> Image:
    transformation = Transformation(resize=Resize(width=width))
    return request_transform(RequestTransformCommand(user_id, source.id, transformation))


def render(process: ProcessTransformJob, image: Image) -> None:
    assert image.source_id is not None
    process(TransformJob(image_id=image.id, source_id=image.source_id, user_id=image.user_id))


# -- upload --------------------------------------------------------------------------------------


def test_upload_stores_the_bytes_and_records_the_original(
    upload_image: UploadImage,
    storage: InMemoryBlobStorage,
    uow_factory: UnitOfWorkFactory,
    clock: ManualClock,
    alice: str,
) -> None:
    data = fake_image_bytes("jpeg", 640, 480)

    image = upload_image(UploadImageCommand(alice, "holiday.jpg", data))

    assert image.user_id == alice
    assert image.status is JobStatus.READY
    assert not image.is_transformed
    assert (image.format, image.mimetype) == ("jpeg", "image/jpeg")
    assert (image.width, image.height, image.frames) == (640, 480, 1)
    assert image.size_bytes == len(data)
    assert image.filename == "holiday.jpg"
    assert image.created_at == clock.now()
    assert image.storage_key == f"{alice}/{image.id}.jpg"
    assert len(image.id) == 32
    assert storage.get(image.storage_key) == data
    assert storage.content_type(image.storage_key) == "image/jpeg"
    assert stored_image(uow_factory, image.id) == image


def test_the_type_comes_from_the_bytes_not_the_filename(
    upload_image: UploadImage, alice: str
) -> None:
    image = upload_image(
        UploadImageCommand(alice, "looks-like.gif", fake_image_bytes("webp", 8, 8))
    )
    assert image.format == "webp"
    assert image.storage_key.endswith(".webp")
    assert image.filename == "looks-like.gif"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("a\x00b.png", "ab.png"),
        ("", "image.png"),
        (None, "image.png"),
    ],
)
def test_upload_sanitizes_the_filename(
    upload_image: UploadImage, alice: str, filename: str | None, expected: str
) -> None:
    image = upload_image(UploadImageCommand(alice, filename, fake_image_bytes("png", 8, 8)))
    assert image.filename == expected


def test_an_upload_over_the_size_limit_is_refused(
    upload_image: UploadImage,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    limits: Limits,
    alice: str,
) -> None:
    data = fake_image_bytes("png", 8, 8)
    data += b"\0" * (limits.max_upload_bytes + 1 - len(data))

    with pytest.raises(ImageTooLarge) as raised:
        upload_image(UploadImageCommand(alice, "big.png", data))

    assert raised.value.limit_bytes == limits.max_upload_bytes
    assert storage.keys() == []
    assert database.images == {}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", UnsupportedImageType),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', UnsupportedImageType),
        (b"just some text", UnsupportedImageType),
        (fake_image_bytes("png", 4000, 4000), DecompressionBomb),
        (fake_image_bytes("gif", 10, 10, frames=11), TooManyFrames),
    ],
    ids=["pdf", "svg", "text", "bomb", "frames"],
)
def test_a_rejected_upload_leaves_nothing_behind(
    upload_image: UploadImage,
    storage: InMemoryBlobStorage,
    database: InMemoryDatabase,
    alice: str,
    data: bytes,
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        upload_image(UploadImageCommand(alice, "x.png", data))
    assert storage.keys() == []
    assert database.images == {}


def test_a_failed_recording_removes_the_blob(
    database: InMemoryDatabase,
    storage: InMemoryBlobStorage,
    codec: InMemoryImageCodec,
    clock: ManualClock,
    limits: Limits,
    alice: str,
) -> None:
    class DatabaseDown(InMemoryUnitOfWork):
        def commit(self) -> None:
            raise DependencyUnavailable("database is down", "database")

    upload = UploadImage(lambda: DatabaseDown(database, clock), storage, codec, clock, limits)
    with pytest.raises(DependencyUnavailable):
        upload(UploadImageCommand(alice, "x.png", fake_image_bytes("png", 8, 8)))
    assert storage.keys() == []
    assert database.images == {}


# -- list ----------------------------------------------------------------------------------------


def test_list_gives_the_callers_images_newest_first_with_derivatives(
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    request_transform: RequestTransform,
    clock: ManualClock,
    alice: str,
    bob: str,
) -> None:
    first = upload(alice)
    second = upload(alice)
    upload(bob)
    clock.advance(1)
    derived = derive(request_transform, alice, first)

    page = ListImages(uow_factory)(ListImagesQuery(alice))

    assert [image.id for image in page.items] == [derived.id, second.id, first.id]
    assert (page.page, page.limit, page.total) == (1, 10, 3)


def test_list_pages_through_the_images(
    uow_factory: UnitOfWorkFactory, upload: Upload, alice: str
) -> None:
    uploaded = [upload(alice) for _ in range(5)]
    newest_first = [image.id for image in reversed(uploaded)]
    list_images = ListImages(uow_factory)

    pages = [list_images(ListImagesQuery(alice, page=n, limit=2)) for n in (1, 2, 3, 4)]

    assert [[image.id for image in page.items] for page in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
        [],
    ]
    assert {page.total for page in pages} == {5}


def test_list_of_a_user_without_images_is_empty(
    uow_factory: UnitOfWorkFactory, upload: Upload, alice: str, bob: str
) -> None:
    upload(alice)
    page = ListImages(uow_factory)(ListImagesQuery(bob))
    assert (page.items, page.total) == ([], 0)


@pytest.mark.parametrize(
    ("page", "limit", "field"),
    [(0, 10, "page"), (-1, 10, "page"), (1, 0, "limit"), (1, MAX_PAGE_LIMIT + 1, "limit")],
)
def test_list_refuses_a_bad_page(
    uow_factory: UnitOfWorkFactory, alice: str, page: int, limit: int, field: str
) -> None:
    with pytest.raises(InvalidPagination) as raised:
        ListImages(uow_factory)(ListImagesQuery(alice, page=page, limit=limit))
    assert raised.value.field == field


def test_list_accepts_the_largest_page(uow_factory: UnitOfWorkFactory, alice: str) -> None:
    page = ListImages(uow_factory)(ListImagesQuery(alice, limit=MAX_PAGE_LIMIT))
    assert page.limit == MAX_PAGE_LIMIT


# -- metadata ------------------------------------------------------------------------------------


def test_metadata_of_an_own_image(
    uow_factory: UnitOfWorkFactory, upload: Upload, alice: str
) -> None:
    image = upload(alice)
    assert GetImageMetadata(uow_factory)(ImageQuery(alice, image.id)) == image


def test_metadata_of_a_derived_image_has_status_and_transformation(
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    request_transform: RequestTransform,
    alice: str,
) -> None:
    derived = derive(request_transform, alice, upload(alice))
    found = GetImageMetadata(uow_factory)(ImageQuery(alice, derived.id))
    assert found.status is JobStatus.PENDING
    assert found.transformation == derived.transformation
    assert found.is_transformed


def test_another_users_image_looks_like_an_unknown_one(
    uow_factory: UnitOfWorkFactory, upload: Upload, alice: str, bob: str
) -> None:
    image = upload(alice)
    metadata = GetImageMetadata(uow_factory)

    with pytest.raises(ImageNotFound) as theirs:
        metadata(ImageQuery(bob, image.id))
    with pytest.raises(ImageNotFound) as unknown:
        metadata(ImageQuery(bob, "0" * 32))

    assert theirs.value.message == f"no image {image.id!r}"
    assert unknown.value.message == f"no image {'0' * 32!r}"


# -- download ------------------------------------------------------------------------------------


@pytest.fixture
def counting_storage(clock: ManualClock) -> CountingStorage:
    return CountingStorage(clock)


@pytest.fixture
def get_download_url(
    uow_factory: UnitOfWorkFactory,
    counting_storage: CountingStorage,
    cache: InMemoryUrlCache,
    clock: ManualClock,
) -> GetDownloadUrl:
    return GetDownloadUrl(uow_factory, counting_storage, cache, clock)


@pytest.fixture
def upload_counted(
    uow_factory: UnitOfWorkFactory,
    counting_storage: CountingStorage,
    codec: InMemoryImageCodec,
    clock: ManualClock,
    limits: Limits,
) -> UploadImage:
    return UploadImage(uow_factory, counting_storage, codec, clock, limits)


def test_download_signs_a_short_lived_url(
    get_download_url: GetDownloadUrl,
    upload_counted: UploadImage,
    counting_storage: CountingStorage,
    clock: ManualClock,
    alice: str,
) -> None:
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))

    download = get_download_url(ImageQuery(alice, image.id))

    assert download.image == image
    assert download.expires_at == clock.now() + timedelta(seconds=300)
    assert image.storage_key in download.url
    assert counting_storage.signed == 1


def test_download_reuses_the_cached_url_with_its_true_expiry(
    get_download_url: GetDownloadUrl,
    upload_counted: UploadImage,
    counting_storage: CountingStorage,
    clock: ManualClock,
    alice: str,
) -> None:
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))
    first = get_download_url(ImageQuery(alice, image.id))

    clock.advance(269)
    again = get_download_url(ImageQuery(alice, image.id))

    assert (again.url, again.expires_at) == (first.url, first.expires_at)
    assert counting_storage.signed == 1


def test_a_cached_url_is_renewed_before_it_expires(
    get_download_url: GetDownloadUrl,
    upload_counted: UploadImage,
    counting_storage: CountingStorage,
    clock: ManualClock,
    alice: str,
) -> None:
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))
    first = get_download_url(ImageQuery(alice, image.id))

    clock.advance(270)  # 30 s before the URL expires: too close to hand out
    renewed = get_download_url(ImageQuery(alice, image.id))

    assert renewed.expires_at == clock.now() + timedelta(seconds=300)
    assert renewed.expires_at > first.expires_at
    assert counting_storage.signed == 2


def test_a_cached_entry_past_the_margin_is_not_used(
    uow_factory: UnitOfWorkFactory,
    counting_storage: CountingStorage,
    upload_counted: UploadImage,
    clock: ManualClock,
    alice: str,
) -> None:
    """Even if the cache kept an entry longer than asked, a URL close to expiry is renewed."""
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))
    forgetful_ttl = InMemoryUrlCache(clock)

    class CacheIgnoringTtl:
        def get(self, key: str) -> str | None:
            return forgetful_ttl.get(key)

        def set(self, key: str, url: str, ttl_seconds: float) -> None:
            forgetful_ttl.set(key, url, 10_000)

        def delete(self, key: str) -> None:
            forgetful_ttl.delete(key)

    get_url = GetDownloadUrl(uow_factory, counting_storage, CacheIgnoringTtl(), clock)
    get_url(ImageQuery(alice, image.id))
    clock.advance(280)
    renewed = get_url(ImageQuery(alice, image.id))
    assert renewed.expires_at == clock.now() + timedelta(seconds=300)
    assert counting_storage.signed == 2


def test_a_malformed_cache_entry_is_ignored(
    uow_factory: UnitOfWorkFactory,
    counting_storage: CountingStorage,
    upload_counted: UploadImage,
    cache: InMemoryUrlCache,
    clock: ManualClock,
    alice: str,
) -> None:
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))
    cache.set(download_cache_key(alice, image.id), "no expiry here", 100)
    download = GetDownloadUrl(uow_factory, counting_storage, cache, clock)(
        ImageQuery(alice, image.id)
    )
    assert download.url.startswith("memory://")
    assert counting_storage.signed == 1


def test_another_users_id_never_finds_the_owners_entry(
    get_download_url: GetDownloadUrl,
    upload_counted: UploadImage,
    cache: InMemoryUrlCache,
    counting_storage: CountingStorage,
    alice: str,
    bob: str,
) -> None:
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))
    get_download_url(ImageQuery(alice, image.id))  # now cached, under Alice's id
    with pytest.raises(ImageNotFound):
        get_download_url(ImageQuery(bob, image.id))
    with pytest.raises(ImageNotFound):
        get_download_url(ImageQuery(alice, "f" * 32))
    assert cache.get(download_cache_key(bob, image.id)) is None
    assert counting_storage.signed == 1


class CountingUnitsOfWork:
    """A unit-of-work factory that counts the units of work it opens."""

    def __init__(self, inner: UnitOfWorkFactory) -> None:
        self._inner = inner
        self.opened = 0

    def __call__(self) -> UnitOfWork:
        self.opened += 1
        return self._inner()


def test_a_cache_hit_does_not_touch_the_database(
    uow_factory: UnitOfWorkFactory,
    counting_storage: CountingStorage,
    upload_counted: UploadImage,
    cache: InMemoryUrlCache,
    clock: ManualClock,
    alice: str,
) -> None:
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))
    units = CountingUnitsOfWork(uow_factory)
    get_url = GetDownloadUrl(units, counting_storage, cache, clock)
    first = get_url(ImageQuery(alice, image.id))
    opened_by_the_miss = units.opened

    again = get_url(ImageQuery(alice, image.id))

    assert opened_by_the_miss > 0
    assert units.opened == opened_by_the_miss
    assert (again.url, again.expires_at) == (first.url, first.expires_at)
    assert (first.image, again.image) == (image, None)
    assert counting_storage.signed == 1


def test_after_a_deletion_the_next_call_is_not_found(
    get_download_url: GetDownloadUrl,
    upload_counted: UploadImage,
    uow_factory: UnitOfWorkFactory,
    counting_storage: CountingStorage,
    cache: InMemoryUrlCache,
    alice: str,
) -> None:
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))
    get_download_url(ImageQuery(alice, image.id))
    get_download_url(ImageQuery(alice, image.id))  # a hit

    DeleteImage(uow_factory, counting_storage, cache)(ImageQuery(alice, image.id))

    with pytest.raises(ImageNotFound):
        get_download_url(ImageQuery(alice, image.id))


def test_a_deletion_committed_while_a_url_is_signed_leaves_no_entry(
    uow_factory: UnitOfWorkFactory,
    upload_counted: UploadImage,
    cache: InMemoryUrlCache,
    clock: ManualClock,
    alice: str,
) -> None:
    """The deletion removes the entry before the miss writes it; the miss notices and removes
    it itself, so no later call can find it."""
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))

    class DeletedWhileSigning(CountingStorage):
        def signed_url(
            self, key: str, expires_in_seconds: int, *, filename: str | None = None
        ) -> SignedUrl:
            DeleteImage(uow_factory, self, cache)(ImageQuery(alice, image.id))
            return super().signed_url(key, expires_in_seconds, filename=filename)

    storage = DeletedWhileSigning(clock)
    storage.put(image.storage_key, b"bytes", image.mimetype)
    get_url = GetDownloadUrl(uow_factory, storage, cache, clock)

    with pytest.raises(ImageNotFound):
        get_url(ImageQuery(alice, image.id))

    assert cache.get(download_cache_key(alice, image.id)) is None
    with pytest.raises(ImageNotFound):
        GetDownloadUrl(uow_factory, CountingStorage(clock), cache, clock)(
            ImageQuery(alice, image.id)
        )


def test_download_works_without_the_cache(
    uow_factory: UnitOfWorkFactory,
    counting_storage: CountingStorage,
    upload_counted: UploadImage,
    clock: ManualClock,
    alice: str,
) -> None:
    image = upload_counted(UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8)))
    get_url = GetDownloadUrl(uow_factory, counting_storage, DownCache(), clock)
    assert get_url(ImageQuery(alice, image.id)).image == image
    assert get_url(ImageQuery(alice, image.id)).image == image
    assert counting_storage.signed == 2


@pytest.mark.parametrize("status", [JobStatus.PENDING, JobStatus.PROCESSING])
def test_a_derived_image_not_ready_yet_has_no_url(
    get_download_url: GetDownloadUrl,
    upload: Upload,
    request_transform: RequestTransform,
    uow_factory: UnitOfWorkFactory,
    alice: str,
    status: JobStatus,
) -> None:
    derived = derive(request_transform, alice, upload(alice))
    if status is JobStatus.PROCESSING:
        set_status(uow_factory, derived, status)

    with pytest.raises(ImageNotReady) as raised:
        get_download_url(ImageQuery(alice, derived.id))

    assert raised.value.status == status.value
    assert status.value in raised.value.message


def test_a_failed_derived_image_says_why(
    get_download_url: GetDownloadUrl,
    upload: Upload,
    request_transform: RequestTransform,
    uow_factory: UnitOfWorkFactory,
    alice: str,
) -> None:
    derived = derive(request_transform, alice, upload(alice))
    set_status(uow_factory, derived, JobStatus.FAILED)
    with pytest.raises(ImageProcessingFailed) as raised:
        get_download_url(ImageQuery(alice, derived.id))
    assert "corrupt_image: truncated" in raised.value.message


def test_a_ready_derived_image_has_a_url(
    get_download_url: GetDownloadUrl,
    upload: Upload,
    request_transform: RequestTransform,
    process: ProcessTransformJob,
    alice: str,
) -> None:
    derived = derive(request_transform, alice, upload(alice))
    render(process, derived)
    download = get_download_url(ImageQuery(alice, derived.id))
    assert derived.storage_key in download.url
    assert download.image.status is JobStatus.READY


# -- delete --------------------------------------------------------------------------------------


def cached_keys(cache: InMemoryUrlCache, user_id: str, *images: Image) -> list[str | None]:
    return [cache.get(download_cache_key(user_id, image.id)) for image in images]


@pytest.fixture
def world(
    upload: Upload,
    request_transform: RequestTransform,
    process: ProcessTransformJob,
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    cache: InMemoryUrlCache,
    clock: ManualClock,
    alice: str,
    bob: str,
) -> dict[str, Any]:
    """Alice's original with two derivatives (one rendered), another original, and Bob's."""
    original = upload(alice)
    rendered = derive(request_transform, alice, original, width=100)
    pending = derive(request_transform, alice, original, width=50)
    render(process, rendered)
    other = upload(alice)
    bobs = upload(bob)
    get_url = GetDownloadUrl(uow_factory, storage, cache, clock)
    for user_id, image in ((alice, original), (alice, rendered), (alice, other), (bob, bobs)):
        get_url(ImageQuery(user_id, image.id))
    return {
        "original": original,
        "rendered": rendered,
        "pending": pending,
        "other": other,
        "bobs": bobs,
    }


def test_deleting_an_original_takes_its_derivatives_blobs_and_urls(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    cache: InMemoryUrlCache,
    world: dict[str, Any],
    alice: str,
    bob: str,
) -> None:
    original, rendered, pending = world["original"], world["rendered"], world["pending"]
    other, bobs = world["other"], world["bobs"]
    assert storage.exists(rendered.storage_key)

    DeleteImage(uow_factory, storage, cache)(ImageQuery(alice, original.id))

    for gone in (original, rendered, pending):
        assert stored_image(uow_factory, gone.id) is None
        assert not storage.exists(gone.storage_key)
    assert cached_keys(cache, alice, original, rendered, pending) == [None, None, None]
    assert storage.keys() == sorted([other.storage_key, bobs.storage_key])
    assert stored_image(uow_factory, other.id) == other
    assert stored_image(uow_factory, bobs.id) == bobs
    assert cached_keys(cache, alice, other) != [None]
    assert cached_keys(cache, bob, bobs) != [None]


def test_an_original_and_its_derivatives_go_in_one_folder_removal(
    uow_factory: UnitOfWorkFactory, storage: InMemoryBlobStorage, world: dict[str, Any]
) -> None:
    original, rendered, pending = world["original"], world["rendered"], world["pending"]
    recording = RecordingStorage(ManualClock())
    removal = ImageRemoval(recording, InMemoryUrlCache(ManualClock()))
    with uow_factory() as uow:
        removed = removal.delete_rows(uow, [original, rendered])
        uow.commit()

    # Each once, derivatives first, whether chosen or found through their original.
    assert sorted(image.id for image in removed[:2]) == sorted([rendered.id, pending.id])
    assert removed[2].id == original.id
    assert removal.remove_files(removed) == 0
    assert recording.removals == [f"{original.user_id}/{original.id}/", original.storage_key]


def test_removal_failures_after_the_commit_are_counted(
    uow_factory: UnitOfWorkFactory, world: dict[str, Any], clock: ManualClock
) -> None:
    original, rendered = world["original"], world["rendered"]
    removal = ImageRemoval(BrokenDeletes(clock=clock), DownCache())
    with uow_factory() as uow:
        removed = removal.delete_rows(uow, [rendered])
        uow.commit()

    # The derivative's cache entry and its blob; its original and sibling are left.
    assert [image.id for image in removed] == [rendered.id]
    assert removal.remove_files(removed) == 2
    assert stored_image(uow_factory, original.id) == original


def test_deleting_a_derivative_leaves_the_original_and_its_siblings(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    cache: InMemoryUrlCache,
    world: dict[str, Any],
    alice: str,
) -> None:
    original, rendered, pending = world["original"], world["rendered"], world["pending"]

    DeleteImage(uow_factory, storage, cache)(ImageQuery(alice, rendered.id))

    assert stored_image(uow_factory, rendered.id) is None
    assert not storage.exists(rendered.storage_key)
    assert cached_keys(cache, alice, rendered) == [None]
    assert stored_image(uow_factory, original.id) == original
    assert stored_image(uow_factory, pending.id) is not None
    assert storage.exists(original.storage_key)
    assert cached_keys(cache, alice, original) != [None]


def test_deleting_another_users_image_is_not_found_and_removes_nothing(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    cache: InMemoryUrlCache,
    world: dict[str, Any],
    bob: str,
) -> None:
    keys_before = storage.keys()
    with pytest.raises(ImageNotFound):
        DeleteImage(uow_factory, storage, cache)(ImageQuery(bob, world["original"].id))
    with pytest.raises(ImageNotFound):
        DeleteImage(uow_factory, storage, cache)(ImageQuery(bob, "0" * 32))
    assert storage.keys() == keys_before
    assert stored_image(uow_factory, world["original"].id) == world["original"]


def test_an_entry_a_deletion_could_not_remove_lasts_until_the_margin_at_most(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    clock: ManualClock,
    world: dict[str, Any],
    alice: str,
) -> None:
    """The cache did not answer the deletion, so it still holds the owner's entry: the owner
    gets the URL it already had, which leads to deleted bytes, until the entry is due for
    renewal, and then ImageNotFound."""
    other = world["other"]
    cache = InMemoryUrlCache(clock)
    get_url = GetDownloadUrl(uow_factory, storage, cache, clock)
    first = get_url(ImageQuery(alice, other.id))
    DeleteImage(uow_factory, storage, DownCache())(ImageQuery(alice, other.id))

    clock.advance(269)
    assert get_url(ImageQuery(alice, other.id)).url == first.url
    assert not storage.exists(other.storage_key)

    clock.advance(1)
    with pytest.raises(ImageNotFound):
        get_url(ImageQuery(alice, other.id))


def test_blobs_that_cannot_be_removed_after_the_commit_are_left_as_orphans(
    uow_factory: UnitOfWorkFactory,
    codec: InMemoryImageCodec,
    cache: InMemoryUrlCache,
    clock: ManualClock,
    limits: Limits,
    alice: str,
) -> None:
    storage = BrokenDeletes(clock=clock)
    image = UploadImage(uow_factory, storage, codec, clock, limits)(
        UploadImageCommand(alice, "a.png", fake_image_bytes("png", 8, 8))
    )

    DeleteImage(uow_factory, storage, cache)(ImageQuery(alice, image.id))

    assert stored_image(uow_factory, image.id) is None
    assert storage.keys() == [image.storage_key]
