"""GcsBlobStorage turns every failure of the client library into a domain error.

These failures (a 503, retries given up, a token that cannot be refreshed, a corrupt download)
are what an emulator cannot be made to produce on demand, so the client here is a ``Mock`` that
raises what the library raises. A refused connection is tested for real in the integration
tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
import requests
from google.api_core import exceptions as api
from google.auth.exceptions import RefreshError, TransportError
from google.cloud.storage.exceptions import DataCorruption

from imgproc_core.adapters.gcs import GcsBlobStorage
from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import BlobNotFound, DependencyUnavailable

KEY = "u1/a.jpg"


def made(kind: type[BaseException], *args: object) -> BaseException:
    """An instance of one of the library's exceptions, whose constructors carry no types."""
    return kind(*args)


def failures() -> list[Any]:
    """What the library raises when Cloud Storage, or the way to it, is not usable."""
    return [
        pytest.param(made(api.ServiceUnavailable, "backend unavailable"), id="503"),
        pytest.param(made(api.InternalServerError, "backend error"), id="500"),
        pytest.param(made(api.TooManyRequests, "rate limit exceeded"), id="429"),
        pytest.param(made(api.Forbidden, "caller lacks storage.objects.get"), id="403"),
        pytest.param(
            made(api.RetryError, "Timeout of 3.0s exceeded", requests.ConnectionError("refused")),
            id="retries-given-up",
        ),
        pytest.param(requests.ConnectionError("connection refused"), id="connection"),
        pytest.param(requests.Timeout("read timed out"), id="timeout"),
        pytest.param(made(TransportError, "metadata server unreachable"), id="auth-transport"),
        pytest.param(made(RefreshError, "invalid_grant"), id="auth-refresh"),
        pytest.param(DataCorruption(None, "checksum mismatch"), id="corrupt-download"),
    ]


