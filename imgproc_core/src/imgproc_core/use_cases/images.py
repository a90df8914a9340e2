"""Uploading, listing, reading and deleting a user's images."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from imgproc_core.domain.errors import (
    DependencyUnavailable,
    ImageNotFound,
    ImageNotReady,
    ImageProcessingFailed,
    InvalidInput,
)
from imgproc_core.domain.images import (
    Image,
    Page,
    derivative_prefix,
    original_key,
    page_offset,
    sanitize_filename,
)
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.presets import PresetReference, check_preset_name
from imgproc_core.domain.webhooks import WebhookEventType
from imgproc_core.ports import (
    BlobStorage,
    Clock,
    ImageCodec,
    ImageRepository,
    UnitOfWork,
    UnitOfWorkFactory,
    UrlCache,
)
from imgproc_core.use_cases.derivatives import queue_derivative
from imgproc_core.use_cases.pipeline import admit_original
from imgproc_core.use_cases.presets import resolve_transformation
from imgproc_core.use_cases.webhooks import WebhookEvents

__all__ = [
    "MAX_PAGE_LIMIT",
    "MAX_VARIANTS",
    "DeleteImage",
    "Download",
    "GetDownloadUrl",
    "GetImageMetadata",
    "ImageQuery",
    "ImageRemoval",
    "ListImages",
    "ListImagesQuery",
    "Upload",
    "UploadImage",
    "UploadImageCommand",
    "Variant",
    "download_cache_key",
    "owned_image",
]

logger = logging.getLogger(__name__)

MAX_PAGE_LIMIT: Final = 100
#: Variants one upload may ask for.
MAX_VARIANTS: Final = 10


@dataclass(frozen=True, slots=True)
class UploadImageCommand:
    user_id: str
    filename: str | None
    data: bytes
    #: Presets to make at once (their jobs written with the upload): names, as the form gives.
    variants: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Variant:
    """A derivative queued by an upload: for a preset it asked for, or an eager one."""

    preset: str
    image: Image


@dataclass(frozen=True, slots=True)
class Upload:
    image: Image
    variants: tuple[Variant, ...] = ()


@dataclass(frozen=True, slots=True)
class ListImagesQuery:
    user_id: str
    page: int = 1
    limit: int = 10


@dataclass(frozen=True, slots=True)
class ImageQuery:
    user_id: str
    image_id: str


@dataclass(frozen=True, slots=True)
class Download:
    """A signed URL that reads the image until ``expires_at``.

    ``image`` is the image as the database has it when the URL was signed for this call, and
    ``None`` when the URL came from the cache, which answers without reading the database.
    """

    url: str
    expires_at: datetime
    image: Image | None = None


def owned_image(images: ImageRepository, user_id: str, image_id: str) -> Image:
    """The image, if it belongs to ``user_id``.

    Someone else's image raises the same :class:`ImageNotFound` as an unknown id, so ids cannot be
    probed for existence.
    """
    image = images.get(image_id)
    if image is None or image.user_id != user_id:
        raise ImageNotFound(f"no image {image_id!r}")
    return image


def download_cache_key(user_id: str, image_id: str) -> str:
    return f"download-url:{user_id}:{image_id}"


class UploadImage:
    """Store an original image and record it, with the variants it asks for.

    The bytes are checked (size, then type, pixels, frames and integrity by the codec: the
    render pipeline's first step, :func:`~imgproc_core.use_cases.pipeline.admit_original`)
    before anything is written. The blob is written first and the row second, so a row never points
    at missing bytes; if the row cannot be written, the blob is removed again.

    Variants are presets made at once: those the upload names, then the user's eager presets.
    Their rows and jobs are written in the same transaction as the upload's row. A variant
    asked for that cannot be made (no such preset, or one that does not fit this image)
    refuses the upload; an eager preset that does not fit this image is left out.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        storage: BlobStorage,
        codec: ImageCodec,
        clock: Clock,
        limits: Limits,
        presets_only: bool = False,
        events: WebhookEvents | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._storage = storage
        self._codec = codec
        self._clock = clock
        self._limits = limits
        self._presets_only = presets_only
        self._events = events

    def __call__(self, command: UploadImageCommand) -> Image:
        return self.upload(command).image

    def upload(self, command: UploadImageCommand) -> Upload:
        """The upload and its variants."""
        names = _variant_names(command.variants)
        info = admit_original(command.data, self._codec, self._limits)
        image_id = uuid.uuid4().hex
        now = self._clock.now()
        image = Image(
            id=image_id,
            user_id=command.user_id,
            filename=sanitize_filename(command.filename, info.format),
            storage_key=original_key(command.user_id, image_id, info.format),
            mimetype=info.mimetype,
            format=info.format,
            size_bytes=len(command.data),
            width=info.width,
            height=info.height,
            frames=info.frames,
            transparent=info.transparent,
            status=JobStatus.READY,
            created_at=now,
            updated_at=now,
        )
        self._storage.put(image.storage_key, command.data, image.mimetype)
        try:
            with self._uow_factory() as uow:
                uow.images.add(image)
                variants = self._variants(uow, image, names, now)
                if self._events is not None:
                    self._events.record(uow, WebhookEventType.IMAGE_UPLOADED, image)
                uow.commit()
        except BaseException:
            try:
                self._storage.delete(image.storage_key)
            except Exception:
                logger.exception(
                    "could not remove the blob %s of a failed upload", image.storage_key
                )
            raise
        return Upload(image, variants)

    def _variants(
        self, uow: UnitOfWork, image: Image, names: Sequence[str], now: datetime
    ) -> tuple[Variant, ...]:
        made: dict[str, Variant] = {}
        for name in names:
            try:
                transformation = resolve_transformation(
                    uow.presets,
                    image.user_id,
                    PresetReference(name),
                    presets_only=self._presets_only,
                )
                derived, _ = queue_derivative(
                    uow, image, transformation, limits=self._limits, now=now
                )
            except InvalidInput as exc:
                raise type(exc)(f"variant {name!r}: {exc.message}", "variants") from None
            made.setdefault(derived.id, Variant(name, derived))
        # A user's own presets do not apply in presets-only mode, eager ones neither.
        eager = () if self._presets_only else uow.presets.eager(image.user_id)
        for preset in eager:
            try:
                derived, _ = queue_derivative(
                    uow, image, preset.transformation, limits=self._limits, now=now
                )
            except InvalidInput as exc:
                logger.info("eager preset %r left out for image %s: %s", preset.name, image.id, exc)
                continue
            made.setdefault(derived.id, Variant(preset.name, derived))
        return tuple(made.values())


def _variant_names(variants: Sequence[str]) -> list[str]:
    """The preset names of a ``variants`` field (each item may list several, comma-separated),
    checked, each once, in order."""
    names: list[str] = []
    for item in variants:
        for part in item.split(","):
            name = part.strip()
            if not name:
                continue
            check_preset_name(name, "variants")
            if name not in names:
                names.append(name)
    if len(names) > MAX_VARIANTS:
        raise InvalidInput(f"an upload asks for at most {MAX_VARIANTS} variants", "variants")
    return names


class ListImages:
    """A page of the caller's images, newest first.

    Originals and derivatives are listed together: a derivative is an image the user asked
    for and can download, and ``is_transformed`` / ``source_id`` tell the two apart.
    """

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: ListImagesQuery) -> Page[Image]:
        offset = page_offset(query.page, query.limit, MAX_PAGE_LIMIT)
        with self._uow_factory() as uow:
            items, total = uow.images.list_for_user(query.user_id, offset=offset, limit=query.limit)
        return Page(items=list(items), page=query.page, limit=query.limit, total=total)


