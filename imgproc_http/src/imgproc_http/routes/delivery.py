"""``GET`` and ``HEAD /d/{token}``: a delivery link's bytes, for anyone who holds the link.

No token is needed: the URL is the credential. An edited, unknown, revoked or expired link,
and one whose image was deleted, all answer the same 404. The answer carries what a browser
and a CDN need to cache it: a strong ``ETag`` (the bytes' SHA-256), ``Last-Modified``,
``Cache-Control`` (a year, immutable, for a link that never expires; no longer than the time
left for one that does), and ``If-None-Match`` / ``If-Modified-Since`` answer 304.

A link's derivative may not exist yet: its first reader's request queues its job (the same one
``POST /transform`` would make) and waits for it up to ``IMGPROC_LINK_RENDER_WAIT_SECONDS``;
still not ready: 503 with ``Retry-After``; failed for good: 409 with the reason. Neither is
cached (``Cache-Control: no-store``).
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, Final

from litestar import Request, Response, route
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import File, Redirect

from imgproc_core.domain import Image, JobStatus
from imgproc_core.domain.errors import BlobNotFound, LinkNotFound
from imgproc_core.domain.formats import MEDIA_TYPES
from imgproc_core.ports import BlobStorage, SignedBlobFiles
from imgproc_core.use_cases import DELIVERY_PATH, ImageQuery, LinkTarget, OpenLink
from imgproc_http.context import job_signal
from imgproc_http.errors import problem, problem_responses, retry_after_header
from imgproc_http.metrics import LinkMetrics

#: A year: what browsers and CDNs take as "for ever" for an immutable answer.
FOREVER_SECONDS: Final = 31_536_000
#: The first wait for a render, doubled up to the longest one: a bounded poll.
FIRST_POLL_SECONDS: Final = 0.02
LONGEST_POLL_SECONDS: Final = 0.25
NO_STORE: Final = {"Cache-Control": "no-store"}
#: Digests of served bytes kept, by storage key: a READY image's bytes never change (a key is
#: written once, with the same bytes if again), so its ETag is computed once per process.
REMEMBERED_DIGESTS: Final = 4096


class LinkDelivery:
    """What the route needs besides the use case: the storage, how long to wait for a render,
    and how to read an image's state again while waiting."""

    def __init__(
        self,
        storage: BlobStorage,
        reload: Any,
        wait_seconds: float,
        now: Any,
        metrics: LinkMetrics | None = None,
        files: SignedBlobFiles | None = None,
        redirect_seconds: int | None = None,
    ) -> None:
        self.storage = storage
        self.files = files
        #: With a storage whose URLs point elsewhere (GCS) and ``IMGPROC_LINK_DELIVERY=redirect``:
        #: how long the signed URL a reader is sent to lives; None streams instead.
        self.redirect_seconds = redirect_seconds if files is None else None
        self._digests: OrderedDict[str, str] = OrderedDict()
        self._watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self.reload = reload
        self.wait_seconds = wait_seconds
        self.now = now
        self.metrics = metrics

    def etag(self, key: str, read: Any) -> str:
        """The strong ETag of the bytes under ``key``: their SHA-256, read (``read()``) the
        first time only."""
        with self._lock:
            digest = self._digests.get(key)
            if digest is not None:
                self._digests.move_to_end(key)
                return digest
        digest = f'"{hashlib.sha256(read()).hexdigest()}"'
        with self._lock:
            self._digests[key] = digest
            while len(self._digests) > REMEMBERED_DIGESTS:
                self._digests.popitem(last=False)
        return digest

    def wait_for(self, target: LinkTarget) -> Image:
        """The image once its job has ended, or as it is when the wait is over.

        A bounded poll, shared: whatever the number of readers waiting for one derivative in
        this process, one of them reads its state at a time, at most every
        ``LONGEST_POLL_SECONDS`` once the first quick reads are done, and the others take what
        it read."""
        image = target.image
        if not _under_way(image):
            return image
        started = time.monotonic()
        deadline = started + self.wait_seconds
        key = image.id
        with self._lock:
            watch = self._watches.get(key)
            if watch is None:
                watch = self._watches[key] = _Watch(image)
            watch.readers += 1
        try:
            image = self._wait(watch, target.link.user_id, deadline)
        finally:
            with self._lock:
                watch.readers -= 1
                if watch.readers == 0:
                    del self._watches[key]
        if self.metrics is not None:
            self.metrics.render_wait.observe(time.monotonic() - started)
        return image

    def readers_waiting(self, image_id: str) -> int:
        """How many readers in this process wait for ``image_id`` to be made."""
        with self._lock:
            watch = self._watches.get(image_id)
            return 0 if watch is None else watch.readers

    def _wait(self, watch: _Watch, user_id: str, deadline: float) -> Image:
        while True:
            with watch.changed:
                image = watch.image
                left = deadline - time.monotonic()
                if not _under_way(image) or left <= 0:
                    return image
                if watch.polling:
                    # Another reader is reading it: take what it reads.
                    watch.changed.wait(left)
                    continue
                watch.polling = True
                pause = min(watch.pause, left)
                watch.pause = min(watch.pause * 2, LONGEST_POLL_SECONDS)
            fresh = image
            try:
                time.sleep(pause)
                if self.metrics is not None:
                    self.metrics.render_polls.inc()
                fresh = self.reload(ImageQuery(user_id, image.id))
            finally:
                with watch.changed:
                    watch.image = fresh
                    watch.polling = False
                    watch.changed.notify_all()


class _Watch:
    """The readers of one derivative waiting in this process, and its state as last read."""

    def __init__(self, image: Image) -> None:
        self.image = image
        self.changed = threading.Condition()
        self.polling = False
        self.pause = FIRST_POLL_SECONDS
        self.readers = 0


