"""URLs that read one blob until they expire: Google's V4 signed URLs, or the emulator's own.

A V4 URL is valid from its ``X-Goog-Date`` for ``X-Goog-Expires`` seconds. Both come from the
storage's clock (not the library's), so the ``expires_at`` the storage reports is exactly when
Google stops honouring the URL, and tests that move a clock see URLs move with it.

Two ways to sign, chosen by the credentials at hand:

- credentials that hold a private key (a service-account key file, or impersonated credentials,
  which sign through IAM themselves) sign the string locally;
- credentials that hold only an access token (Compute Engine, Cloud Run, GKE workload identity)
  have the IAM ``signBlob`` API sign it as their service account, which then needs the
  ``iam.serviceAccounts.signBlob`` permission on itself.

Emulators check neither signature nor expiry, so against one without a key
:class:`EmulatorDownloadUrls` gives the emulator's plain download URL, carrying the same
``X-Goog-Date`` and ``X-Goog-Expires`` for the record.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Final, Protocol
from urllib.parse import quote, urlencode

import google.auth.credentials
from google.auth.transport.requests import Request
from google.cloud.storage import _signing

from imgproc_core.domain.errors import DependencyUnavailable

GCS_ENDPOINT: Final = "https://storage.googleapis.com"
GOOGLE_UNIVERSE: Final = "googleapis.com"

_TIMESTAMP_FORMAT: Final = "%Y%m%dT%H%M%SZ"
#: What Compute Engine credentials call their account until the first token refresh names it.
_UNNAMED_ACCOUNT: Final = "default"


class GcsUrlSigning(Protocol):
    """Makes the URL through which ``key`` in ``bucket`` can be read, valid from ``issued_at``
    (UTC, whole seconds) for ``expires_in_seconds``."""

    def url(
        self,
        bucket: str,
        key: str,
        *,
        issued_at: datetime,
        expires_in_seconds: int,
        disposition: str | None = None,
    ) -> str: ...


class CredentialsUrlSigning:
    """V4 signed URLs from Google credentials: with their private key when they have one,
    else through the IAM ``signBlob`` API with their access token (refreshed here when stale).

    The client library makes the ``signBlob`` call with its own default retry policy, which
    keeps retrying transient failures for up to two minutes.
    """

    def __init__(
        self,
        credentials: google.auth.credentials.Credentials,
        *,
        api_endpoint: str = GCS_ENDPOINT,
        universe_domain: str = GOOGLE_UNIVERSE,
    ) -> None:
        self._credentials = credentials
        self._api_endpoint = api_endpoint.rstrip("/")
        self._universe_domain = universe_domain
        self._lock = threading.Lock()

    @property
    def signs_locally(self) -> bool:
        """True when the credentials sign by themselves (no ``signBlob`` call from here)."""
        return isinstance(self._credentials, google.auth.credentials.Signing)

    def url(
        self,
        bucket: str,
        key: str,
        *,
        issued_at: datetime,
        expires_in_seconds: int,
        disposition: str | None = None,
    ) -> str:
        account: str | None = None
        token: str | None = None
        if not self.signs_locally:
            account, token = self._service_account_token()
        # ``Blob.generate_signed_url`` always signs at the library's own "now"; the function
        # behind it also takes the request time, which keeps the URL on the storage's clock.
        # That parameter is private: the unit tests rebuild and verify these URLs, so a library
        # that drops or changes it fails them rather than production.
        url: str = _signing.generate_signed_url_v4(
            self._credentials,
            resource=f"/{bucket}/{quote(key, safe='/~')}",
            expiration=timedelta(seconds=expires_in_seconds),
            api_access_endpoint=self._api_endpoint,
            method="GET",
            response_disposition=disposition,
            service_account_email=account,
            access_token=token,
            universe_domain=self._universe_domain,
            _request_timestamp=issued_at.strftime(_TIMESTAMP_FORMAT),
        )
        return url

    def _service_account_token(self) -> tuple[str, str]:
        credentials = self._credentials
        with self._lock:
            account = getattr(credentials, "service_account_email", None)
            if not credentials.valid or account in {None, _UNNAMED_ACCOUNT}:
                credentials.refresh(Request())  # type: ignore[no-untyped-call]
                account = getattr(credentials, "service_account_email", None)
            token = credentials.token
        if not isinstance(account, str) or account in {"", _UNNAMED_ACCOUNT} or not token:
            raise DependencyUnavailable(
                f"the GCS credentials ({type(credentials).__name__}) can sign no URL: they "
                "hold neither a private key nor a service account's access token; configure "
                "a service-account key file or run as a service account",
                dependency="storage",
            )
        return account, str(token)


class EmulatorDownloadUrls:
    """Unsigned download URLs of a storage emulator, which checks no signature anyway."""

    def __init__(self, emulator_host: str) -> None:
        self._emulator_host = emulator_host.rstrip("/")

    def url(
        self,
        bucket: str,
        key: str,
        *,
        issued_at: datetime,
        expires_in_seconds: int,
        disposition: str | None = None,
    ) -> str:
        query: dict[str, str] = {
            "alt": "media",
            "X-Goog-Date": issued_at.strftime(_TIMESTAMP_FORMAT),
            "X-Goog-Expires": str(expires_in_seconds),
        }
        if disposition is not None:
            query["response-content-disposition"] = disposition
        # The JSON API's download path; the emulators take the object name's slashes as they
        # are, on any host name (the XML-style ``/{bucket}/{key}`` needs the emulator's own).
        return (
            f"{self._emulator_host}/download/storage/v1/b/{quote(bucket, safe='')}/o/"
            f"{quote(key, safe='/')}?{urlencode(query, quote_via=quote)}"
        )


def inline_disposition(filename: str) -> str:
    """``inline; filename="..."`` for a download name, with an RFC 6266 ``filename*`` when the
    name is not plain printable ASCII (the plain one then has ``_`` in place of the rest)."""
    plain = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in filename)
    value = f'inline; filename="{plain}"'
    if plain != filename:
        encoded = quote(filename.encode("utf-8", "replace"), safe="")
        value += f"; filename*=UTF-8''{encoded}"
    return value
