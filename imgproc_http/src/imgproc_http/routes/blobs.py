"""``GET /blobs/{key}``: the files behind the local storage's signed URLs.

Only a storage that signs its own URLs and keeps blobs as files (the embedded profile's local
folder) is served here: the container's ``blob_files`` port. A storage whose URLs point
elsewhere has none, and the route answers 404.

- valid signature, not expired: the file, streamed, with the content type of its extension and
  ``Cache-Control: private, max-age=<seconds left>``;
- tampered with or expired: 403;
- no signature parameters at all, or no such file: 404, so a URL stripped of its query reveals
  nothing about what exists.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from litestar import get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery
from litestar.response import File

from imgproc_core.domain.formats import EXTENSIONS, MEDIA_TYPES
from imgproc_core.ports import SignedBlobFiles
from imgproc_http.errors import problem_responses

BLOB_ROUTE_PREFIX: Final = "/blobs"

_MEDIA_TYPE_BY_EXTENSION: Final = {ext: MEDIA_TYPES[fmt] for fmt, ext in EXTENSIONS.items()}


class BlobFiles:
    """The files seen by the blob route; ``files`` is None when the storage serves none."""

    def __init__(self, files: SignedBlobFiles | None) -> None:
        self._storage = files

    def locate(
        self, key: str, expires: str | None, signature: str | None, filename: str | None
    ) -> Path:
        if self._storage is None or (expires is None and signature is None):
            raise NotFoundException("no such file")
        if expires is None or signature is None:
            raise PermissionDeniedException("the signed URL is incomplete")
        if not self._storage.verify(key, expires, signature, filename):
            raise PermissionDeniedException("the signed URL is invalid or has expired")
        try:
            path = self._storage.path_for(key)
        except ValueError:
            raise NotFoundException("no such file") from None
        if not path.is_file():
            raise NotFoundException("no such file")
        return path


def media_type_of(key: str) -> str:
    extension = key.rpartition(".")[2].lower()
    return _MEDIA_TYPE_BY_EXTENSION.get(extension, "application/octet-stream")


@get(
    f"{BLOB_ROUTE_PREFIX}/{{key:path}}",
    sync_to_thread=True,
    summary="A stored file, through a signed URL",
    description="The URLs come from `GET /api/v1/images/{id}`; they expire after a few minutes.",
    responses=problem_responses(403, 404),
    tags=["files"],
)
def read_blob(
    key: FromPath[str],
    blob_files: NamedDependency[BlobFiles],
    now: NamedDependency[datetime],
    expires: FromQuery[str | None] = None,
    signature: FromQuery[str | None] = None,
    filename: FromQuery[str | None] = None,
) -> File:
    blob_key = key.lstrip("/")
    path = blob_files.locate(blob_key, expires, signature, filename)
    remaining = max(0, math.floor(int(expires or 0) - now.timestamp()))
    headers: dict[str, Any] = {
        "Cache-Control": f"private, max-age={remaining}",
        "X-Content-Type-Options": "nosniff",
    }
    return File(
        path=path,
        filename=filename or path.name,
        media_type=media_type_of(blob_key),
        content_disposition_type="inline",
        headers=headers,
    )