class FakeBucket:
    """A bucket of ``Mock`` blobs that each raise ``error`` on every call, if given."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.blobs: dict[str, mock.Mock] = {}

    def blob(self, name: str) -> mock.Mock:
        if name not in self.blobs:
            blob = mock.Mock(name=name)
            blob.name = name
            for method in ("upload_from_string", "download_as_bytes", "exists", "delete"):
                getattr(blob, method).side_effect = self.error
            self.blobs[name] = blob
        return self.blobs[name]


def storage_on(bucket: FakeBucket, **client_calls: Any) -> GcsBlobStorage:
    client = mock.Mock(name="client")
    client.bucket.return_value = bucket
    for name, behaviour in client_calls.items():
        setattr(client, name, behaviour)
    return GcsBlobStorage("imgproc-blobs", client=client, clock=ManualClock())


OPERATIONS: list[tuple[str, Callable[[GcsBlobStorage], object]]] = [
    ("put", lambda storage: storage.put(KEY, b"x", "image/jpeg")),
    ("get", lambda storage: storage.get(KEY)),
    ("exists", lambda storage: storage.exists(KEY)),
    ("delete", lambda storage: storage.delete(KEY)),
]


@pytest.mark.parametrize("failure", failures())
@pytest.mark.parametrize(("operation", "call"), OPERATIONS, ids=[op for op, _ in OPERATIONS])
def test_every_failure_of_the_library_is_dependency_unavailable(
    failure: BaseException, operation: str, call: Callable[[GcsBlobStorage], object]
) -> None:
    storage = storage_on(FakeBucket(failure))

    with pytest.raises(DependencyUnavailable) as raised:
        call(storage)

    assert raised.value.dependency == "storage"
    assert raised.value.__cause__ is failure
    assert KEY in raised.value.message
    assert type(failure).__name__ in raised.value.message


def test_retries_given_up_name_the_failure_they_retried() -> None:
    failure = made(api.RetryError, "Timeout of 3.0s exceeded", None)
    try:
        raise failure from requests.ConnectionError("Connection refused")
    except api.RetryError:
        pass
    storage = storage_on(FakeBucket(failure))

    with pytest.raises(DependencyUnavailable, match=r"RetryError.*ConnectionError.*refused"):
        storage.get(KEY)


def test_a_missing_object_is_blob_not_found_when_read() -> None:
    storage = storage_on(FakeBucket(made(api.NotFound, "No such object: imgproc-blobs/u1/a.jpg")))

    with pytest.raises(BlobNotFound, match=r"u1/a\.jpg"):
        storage.get(KEY)
    assert storage.exists(KEY) is False
    storage.delete(KEY)


def test_a_404_on_write_means_the_bucket_is_missing_not_the_blob() -> None:
    storage = storage_on(FakeBucket(made(api.NotFound, "The specified bucket does not exist.")))

    with pytest.raises(DependencyUnavailable, match="bucket does not exist"):
        storage.put(KEY, b"x", "image/jpeg")


def listed(*names: str) -> mock.Mock:
    blobs = []
    for name in names:
        blob = mock.Mock()
        blob.name = name
        blobs.append(blob)
    return mock.Mock(return_value=blobs)


def test_delete_prefix_counts_what_it_removed_not_what_vanished_meanwhile() -> None:
    bucket = FakeBucket()
    storage = storage_on(bucket, list_blobs=listed("u1/a.jpg", "u1/b.jpg", "u1/c/d.png"))
    bucket.blob("u1/b.jpg").delete.side_effect = made(api.NotFound, "No such object")

    assert storage.delete_prefix("u1/") == 2
    assert all(blob.delete.call_count == 1 for blob in bucket.blobs.values())


def test_delete_prefix_tries_every_blob_and_then_reports_the_failures() -> None:
    bucket = FakeBucket()
    storage = storage_on(bucket, list_blobs=listed("u1/a.jpg", "u1/b.jpg", "u1/c.jpg"))
    failure = made(api.ServiceUnavailable, "backend unavailable")
    bucket.blob("u1/b.jpg").delete.side_effect = failure

    with pytest.raises(DependencyUnavailable, match=r"1 of 3 blobs under 'u1/'") as raised:
        storage.delete_prefix("u1/")

    assert raised.value.dependency == "storage"
    assert raised.value.__cause__ is not None
    assert raised.value.__cause__.__cause__ is failure
    assert all(blob.delete.call_count == 1 for blob in bucket.blobs.values())


@pytest.mark.parametrize("failure", failures())
def test_a_listing_that_fails_is_dependency_unavailable(failure: BaseException) -> None:
    storage = storage_on(FakeBucket(), list_blobs=mock.Mock(side_effect=failure))

    with pytest.raises(DependencyUnavailable) as raised:
        storage.delete_prefix("u1/")
    assert raised.value.__cause__ is failure


def test_credentials_that_cannot_be_found_are_dependency_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    missing = made(DefaultCredentialsError, "Your default credentials were not found.")
    monkeypatch.setattr(google.auth, "default", mock.Mock(side_effect=missing))
    storage = GcsBlobStorage("imgproc-blobs", clock=ManualClock())

    with pytest.raises(DependencyUnavailable, match="default credentials were not found"):
        storage.get(KEY)
    with pytest.raises(DependencyUnavailable, match="default credentials were not found"):
        storage.signed_url(KEY, 60)


def test_keys_are_checked_before_any_call() -> None:
    client = mock.Mock(spec=[])
    storage = GcsBlobStorage("imgproc-blobs", client=client, clock=ManualClock())

    for call in (
        lambda: storage.put("../x", b"x", "image/jpeg"),
        lambda: storage.get("u1/../x"),
        lambda: storage.exists("/u1/a"),
        lambda: storage.delete("u1//a"),
        lambda: storage.delete_prefix("u1"),
    ):
        with pytest.raises(ValueError, match=r"blob (key|prefix)"):
            call()