class GetImageMetadata:
    """One of the caller's images, with its status and transformation when it is derived."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: ImageQuery) -> Image:
        with self._uow_factory() as uow:
            return owned_image(uow.images, query.user_id, query.image_id)


class GetDownloadUrl:
    """A short-lived signed URL for one of the caller's images.

    The cache is read first, under a key made of the caller's user id and the image id, and a
    hit is answered without reading the database. That is safe because an entry vouches for
    itself:

    - it is written only here, after the database showed the image READY and owned by the
      caller whose id is in the key, so another user's id can never find it, and the URL it
      holds was already handed to that same caller;
    - READY is final and an image never changes owner, so only a deletion can take the right
      to the URL away, and :class:`DeleteImage` and ``PurgeUserImages`` remove the entry of
      every image they delete once its row is gone; an entry written while a deletion commits
      is caught by the check that follows the write (below);
    - it lives at most until ``cache_margin_seconds`` before its URL expires, that is
      ``url_ttl_seconds - cache_margin_seconds`` after signing. An entry outlives its image
      only when the deletion could not remove it: the cache did not answer (logged), or the
      cache is one process's memory and the deletion ran in another (``imgproc images purge``
      beside an embedded server). Until the entry expires, the owner then gets back the URL it
      already had, which leads to deleted bytes.

    On a miss, ownership and status are read from the database; a URL is signed and cached
    with its expiry, so a hit reports the true ``expires_at``; then the image is read once more
    and the entry removed if the image was deleted meanwhile. The cache only saves work: when
    it does not answer, the URL is signed afresh.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        storage: BlobStorage,
        cache: UrlCache,
        clock: Clock,
        url_ttl_seconds: int = 300,
        cache_margin_seconds: int = 30,
    ) -> None:
        self._uow_factory = uow_factory
        self._storage = storage
        self._cache = cache
        self._clock = clock
        self._url_ttl = url_ttl_seconds
        self._margin = timedelta(seconds=cache_margin_seconds)

    def __call__(self, query: ImageQuery) -> Download:
        key = download_cache_key(query.user_id, query.image_id)
        now = self._clock.now()
        cached = self._cached(key, now)
        if cached is not None:
            url, expires_at = cached
            return Download(url=url, expires_at=expires_at)
        with self._uow_factory() as uow:
            image = owned_image(uow.images, query.user_id, query.image_id)
        if image.status in (JobStatus.PENDING, JobStatus.PROCESSING):
            raise ImageNotReady(
                f"image {image.id} is {image.status.value}; try again shortly",
                status=image.status.value,
            )
        if image.status is JobStatus.FAILED:
            raise ImageProcessingFailed(
                f"image {image.id} could not be made: {image.failure_reason or 'unknown reason'}"
            )
        signed = self._storage.signed_url(image.storage_key, self._url_ttl, filename=image.filename)
        keep_for = (signed.expires_at - self._margin - now).total_seconds()
        if keep_for > 0 and self._remember(key, signed.expires_at, signed.url, keep_for):
            self._forget_if_deleted(key, query)
        return Download(url=signed.url, expires_at=signed.expires_at, image=image)

    def _cached(self, key: str, now: datetime) -> tuple[str, datetime] | None:
        try:
            entry = self._cache.get(key)
        except DependencyUnavailable:
            logger.warning("the URL cache is unavailable; signing %s afresh", key)
            return None
        if entry is None:
            return None
        expiry_text, _, url = entry.partition("|")
        try:
            expires_at = datetime.fromisoformat(expiry_text)
        except ValueError:
            return None
        if not url or expires_at.tzinfo is None or expires_at - self._margin <= now:
            return None
        return url, expires_at

    def _remember(self, key: str, expires_at: datetime, url: str, keep_for: float) -> bool:
        try:
            self._cache.set(key, f"{expires_at.isoformat()}|{url}", keep_for)
        except DependencyUnavailable:
            logger.warning("the URL cache is unavailable; not caching %s", key)
            return False
        return True

    def _forget_if_deleted(self, key: str, query: ImageQuery) -> None:
        """Close the race with a deletion that committed after this call read the image: the
        deletion removed the entry before it was written, so it is removed here. A deletion
        that commits after this read removes the entry itself."""
        with self._uow_factory() as uow:
            still_there = uow.images.get(query.image_id) is not None
        if still_there:
            return
        try:
            self._cache.delete(key)
        except DependencyUnavailable:
            logger.warning("the URL cache is unavailable; could not remove %s", key)
        raise ImageNotFound(f"no image {query.image_id!r}")


