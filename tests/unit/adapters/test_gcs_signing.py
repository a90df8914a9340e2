"""GcsBlobStorage's signed URLs, checked without a network.

The V4 signature is verified here with the public key over a canonical request and a string to
sign rebuilt from Google's documented V4 process, independently of how the adapter (and the
client library under it) builds them. Emulators check no signature, so this is where signing is
really tested.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import google.auth
import google.auth.credentials
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from google.auth.exceptions import TransportError
from google.cloud.storage import _signing

from imgproc_core.adapters.gcs import (
    CredentialsUrlSigning,
    GcsBlobStorage,
    inline_disposition,
)
from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.ports.storage import MAX_URL_TTL_SECONDS
from tests.support.gcs import ServiceAccountKey, write_service_account_key

BUCKET = "imgproc-blobs"
KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.jpg"
START = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
EMULATOR = "http://127.0.0.1:24443"
IAM_ACCOUNT = "imgproc-api@imgproc-prod.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def service_account_key(tmp_path_factory: pytest.TempPathFactory) -> ServiceAccountKey:
    return write_service_account_key(tmp_path_factory.mktemp("service-account"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(autouse=True)
def no_emulator_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The library, and so the storage, would take it for an emulator.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)


@pytest.fixture
def storage(service_account_key: ServiceAccountKey, clock: ManualClock) -> GcsBlobStorage:
    # A client without a single attribute: signing with a key must not touch the network.
    return GcsBlobStorage(
        BUCKET,
        credentials_file=service_account_key.file,
        client=mock.Mock(spec=[]),
        clock=clock,
    )


# -- the V4 process, rebuilt -----------------------------------------------------------------------


def query_of(url: str) -> dict[str, str]:
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)
    query = dict(pairs)
    assert len(query) == len(pairs), f"a parameter appears twice in {url}"
    return query


def string_to_sign(url: str, *, path: str | None = None, **changed: str) -> str:
    """The V4 string to sign for the GET of ``url`` (with ``path`` or parameters changed),
    rebuilt from Google's description of the process."""
    parts = urlsplit(url)
    query = query_of(url)
    del query["X-Goog-Signature"]
    query.update(changed)
    canonical_query = "&".join(
        sorted(f"{quote(name, safe='~')}={quote(value, safe='~')}" for name, value in query.items())
    )
    canonical_request = "\n".join(
        [
            "GET",
            path if path is not None else parts.path,
            canonical_query,
            f"host:{parts.netloc}\n",
            "host",
            "UNSIGNED-PAYLOAD",
        ]
    )
    timestamp = query["X-Goog-Date"]
    return "\n".join(
        [
            "GOOG4-RSA-SHA256",
            timestamp,
            f"{timestamp[:8]}/auto/storage/goog4_request",
            hashlib.sha256(canonical_request.encode("ascii")).hexdigest(),
        ]
    )


def signature_of(url: str) -> bytes:
    signature = query_of(url)["X-Goog-Signature"]
    assert signature == signature.lower()
    return bytes.fromhex(signature)


def verifies(key: ServiceAccountKey, url: str, *, path: str | None = None, **changed: str) -> bool:
    message = string_to_sign(url, path=path, **changed).encode("ascii")
    try:
        key.public_key.verify(signature_of(url), message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


# -- signing with a service-account key ----------------------------------------------------------


def test_the_url_is_a_v4_url_for_the_object_signed_by_the_account(
    storage: GcsBlobStorage, service_account_key: ServiceAccountKey
) -> None:
    signed = storage.signed_url(KEY, 300)

    parts = urlsplit(signed.url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "storage.googleapis.com",
        f"/{BUCKET}/{KEY}",
    )
    query = query_of(signed.url)
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Credential"] == (
        f"{service_account_key.email}/20260304/auto/storage/goog4_request"
    )
    assert query["X-Goog-Date"] == "20260304T050607Z"
    assert query["X-Goog-Expires"] == "300"
    assert query["X-Goog-SignedHeaders"] == "host"
    assert len(signature_of(signed.url)) == 256  # one RSA-2048 signature
    assert signed.expires_at == START + timedelta(seconds=300)


