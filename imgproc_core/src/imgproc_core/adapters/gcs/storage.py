"""Blobs in a Google Cloud Storage bucket, read back through V4 signed URLs.

The key ``{user}/{image}.{ext}`` is the object name, unchanged: keys are checked with the one
rule every blob storage shares (:mod:`imgproc_core.adapters.blob_keys`), before any call.

Every call has a short connect timeout, a read timeout, and a retry budget of a few seconds
(transient errors only: refused or dropped connections, 408, 429, 5xx), so that a storage that is
down makes a request fail within seconds with :class:`DependencyUnavailable` rather than retry
for the library's default of two minutes.

Credentials, in order:

- ``emulator_host`` (or the library's own ``STORAGE_EMULATOR_HOST``): the data client is
  anonymous. Given a service account's credentials it would keep trying to refresh a token at
  Google for minutes. URLs are signed with ``credentials_file`` when one is given, else they are
  the emulator's plain download URLs (:class:`EmulatorDownloadUrls`).
- ``credentials_file``: a service-account key; it reads and writes, and signs URLs locally.
- neither: Application Default Credentials. URLs are signed locally if they hold a key, else
  through the IAM ``signBlob`` API (:class:`CredentialsUrlSigning`).

The client is made on first use, so that a storage that cannot be reached, or credentials that
cannot be found, do not stop the service from starting: they fail the calls that need them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any, Final

import google.auth
from google.api_core.exceptions import Conflict, NotFound
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from imgproc_core.adapters.blob_keys import key_segments, prefix_segments
from imgproc_core.adapters.gcs.errors import storage_errors
from imgproc_core.adapters.gcs.signing import (
    CredentialsUrlSigning,
    EmulatorDownloadUrls,
    GcsUrlSigning,
    inline_disposition,
)
from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.ports.clock import Clock
from imgproc_core.ports.storage import SignedUrl, check_signed_url

#: Reads, writes and signs; the narrower ``devstorage`` scopes do not cover ``signBlob``.
_SCOPES: Final = ("https://www.googleapis.com/auth/cloud-platform",)
#: The variable the client library itself reads to talk to an emulator.
_EMULATOR_VARIABLE: Final = "STORAGE_EMULATOR_HOST"
#: Cloud Storage lists at most 1000 objects per page.
_MAX_PAGE_SIZE: Final = 1000
#: Deletes of one prefix in flight at once; the client's connection pool keeps 10 per host.
_DELETE_CONCURRENCY: Final = 8


class GcsBlobStorage:
    """:class:`~imgproc_core.ports.storage.BlobStorage` on a Google Cloud Storage bucket.

    ``clock`` dates the signed URLs (see :mod:`imgproc_core.adapters.gcs.signing`). ``signing``
    replaces the choice made from the credentials; ``client`` replaces the client made from
    them (its own timeouts and retries are still set per call here).
    """

    def __init__(
        self,
        bucket_name: str,
        *,
        clock: Clock,
        client: Any = None,
        project: str | None = None,
        credentials_file: str | Path | None = None,
        emulator_host: str | None = None,
        signing: GcsUrlSigning | None = None,
        connect_timeout_seconds: float = 3.0,
        read_timeout_seconds: float = 20.0,
        retry_deadline_seconds: float = 3.0,
        list_page_size: int = _MAX_PAGE_SIZE,
    ) -> None:
        if not bucket_name or "/" in bucket_name:
            raise ValueError(f"{bucket_name!r} is not a bucket name")
        if not 1 <= list_page_size <= _MAX_PAGE_SIZE:
            raise ValueError(f"list_page_size must be between 1 and {_MAX_PAGE_SIZE}")
        self._bucket_name = bucket_name
        self._clock = clock
        self._project = project or None
        self._emulator_host = _emulator_endpoint(
            emulator_host or os.environ.get(_EMULATOR_VARIABLE) or None
        )
        self._key_credentials = (
            _service_account_credentials(Path(credentials_file)) if credentials_file else None
        )
        self._timeout = (connect_timeout_seconds, read_timeout_seconds)
        self._retry = DEFAULT_RETRY.with_timeout(retry_deadline_seconds).with_delay(
            initial=0.1, maximum=1.0, multiplier=2.0
        )
        self._list_page_size = list_page_size
        self._client: Any = client
        self._bucket: Any = None
        self._signing = signing
        self._default_credentials: tuple[Any, str | None] | None = None
        self._lock = threading.Lock()

    @property
    def bucket_name(self) -> str:
        return self._bucket_name

    # -- BlobStorage ------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str) -> None:
        key_segments(key)
        blob = self._blob(key)
        with storage_errors("write", key):
            # Retried unconditionally: writing the same bytes twice leaves the same blob, which
            # is all the port promises.
            blob.upload_from_string(
                data, content_type=content_type, timeout=self._timeout, retry=self._retry
            )

    def get(self, key: str) -> bytes:
        key_segments(key)
        blob = self._blob(key)
        with storage_errors("read", key, missing_blob=True):
            data: bytes = blob.download_as_bytes(timeout=self._timeout, retry=self._retry)
        return data

    def exists(self, key: str) -> bool:
        key_segments(key)
        blob = self._blob(key)
        with storage_errors("check", key):
            try:
                found: bool = blob.exists(timeout=self._timeout, retry=self._retry)
            except NotFound:
                return False
        return found

    def delete(self, key: str) -> None:
        key_segments(key)
        self._delete_one(self._blob(key))

    def delete_prefix(self, prefix: str) -> int:
        """Remove every blob whose key starts with ``prefix`` (a folder: ``u1/`` or
        ``u1/img/``); the number this call removed (a blob that vanished meanwhile is not
        counted). Every blob is tried even when some fail; then the failures are reported.

        The names are listed first, page by page, then deleted a few at a time over the
        client's pooled connections. The JSON API's batch endpoint would need fewer requests,
        but the client library's batch bodies carry no ``Content-ID`` per part, which
        fake-gcs-server requires: its answer is empty and the library fails to parse it, so
        that path could never be exercised against the emulator.
        """
        prefix_segments(prefix)
        bucket = self._get_bucket()
        names = self._list_names(prefix)
        if not names:
            return 0
        workers = min(_DELETE_CONCURRENCY, len(names))
        with ThreadPoolExecutor(workers, thread_name_prefix="gcs-delete") as pool:
            results = list(pool.map(self._removed, (bucket.blob(name) for name in names)))
        failures = [result for result in results if isinstance(result, DependencyUnavailable)]
        if failures:
            raise DependencyUnavailable(
                f"{len(failures)} of {len(names)} blobs under {prefix!r} could not be deleted; "
                f"the first: {failures[0].message}",
                dependency=failures[0].dependency,
            ) from failures[0]
        return sum(1 for result in results if result is True)

    def signed_url(
        self, key: str, expires_in_seconds: int, *, filename: str | None = None
    ) -> SignedUrl:
        """A V4 URL valid from the clock's current second for ``expires_in_seconds`` (the
        port's bound, which is V4's); ``filename`` (empty means none) names the download."""
        key_segments(key)
        filename = check_signed_url(expires_in_seconds, filename)
        # V4 URLs are dated to the second; the URL stops working exactly at ``expires_at``.
        issued_at = self._clock.now().astimezone(UTC).replace(microsecond=0)
        signing = self._url_signing()
        with storage_errors("sign a URL for", key):
            url = signing.url(
                self._bucket_name,
                key,
                issued_at=issued_at,
                expires_in_seconds=expires_in_seconds,
                disposition=None if filename is None else inline_disposition(filename),
            )
        return SignedUrl(url=url, expires_at=issued_at + timedelta(seconds=expires_in_seconds))

    # -- administration ---------------------------------------------------------------------------

    def ensure_bucket(self, *, location: str | None = None) -> bool:
        """Create the bucket unless it exists; True when this call created it. For setting up
        development and test environments; the service itself never creates buckets."""
        client = self._data_client()
        with storage_errors("create the bucket", self._bucket_name):
            try:
                client.get_bucket(self._bucket_name, timeout=self._timeout, retry=self._retry)
                return False
            except NotFound:
                pass
            try:
                client.create_bucket(
                    self._bucket_name,
                    project=self._project,
                    location=location,
                    timeout=self._timeout,
                    retry=self._retry,
                )
            except Conflict:
                return False
        return True

    # -- the client -------------------------------------------------------------------------------

    def _blob(self, key: str) -> Any:
        return self._get_bucket().blob(key)

    def _get_bucket(self) -> Any:
        bucket = self._bucket
        if bucket is None:
            # Names a bucket without asking the server about it.
            bucket = self._bucket = self._data_client().bucket(self._bucket_name)
        return bucket

    def _data_client(self) -> Any:
        if self._client is None:
            with self._lock, storage_errors("reach the bucket", self._bucket_name):
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def _url_signing(self) -> GcsUrlSigning:
        if self._signing is None:
            with self._lock, storage_errors("sign URLs for the bucket", self._bucket_name):
                if self._signing is None:
                    self._signing = self._make_signing()
        return self._signing

    def _make_client(self) -> Any:
        if self._emulator_host is not None:
            return storage.Client(
                project=self._project or "imgproc-emulator",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": self._emulator_host},
            )
        credentials: Any = self._key_credentials
        project = self._project
        if credentials is not None:
            project = project or credentials.project_id
        else:
            credentials, default_project = self._application_default_credentials()
            project = project or default_project
        return storage.Client(project=project, credentials=credentials)

    def _make_signing(self) -> GcsUrlSigning:
        if self._emulator_host is not None:
            if self._key_credentials is not None:
                return CredentialsUrlSigning(
                    self._key_credentials, api_endpoint=self._emulator_host
                )
            return EmulatorDownloadUrls(self._emulator_host)
        if self._key_credentials is not None:
            return CredentialsUrlSigning(self._key_credentials)
        credentials, _ = self._application_default_credentials()
        return CredentialsUrlSigning(credentials)

    def _application_default_credentials(self) -> tuple[Any, str | None]:
        # Looked up once (it may ask the metadata server), for the client and the signing alike;
        # the caller holds the lock.
        if self._default_credentials is None:
            self._default_credentials = google.auth.default(scopes=_SCOPES)
        return self._default_credentials

    # -- deleting ---------------------------------------------------------------------------------

    def _list_names(self, prefix: str) -> list[str]:
        client = self._data_client()
        with storage_errors("list", prefix):
            blobs: Iterable[Any] = client.list_blobs(
                self._bucket_name,
                prefix=prefix,
                page_size=self._list_page_size,
                fields="items(name),nextPageToken",
                timeout=self._timeout,
                retry=self._retry,
            )
            return [blob.name for blob in blobs]

    def _delete_one(self, blob: Any) -> bool:
        """True when the blob was there and is gone; False when it was not there."""
        with storage_errors("delete", blob.name):
            try:
                blob.delete(timeout=self._timeout, retry=self._retry)
            except NotFound:
                return False
        return True

    def _removed(self, blob: Any) -> bool | DependencyUnavailable:
        try:
            return self._delete_one(blob)
        except DependencyUnavailable as exc:
            return exc


def _emulator_endpoint(host: str | None) -> str | None:
    if host is None:
        return None
    host = host.strip().rstrip("/")
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def _service_account_credentials(path: Path) -> service_account.Credentials:
    try:
        from_file = service_account.Credentials.from_service_account_file
        credentials: service_account.Credentials = from_file(  # type: ignore[no-untyped-call]
            str(path), scopes=_SCOPES
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"the GCS credentials file {str(path)!r} is not a readable service-account key: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return credentials