class ImageRemoval:
    """How images leave the service, for :class:`DeleteImage` and ``PurgeUserImages`` alike.

    Rows go first, in the caller's transaction: :meth:`delete_rows` takes the chosen images and
    every derivative of the originals among them. Once the caller has committed,
    :meth:`remove_files` removes their URL cache entries and then their blobs. If removing one
    fails, what is left is an unreachable blob (wasted space, found under the user's prefix) or
    a cache entry that expires by itself, never a row that lists an image whose bytes are gone.
    Those failures are logged and counted rather than raised: the images are deleted for every
    reader by then.
    """

    def __init__(
        self, storage: BlobStorage, cache: UrlCache, events: WebhookEvents | None = None
    ) -> None:
        self._storage = storage
        self._cache = cache
        self._events = events

    def delete_rows(self, uow: UnitOfWork, chosen: Iterable[Image]) -> list[Image]:
        """Delete the rows of ``chosen`` and of the derivatives of its originals, an
        ``image.deleted`` event recorded for each; the images deleted, each once, derivatives
        first (a database may cascade an original's deletion to them)."""
        images = uow.images
        removed: dict[str, Image] = {}
        for image in chosen:
            removed.setdefault(image.id, image)
            if not image.is_transformed:
                for each in images.list_derivatives(image.id):
                    removed.setdefault(each.id, each)
        ordered = sorted(removed.values(), key=lambda image: not image.is_transformed)
        for image in ordered:
            images.delete(image.id)
            if self._events is not None:
                self._events.record(uow, WebhookEventType.IMAGE_DELETED, image)
        return ordered

    def remove_files(self, removed: Sequence[Image]) -> int:
        """Remove the cache entries and blobs of images whose rows are gone; how many removals
        failed (each logged)."""
        failures = 0
        for image in removed:
            failures += self._quietly(
                self._cache.delete, download_cache_key(image.user_id, image.id)
            )
        originals = {image.id for image in removed if not image.is_transformed}
        for image in removed:
            if image.source_id in originals:
                continue  # In its original's folder, which goes whole.
            if not image.is_transformed:
                prefix = derivative_prefix(image.user_id, image.id)
                failures += self._quietly(self._storage.delete_prefix, prefix)
            failures += self._quietly(self._storage.delete, image.storage_key)
        return failures

    @staticmethod
    def _quietly(remove: Callable[[str], object], key: str) -> int:
        try:
            remove(key)
        except Exception:
            logger.exception("could not remove %s of a deleted image", key)
            return 1
        return 0


class DeleteImage:
    """Delete one of the caller's images; an original takes all its derivatives with it.

    Rows go first, in one transaction, and blobs after, as :class:`ImageRemoval` removes them:
    a failure past the commit leaves an unreachable blob, never a row without its bytes.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        storage: BlobStorage,
        cache: UrlCache,
        events: WebhookEvents | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._removal = ImageRemoval(storage, cache, events)

    def __call__(self, query: ImageQuery) -> None:
        with self._uow_factory() as uow:
            image = owned_image(uow.images, query.user_id, query.image_id)
            removed = self._removal.delete_rows(uow, [image])
            uow.commit()
        self._removal.remove_files(removed)
