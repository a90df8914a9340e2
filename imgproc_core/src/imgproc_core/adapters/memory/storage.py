"""Blob storage in a dictionary, and the rule every blob adapter applies to keys."""

from __future__ import annotations

import threading
from datetime import timedelta
from urllib.parse import quote, urlencode

from imgproc_core.adapters.blob_keys import key_segments, prefix_segments
from imgproc_core.adapters.system import SystemClock
from imgproc_core.domain.errors import BlobNotFound
from imgproc_core.ports.clock import Clock
from imgproc_core.ports.storage import SignedUrl, check_signed_url


def check_blob_key(key: str) -> str:
    """Return ``key`` if it is a valid blob key (:mod:`imgproc_core.adapters.blob_keys`)."""
    key_segments(key)
    return key


def check_blob_prefix(prefix: str) -> str:
    """Return ``prefix`` if it names a folder of keys (``user/`` or ``user/image/``)."""
    prefix_segments(prefix)
    return prefix


class InMemoryBlobStorage:
    """:class:`~imgproc_core.ports.BlobStorage` in a dictionary.

    Signed URLs carry the key and the expiry but no signature: nothing serves them. Their
    expiry is read from ``clock``, so tests can move time.
    """

    def __init__(self, base_url: str = "memory://blobs/", *, clock: Clock | None = None) -> None:
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._blobs: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        check_blob_key(key)
        with self._lock:
            self._blobs[key] = (bytes(data), content_type)

    def get(self, key: str) -> bytes:
        return self._entry(key)[0]

    def content_type(self, key: str) -> str:
        """The content type ``key`` was stored with (for tests; not part of the port)."""
        return self._entry(key)[1]

    def keys(self) -> list[str]:
        """Every stored key, sorted (for tests; not part of the port)."""
        with self._lock:
            return sorted(self._blobs)

    def exists(self, key: str) -> bool:
        check_blob_key(key)
        with self._lock:
            return key in self._blobs

    def delete(self, key: str) -> None:
        check_blob_key(key)
        with self._lock:
            self._blobs.pop(key, None)

    def delete_prefix(self, prefix: str) -> int:
        check_blob_prefix(prefix)
        with self._lock:
            doomed = [key for key in self._blobs if key.startswith(prefix)]
            for key in doomed:
                del self._blobs[key]
        return len(doomed)

    def signed_url(
        self, key: str, expires_in_seconds: int, *, filename: str | None = None
    ) -> SignedUrl:
        check_blob_key(key)
        filename = check_signed_url(expires_in_seconds, filename)
        expires_at = self._clock.now() + timedelta(seconds=expires_in_seconds)
        query = {"expires": str(int(expires_at.timestamp()))}
        if filename is not None:
            query["filename"] = filename
        url = f"{self._base_url}{quote(key, safe='/')}?{urlencode(query)}"
        return SignedUrl(url=url, expires_at=expires_at)

    def _entry(self, key: str) -> tuple[bytes, str]:
        check_blob_key(key)
        with self._lock:
            try:
                return self._blobs[key]
            except KeyError:
                raise BlobNotFound(f"no blob under {key!r}") from None
