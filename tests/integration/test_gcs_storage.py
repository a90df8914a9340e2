"""GcsBlobStorage against a real storage emulator (fake-gcs-server): large objects, listing
across pages, URLs that download, and a storage that does not answer.

The emulator checks no signature and no expiry; the signing itself is tested at the unit level
(tests/unit/adapters/test_gcs_signing.py).
"""

from __future__ import annotations

import logging
import random
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from imgproc_core.adapters.gcs import GcsBlobStorage
from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import DependencyUnavailable
from tests.support.gcs import gcs_blob_storage, gcs_endpoint, write_service_account_key

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

#: Above the client's 8 MiB limit for one-request uploads: this one goes up resumably.
NINE_MB = 9 * 1024 * 1024


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def storage(request: pytest.FixtureRequest, clock: ManualClock) -> GcsBlobStorage:
    return gcs_blob_storage(request, clock)


def download(url: str) -> tuple[bytes, str | None]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return response.read(), response.headers.get("Content-Type")


def test_a_nine_megabyte_blob_round_trips(storage: GcsBlobStorage) -> None:
    data = random.Random(9).randbytes(NINE_MB)

    started = time.perf_counter()
    storage.put("u1/large.png", data, "image/png")
    stored = time.perf_counter()
    read = storage.get("u1/large.png")
    log.info("9 MB: put %.3fs, get %.3fs", stored - started, time.perf_counter() - stored)

    assert read == data
    assert storage.exists("u1/large.png")
    storage.put("u1/large.png", data[:1000], "image/png")
    assert storage.get("u1/large.png") == data[:1000]


def test_delete_prefix_removes_every_page_of_a_long_listing(
    request: pytest.FixtureRequest, clock: ManualClock
) -> None:
    # Pages of 50 make 120 blobs take three listing requests.
    storage = gcs_blob_storage(request, clock, list_page_size=50)
    doomed = [f"u1/img/d{n:03d}.webp" for n in range(120)]
    kept = ["u1/img.jpg", "u1/img2/d000.webp", "u1/imgx.webp", "u10/img/d000.webp"]
    for key in doomed + kept:
        storage.put(key, key.encode(), "image/webp")

    started = time.perf_counter()
    removed = storage.delete_prefix("u1/img/")
    log.info("delete_prefix of 120 blobs: %.3fs", time.perf_counter() - started)

    assert removed == 120
    assert [key for key in doomed if storage.exists(key)] == []
    assert [storage.get(key) for key in kept] == [key.encode() for key in kept]
    assert storage.delete_prefix("u1/img/") == 0


def test_the_emulator_url_downloads_the_bytes(storage: GcsBlobStorage) -> None:
    data = bytes(range(256)) * 100
    storage.put("u1/photo.jpg", data, "image/jpeg")

    plain = storage.signed_url("u1/photo.jpg", 300)
    named = storage.signed_url("u1/photo.jpg", 300, filename="holiday été.jpg")

    assert "X-Goog-Signature" not in plain.url
    assert download(plain.url) == (data, "image/jpeg")
    assert download(named.url) == (data, "image/jpeg")


def test_a_v4_url_signed_with_a_key_downloads_from_the_emulator(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> None:
    key = write_service_account_key(tmp_path)
    storage = gcs_blob_storage(request, clock, credentials_file=key.file)
    storage.put("u1/photo.webp", b"RIFF....WEBP", "image/webp")

    signed = storage.signed_url("u1/photo.webp", 600, filename="photo.webp")

    assert "X-Goog-Signature=" in signed.url
    assert signed.url.startswith(f"{gcs_endpoint()}/{storage.bucket_name}/u1/photo.webp?")
    assert download(signed.url) == (b"RIFF....WEBP", "image/webp")


def test_a_bucket_that_does_not_exist_is_a_broken_storage_not_a_missing_blob(
    clock: ManualClock,
) -> None:
    storage = GcsBlobStorage("imgproc-t-never-created", emulator_host=gcs_endpoint(), clock=clock)

    with pytest.raises(DependencyUnavailable, match="imgproc-t-never-created"):
        storage.put("u1/a.jpg", b"x", "image/jpeg")
    with pytest.raises(DependencyUnavailable):
        storage.delete_prefix("u1/")


def test_ensure_bucket_creates_once(request: pytest.FixtureRequest, clock: ManualClock) -> None:
    storage = gcs_blob_storage(request, clock)  # created here

    assert storage.ensure_bucket() is False
    storage.put("u1/a.jpg", b"a", "image/jpeg")
    assert storage.ensure_bucket() is False
    assert storage.get("u1/a.jpg") == b"a"


# -- a storage that does not answer ----------------------------------------------------------


def closed_port() -> int:
    """A local port on which nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


CALLS: list[tuple[str, Callable[[GcsBlobStorage], object]]] = [
    ("put", lambda storage: storage.put("u1/a.jpg", b"x", "image/jpeg")),
    ("get", lambda storage: storage.get("u1/a.jpg")),
    ("exists", lambda storage: storage.exists("u1/a.jpg")),
    ("delete", lambda storage: storage.delete("u1/a.jpg")),
    ("delete_prefix", lambda storage: storage.delete_prefix("u1/")),
    ("ensure_bucket", lambda storage: storage.ensure_bucket()),
]


def test_a_storage_that_does_not_answer_fails_fast_with_default_settings(
    clock: ManualClock,
) -> None:
    storage = GcsBlobStorage(
        "imgproc-down", emulator_host=f"http://127.0.0.1:{closed_port()}", clock=clock
    )

    started = time.perf_counter()
    with pytest.raises(DependencyUnavailable) as raised:
        storage.get("u1/a.jpg")
    log.info(
        "get from a closed port: DependencyUnavailable after %.2fs: %s",
        time.perf_counter() - started,
        raised.value.message,
    )

    assert raised.value.dependency == "storage"
    assert "Connection" in raised.value.message


@pytest.mark.parametrize(("operation", "call"), CALLS, ids=[name for name, _ in CALLS])
def test_every_call_to_a_storage_that_does_not_answer_is_dependency_unavailable(
    clock: ManualClock, operation: str, call: Callable[[GcsBlobStorage], object]
) -> None:
    # A short retry budget keeps this quick; the test above measures the default one.
    storage = GcsBlobStorage(
        "imgproc-down",
        emulator_host=f"http://127.0.0.1:{closed_port()}",
        clock=clock,
        retry_deadline_seconds=0.5,
    )

    started = time.perf_counter()
    with pytest.raises(DependencyUnavailable) as raised:
        call(storage)
    log.info("%s from a closed port: %.2fs", operation, time.perf_counter() - started)

    assert raised.value.dependency == "storage"
    assert raised.value.__cause__ is not None
    # Signing needs no server: URLs are still made while the storage is down.
    assert storage.signed_url("u1/a.jpg", 60).url.startswith("http://127.0.0.1:")