@pytest.mark.parametrize("expires_in", [1, 300, 86_400, MAX_URL_TTL_SECONDS])
def test_x_goog_expires_is_the_requested_lifetime_up_to_seven_days(
    storage: GcsBlobStorage, service_account_key: ServiceAccountKey, expires_in: int
) -> None:
    signed = storage.signed_url(KEY, expires_in)

    assert int(query_of(signed.url)["X-Goog-Expires"]) == expires_in <= 604_800
    assert signed.expires_at == START + timedelta(seconds=expires_in)
    assert verifies(service_account_key, signed.url)


@pytest.mark.parametrize("filename", [None, "holiday.jpg", 'été "x"\\y.jpg', "a;b=c&d.png"])
def test_the_signature_verifies_over_the_canonical_request(
    storage: GcsBlobStorage, service_account_key: ServiceAccountKey, filename: str | None
) -> None:
    signed = storage.signed_url(KEY, 600, filename=filename)

    assert verifies(service_account_key, signed.url)
    disposition = query_of(signed.url).get("response-content-disposition")
    assert disposition == (inline_disposition(filename) if filename else None)


def test_a_tampered_url_no_longer_verifies(
    storage: GcsBlobStorage, service_account_key: ServiceAccountKey
) -> None:
    signed = storage.signed_url(KEY, 300, filename="holiday.jpg")
    assert verifies(service_account_key, signed.url)

    other_user = "/" + BUCKET + "/ffffffffffffffffffffffffffffffff/" + KEY.split("/")[1]
    assert not verifies(service_account_key, signed.url, path=other_user)
    assert not verifies(service_account_key, signed.url, path=f"/other-bucket/{KEY}")
    assert not verifies(service_account_key, signed.url, **{"X-Goog-Expires": "604800"})
    assert not verifies(service_account_key, signed.url, **{"X-Goog-Date": "20260305T050607Z"})
    assert not verifies(
        service_account_key,
        signed.url,
        **{"response-content-disposition": inline_disposition("evil.html")},
    )


def test_a_url_for_another_key_has_another_signature(
    storage: GcsBlobStorage, service_account_key: ServiceAccountKey
) -> None:
    first = storage.signed_url(KEY, 300)
    second = storage.signed_url(KEY.replace(".jpg", ".png"), 300)

    assert signature_of(first.url) != signature_of(second.url)
    assert verifies(service_account_key, second.url)


def test_the_url_is_dated_by_the_clock_to_the_second(
    storage: GcsBlobStorage, service_account_key: ServiceAccountKey, clock: ManualClock
) -> None:
    clock.advance(timedelta(days=1, seconds=3, microseconds=999_999))

    signed = storage.signed_url(KEY, 60)

    query = query_of(signed.url)
    assert query["X-Goog-Date"] == "20260305T050610Z"
    assert query["X-Goog-Credential"].split("/")[1] == "20260305"
    # Google honours the URL from X-Goog-Date for X-Goog-Expires seconds: that is expires_at.
    assert signed.expires_at == datetime(2026, 3, 5, 5, 7, 10, tzinfo=UTC)
    assert verifies(service_account_key, signed.url)


@pytest.mark.parametrize("expires_in", [MAX_URL_TTL_SECONDS + 1, 10**9, 0, -1])
def test_a_lifetime_outside_one_second_to_seven_days_is_refused(
    storage: GcsBlobStorage, expires_in: int
) -> None:
    with pytest.raises(ValueError, match="604800"):
        storage.signed_url(KEY, expires_in)


@pytest.mark.parametrize("expires_in", [True, 1.5, "300"])
def test_a_lifetime_that_is_not_an_int_is_refused(storage: GcsBlobStorage, expires_in: Any) -> None:
    with pytest.raises(ValueError, match="int"):
        storage.signed_url(KEY, expires_in)


