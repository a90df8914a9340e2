from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

#: The longest a signed URL may live: the bound of Google Cloud Storage's V4 URLs, which every
#: blob storage applies, so that a lifetime one accepts is accepted by all.
MAX_URL_TTL_SECONDS: Final = 7 * 24 * 3600


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
        """A URL that reads ``key`` for ``expires_in_seconds`` (1 to
        :data:`MAX_URL_TTL_SECONDS`), with no other credential; ``filename`` (empty means none)
        names the download. Adapters check the arguments with :func:`check_signed_url`."""
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


def check_signed_url(expires_in_seconds: int, filename: str | None = None) -> str | None:
    """The arguments of :meth:`BlobStorage.signed_url`, checked as every adapter checks them:
    ``ValueError`` for a lifetime that is not an ``int`` from 1 to :data:`MAX_URL_TTL_SECONDS`
    or a filename that is not text. Returns the download name, ``None`` when there is none (an
    empty name is none)."""
    if isinstance(expires_in_seconds, bool) or not isinstance(expires_in_seconds, int):
        raise ValueError(f"expires_in_seconds must be an int, not {expires_in_seconds!r}")
    if not 1 <= expires_in_seconds <= MAX_URL_TTL_SECONDS:
        raise ValueError(
            f"expires_in_seconds must be between 1 and {MAX_URL_TTL_SECONDS}, "
            f"not {expires_in_seconds}"
        )
    if filename is not None and not isinstance(filename, str):
        raise ValueError(f"filename must be text or None, not {filename!r}")
    return filename or None