def _under_way(image: Image) -> bool:
    return image.status in (JobStatus.PENDING, JobStatus.PROCESSING)


def _check_file(path: Path, key: str, storage: BlobStorage) -> os.stat_result | None:
    """That the file under ``key`` is there to stream: its ``stat`` (handed to the response,
    which need not make its own); otherwise the storage says why (:class:`BlobNotFound`, or
    unavailable for a folder that is broken)."""
    try:
        found = path.stat()
    except OSError:
        found = None
    if found is not None and stat.S_ISREG(found.st_mode):
        return found
    if not storage.exists(key):
        raise BlobNotFound(f"no blob under {key!r}")
    return None


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def _not_modified_since(header: str | None, modified: datetime) -> bool:
    if not header:
        return False
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        return False
    return modified.replace(microsecond=0) <= since


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(candidate.strip().removeprefix("W/") == etag for candidate in header.split(","))


@route(
    f"{DELIVERY_PATH}/{{token:str}}",
    http_method=["GET", "HEAD"],
    sync_to_thread=True,
    summary="A delivery link's bytes (no token needed)",
    description=(
        "The image, or its derivative, with `ETag`, `Last-Modified` and `Cache-Control` "
        "(a year and `immutable` for a link without expiry; no longer than the time left for "
        "one with). `If-None-Match` or `If-Modified-Since`: 304. The first use of a link to a "
        "transformation makes its derivative and waits for it: still not ready, 503 with "
        "`Retry-After`; failed for good, 409. With `IMGPROC_LINK_DELIVERY=redirect` and a "
        "bucket, 307 to a signed URL. A link whose format is `auto` varies with `Accept`. "
        "An edited, revoked or expired link, or one whose image is gone: 404."
    ),
    tags=["links"],
    responses={
        200: ResponseSpec(None, description="The bytes", media_type="image/*"),
        304: ResponseSpec(None, description="Not Modified: the reader's copy is current"),
        307: ResponseSpec(None, description="Temporary Redirect: to a signed URL of the bucket"),
        **problem_responses(404, 409, 429, 503, malformed=False),
    },
)
def deliver(
    token: FromPath[str],
    request: Request[Any, Any, Any],
    open_link: NamedDependency[OpenLink],
    link_delivery: NamedDependency[LinkDelivery],
) -> Response[Any]:
    target = open_link(token, request.headers.get("accept"))
    if target.render_started:
        job_signal(request).notify()
        if link_delivery.metrics is not None:
            link_delivery.metrics.renders.inc()
    # Every answer of a link whose format follows Accept varies with it, refusals included.
    vary = {"Vary": "Accept"} if target.link.auto_format else {}
    image = link_delivery.wait_for(target)
    if image.status is JobStatus.FAILED:
        return problem(
            409,
            f"the image could not be made: {image.failure_reason or 'its job failed'}",
            "image_failed",
            headers={**NO_STORE, **vary},
        )
    if image.status is not JobStatus.READY:
        return problem(
            503,
            "the image is still being made; try again shortly",
            "image_not_ready",
            headers={**NO_STORE, **vary, "Retry-After": retry_after_header(1)},
        )
    key = image.storage_key
    if link_delivery.redirect_seconds is not None:
        lifetime = link_delivery.redirect_seconds
        if target.link.expires_at is not None:
            left = math.floor((target.link.expires_at - link_delivery.now()).total_seconds())
            lifetime = max(1, min(lifetime, left))
        signed = link_delivery.storage.signed_url(key, lifetime, filename=image.filename)
        # The signed URL expires: neither the redirect nor its target may be cached for ever.
        return Redirect(signed.url, status_code=307, headers={**NO_STORE, **vary})
    storage, files = link_delivery.storage, link_delivery.files
    path = files.path_for(key) if files is not None else None
    data: bytes | None = None
    found: os.stat_result | None = None
    try:
        if path is None:
            data = storage.get(key)
            body_bytes = data
            etag = link_delivery.etag(key, lambda: body_bytes)
        else:
            found = _check_file(path, key, storage)
            # Read through the storage, whose errors say what failed.
            etag = link_delivery.etag(key, lambda: storage.get(key))
    except BlobNotFound:
        # Its image was deleted since it was looked up: like every link that does not serve.
        raise LinkNotFound("no such link") from None
    expires_at = target.link.expires_at
    if expires_at is None:
        cache_control = f"public, max-age={FOREVER_SECONDS}, immutable"
    else:
        left = max(0, math.floor((expires_at - link_delivery.now()).total_seconds()))
        cache_control = f"public, max-age={min(left, FOREVER_SECONDS)}"
    headers = {
        "ETag": etag,
        "Last-Modified": _http_date(image.updated_at),
        "Cache-Control": cache_control,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'inline; filename="{image.filename}"',
        **vary,
    }
    if_none_match = request.headers.get("if-none-match")
    if _matches(if_none_match, etag) or (
        if_none_match is None
        and _not_modified_since(request.headers.get("if-modified-since"), image.updated_at)
    ):
        return Response(b"", status_code=304, headers=headers)
    media_type = MEDIA_TYPES.get(image.format, image.mimetype)
    if path is not None and request.method != "HEAD":
        # Streamed from the file; Content-Length and the disposition come from File.
        del headers["Content-Disposition"]
        return File(
            path=path,
            filename=image.filename,
            media_type=media_type,
            content_disposition_type="inline",
            headers=headers,
            etag=None,
            stat_result=found,
        )
    size = len(data) if data is not None else image.size_bytes
    headers["Content-Length"] = str(size)
    body = b"" if request.method == "HEAD" or data is None else data
    return Response(body, status_code=200, media_type=media_type, headers=headers)
