from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SignedUrl:
    url: str
    expires_at: datetime


class BlobStorage(Protocol):
    """Bytes under keys like ``{user}/{image}.jpg``. Keys never start with ``/``, never contain
    ``..``; adapters refuse such keys with ``ValueError``."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing what was there (same bytes, same result)."""
        ...

    def get(self, key: str) -> bytes:
        """The bytes under ``key``; :class:`~imgproc_core.domain.errors.BlobNotFound` if none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key under ``prefix`` (which ends with ``/``); the number removed."""
        ...

    def signed_url(
        self, key: str, expires_in_seconds: int, *, filename: str | None = None
    ) -> SignedUrl:
        """A URL that reads ``key`` until it expires, with no other credential."""
        ...


class SignedBlobFiles(Protocol):
    """The files behind URLs that a storage signs for itself and the service serves (the local
    folder's ``/blobs/...``). A storage whose URLs point elsewhere (a bucket) has none."""

    def verify(self, key: str, expires: str, signature: str, filename: str | None = None) -> bool:
        """Whether the URL's ``expires`` and ``signature`` (and ``filename``, when it named one)
        are the storage's own for ``key``, and the URL has not expired."""
        ...

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (which may not exist); ``ValueError`` for a key that
        cannot be one."""
        ...
