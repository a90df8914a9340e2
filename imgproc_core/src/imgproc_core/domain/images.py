"""Images: originals uploaded by a user, and the derivatives made from them."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Generic, TypeVar

from imgproc_core.domain.errors import InvalidPagination, InvalidStateTransition
from imgproc_core.domain.formats import EXTENSIONS
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.transformations import Transformation

T = TypeVar("T")

MAX_FILENAME_CHARS: Final = 200
_UNSAFE_FILENAME_CHARS: Final = re.compile(r"[^A-Za-z0-9._ ()+-]+")


@dataclass(slots=True)
class Image:
    """An original (``source_id`` is None, always READY) or a derivative of one.

    A derivative's width and height are planned when it is requested and confirmed when its job
    writes it; its size in bytes is known only then.
    """

    id: str
    user_id: str
    filename: str
    storage_key: str
    mimetype: str
    format: str
    size_bytes: int
    width: int
    height: int
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    source_id: str | None = None
    transformation: Transformation | None = None
    failure_reason: str | None = None
    frames: int = 1
    attempts: int = field(default=0)
    #: The original may have transparent pixels (read from its bytes at upload).
    transparent: bool = False

    @property
    def is_transformed(self) -> bool:
        return self.source_id is not None

    def _become(self, target: JobStatus, now: datetime) -> None:
        if not self.status.can_become(target):
            raise InvalidStateTransition(
                f"image {self.id} cannot go from {self.status} to {target}"
            )
        self.status = target
        self.updated_at = now

    def start_processing(self, now: datetime) -> None:
        self._become(JobStatus.PROCESSING, now)
        self.attempts += 1

    def finish(
        self, *, size_bytes: int, width: int, height: int, frames: int, now: datetime
    ) -> None:
        self._become(JobStatus.READY, now)
        self.size_bytes, self.width, self.height, self.frames = size_bytes, width, height, frames
        self.failure_reason = None

    def fail(self, reason: str, now: datetime) -> None:
        self._become(JobStatus.FAILED, now)
        self.failure_reason = reason

    def requeue(self, now: datetime) -> None:
        """Back to PENDING: a worker gave the job up, or an operator retries a failed one (whose
        old reason no longer describes it)."""
        self._become(JobStatus.PENDING, now)
        self.failure_reason = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    page: int
    limit: int
    total: int


def page_offset(page: int, limit: int, max_limit: int) -> int:
    """Where page ``page`` (counted from 1) of ``limit`` items starts.

    Every listing checks its paging here, each with its own bound: :class:`InvalidPagination`,
    naming the field, for a page below 1 or a limit outside 1 to ``max_limit``.
    """
    if page < 1:
        raise InvalidPagination("page starts at 1", "page")
    if not 1 <= limit <= max_limit:
        raise InvalidPagination(f"limit is between 1 and {max_limit}", "limit")
    return (page - 1) * limit


def sanitize_filename(name: str | None, fmt: str) -> str:
    """A filename safe to show and to put in a Content-Disposition header.

    Directories are dropped (``../../etc/passwd`` becomes ``passwd``), control and unusual
    characters become ``_``, and the name is cut to a sane length. The stored blob's key never
    uses it.
    """
    base = unicodedata.normalize("NFKC", name or "")
    base = base.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    base = _UNSAFE_FILENAME_CHARS.sub("_", base).strip(" ._")
    if not base:
        base = f"image.{EXTENSIONS[fmt]}"
    if len(base) > MAX_FILENAME_CHARS:
        stem, dot, extension = base.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            base = f"{stem[: MAX_FILENAME_CHARS - len(extension) - 1]}.{extension}"
        else:
            base = base[:MAX_FILENAME_CHARS]
    return base


def original_key(user_id: str, image_id: str, fmt: str) -> str:
    """Where an original lives: ``{user}/{image}.{ext}``."""
    return f"{user_id}/{image_id}.{EXTENSIONS[fmt]}"


def derivative_prefix(user_id: str, source_id: str) -> str:
    """The folder of every derivative of one original: ``{user}/{original}/``."""
    return f"{user_id}/{source_id}/"


def derivative_key(user_id: str, source_id: str, image_id: str, fmt: str) -> str:
    """Where a derivative lives: ``{user}/{original}/{derived}.{ext}``."""
    return f"{derivative_prefix(user_id, source_id)}{image_id}.{EXTENSIONS[fmt]}"