@pytest.mark.parametrize("key", ["../etc/passwd", "/u1/a.jpg", "u1//a.jpg", "u1/a b.jpg"])
def test_no_url_is_signed_for_a_hostile_key(storage: GcsBlobStorage, key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        storage.signed_url(key, 60)


def test_a_key_file_that_is_not_a_service_account_key_is_refused(
    tmp_path: Path, clock: ManualClock
) -> None:
    broken = tmp_path / "key.json"
    broken.write_text('{"type": "service_account", "client_email": "x@y"}')
    with pytest.raises(ValueError, match="service-account key"):
        GcsBlobStorage(BUCKET, credentials_file=broken, clock=clock)
    with pytest.raises(ValueError, match="service-account key"):
        GcsBlobStorage(BUCKET, credentials_file=tmp_path / "missing.json", clock=clock)


# -- content disposition ---------------------------------------------------------------------------


def test_a_plain_filename_is_quoted_as_it_is() -> None:
    assert inline_disposition("holiday.jpg") == 'inline; filename="holiday.jpg"'


def test_other_filenames_get_a_plain_fallback_and_an_rfc_6266_form() -> None:
    value = inline_disposition('été "1"\\\r\n.jpg')

    plain, extended = value.removeprefix('inline; filename="').split('"; filename*=')
    assert plain == "_t_ _1____.jpg"
    assert extended.startswith("UTF-8''")
    assert unquote(extended.removeprefix("UTF-8''")) == 'été "1"\\\r\n.jpg'
    assert all(" " < ch <= "~" for ch in extended)


# -- emulators -----------------------------------------------------------------------------------


def test_against_an_emulator_without_a_key_the_url_is_its_download_url(clock: ManualClock) -> None:
    storage = GcsBlobStorage(BUCKET, emulator_host=EMULATOR, client=mock.Mock(spec=[]), clock=clock)

    signed = storage.signed_url(KEY, 300, filename="holiday.jpg")

    assert signed.url.startswith(f"{EMULATOR}/download/storage/v1/b/{BUCKET}/o/{KEY}?")
    query = query_of(signed.url)
    assert query == {
        "alt": "media",
        "X-Goog-Date": "20260304T050607Z",
        "X-Goog-Expires": "300",
        "response-content-disposition": 'inline; filename="holiday.jpg"',
    }
    assert signed.expires_at == START + timedelta(seconds=300)


def test_against_an_emulator_with_a_key_the_url_is_signed_for_the_emulator(
    service_account_key: ServiceAccountKey, clock: ManualClock
) -> None:
    storage = GcsBlobStorage(
        BUCKET,
        emulator_host="127.0.0.1:24443",
        credentials_file=service_account_key.file,
        client=mock.Mock(spec=[]),
        clock=clock,
    )

    signed = storage.signed_url(KEY, 300)

    assert signed.url.startswith(f"{EMULATOR}/{BUCKET}/{KEY}?")
    assert query_of(signed.url)["X-Goog-Expires"] == "300"
    assert verifies(service_account_key, signed.url)


# -- signing through IAM signBlob ------------------------------------------------------------------


class TokenOnlyCredentials(google.auth.credentials.Credentials):
    """What Compute Engine, Cloud Run or GKE give a service: an access token, no key. Like the
    real ones, the account is called ``default`` until a refresh names it."""

    def __init__(self, account: str | None = IAM_ACCOUNT, token: str | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._account = account
        self.service_account_email = "default" if account else None
        self.token = token
        self.refreshes = 0

    def refresh(self, request: Any) -> None:
        self.refreshes += 1
        self.token = f"ya29.token-{self.refreshes}"
        if self._account is not None:
            self.service_account_email = self._account
        self.expiry = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)


#: What IAM would answer: a signature, base64-encoded. The adapter cannot check it; it must put
#: it into the URL in hexadecimal.
IAM_SIGNATURE = bytes(range(256))


@pytest.fixture
def sign_blob() -> Iterator[mock.Mock]:
    """The IAM signBlob call, which no fake can stand in for."""
    answer = base64.b64encode(IAM_SIGNATURE).decode("ascii")
    with mock.patch.object(_signing, "_sign_message", return_value=answer) as patched:
        yield patched


def test_credentials_without_a_key_sign_through_iam_as_their_account(
    sign_blob: mock.Mock, clock: ManualClock
) -> None:
    credentials = TokenOnlyCredentials()
    storage = GcsBlobStorage(
        BUCKET, signing=CredentialsUrlSigning(credentials), client=mock.Mock(spec=[]), clock=clock
    )

    signed = storage.signed_url(KEY, 900, filename="holiday.jpg")

    sign_blob.assert_called_once()
    message, token, account, universe = sign_blob.call_args.args
    assert message == string_to_sign(signed.url)
    assert (token, account, universe) == ("ya29.token-1", IAM_ACCOUNT, "googleapis.com")
    assert credentials.refreshes == 1
    query = query_of(signed.url)
    assert query["X-Goog-Credential"] == f"{IAM_ACCOUNT}/20260304/auto/storage/goog4_request"
    assert query["X-Goog-Expires"] == "900"
    assert signature_of(signed.url) == IAM_SIGNATURE


def test_a_valid_token_is_used_without_a_refresh(sign_blob: mock.Mock, clock: ManualClock) -> None:
    credentials = TokenOnlyCredentials()
    credentials.refresh(None)
    signing = CredentialsUrlSigning(credentials)
    storage = GcsBlobStorage(BUCKET, signing=signing, client=mock.Mock(spec=[]), clock=clock)

    storage.signed_url(KEY, 60)
    storage.signed_url(KEY, 60)

    assert credentials.refreshes == 1
    assert [call.args[1] for call in sign_blob.call_args_list] == ["ya29.token-1"] * 2
    assert not signing.signs_locally


def test_application_default_credentials_without_a_key_choose_iam(
    sign_blob: mock.Mock, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = TokenOnlyCredentials()
    found = mock.Mock(return_value=(credentials, "imgproc-prod"))
    monkeypatch.setattr(google.auth, "default", found)
    storage = GcsBlobStorage(BUCKET, client=mock.Mock(spec=[]), clock=clock)

    signed = storage.signed_url(KEY, 120)

    found.assert_called_once()
    sign_blob.assert_called_once()
    assert sign_blob.call_args.args[2] == IAM_ACCOUNT
    assert urlsplit(signed.url).netloc == "storage.googleapis.com"


def test_a_service_account_key_never_calls_iam(
    sign_blob: mock.Mock, storage: GcsBlobStorage, service_account_key: ServiceAccountKey
) -> None:
    signed = storage.signed_url(KEY, 60)

    sign_blob.assert_not_called()
    assert verifies(service_account_key, signed.url)


def test_credentials_of_no_service_account_cannot_sign(
    sign_blob: mock.Mock, clock: ManualClock
) -> None:
    user_credentials = TokenOnlyCredentials(account=None)
    storage = GcsBlobStorage(
        BUCKET,
        signing=CredentialsUrlSigning(user_credentials),
        client=mock.Mock(spec=[]),
        clock=clock,
    )

    with pytest.raises(DependencyUnavailable, match="service account") as raised:
        storage.signed_url(KEY, 60)
    assert raised.value.dependency == "storage"
    sign_blob.assert_not_called()


def test_a_failing_iam_call_is_dependency_unavailable(
    sign_blob: mock.Mock, clock: ManualClock
) -> None:
    failure = TransportError("Error calling the IAM signBytes API: 503")  # type: ignore[no-untyped-call]
    sign_blob.side_effect = failure
    storage = GcsBlobStorage(
        BUCKET,
        signing=CredentialsUrlSigning(TokenOnlyCredentials()),
        client=mock.Mock(spec=[]),
        clock=clock,
    )

    with pytest.raises(DependencyUnavailable, match="IAM signBytes") as raised:
        storage.signed_url(KEY, 60)
    assert raised.value.dependency == "storage"
    assert isinstance(raised.value.__cause__, TransportError)
