"""Contract of BlobStorage, run against every implementation in IMPLEMENTATIONS.

Signed URLs take their expiry from the injected clock, so the expected expiry is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from imgproc_core.adapters.memory import InMemoryBlobStorage, ManualClock
from imgproc_core.domain.errors import BlobNotFound
from imgproc_core.ports.storage import MAX_URL_TTL_SECONDS, BlobStorage, check_signed_url
from tests.support.gcs import gcs_blob_storage
from tests.support.local_storage import make_local_blob_storage

Implementation = Callable[[pytest.FixtureRequest, ManualClock], BlobStorage]


def _memory(request: pytest.FixtureRequest, clock: ManualClock) -> BlobStorage:
    return InMemoryBlobStorage(clock=clock)


def _local(request: pytest.FixtureRequest, clock: ManualClock) -> BlobStorage:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return make_local_blob_storage(tmp_path, clock)


IMPLEMENTATIONS = [
    pytest.param(_memory, id="memory"),
    pytest.param(_local, id="local"),
    pytest.param(gcs_blob_storage, id="gcs", marks=pytest.mark.integration),
]

#: Keys that could climb out of a storage root or mean different things to different backends.
HOSTILE_KEYS = [
    "",
    "/etc/passwd",
    "../secret",
    "user/../../secret",
    "user/..",
    "..",
    ".",
    "user/./image.jpg",
    "user//image.jpg",
    "user/",
    "user\\image.jpg",
    "..\\secret",
    "user/image\x00.jpg",
    "user/image\n.jpg",
    "a" * 1025,
    "user/\ud800.jpg",
]

EVERY_BYTE = bytes(range(256)) * 4


@pytest.fixture(params=IMPLEMENTATIONS)
def storage(request: pytest.FixtureRequest, clock: ManualClock) -> BlobStorage:
    implementation: Implementation = request.param
    return implementation(request, clock)


def test_put_then_get_returns_the_same_bytes(storage: BlobStorage) -> None:
    storage.put("u1/original.jpg", EVERY_BYTE, "image/jpeg")
    storage.put("u1/empty.png", b"", "image/png")

    assert storage.get("u1/original.jpg") == EVERY_BYTE
    assert storage.get("u1/empty.png") == b""
    assert storage.exists("u1/original.jpg")
    assert storage.exists("u1/empty.png")


def test_keys_of_letters_digits_dots_dashes_and_underscores_round_trip(
    storage: BlobStorage,
) -> None:
    keys = ["u1/.hidden", "u1/..x", "U-1/a_b.C-d.png", "u1/0123abcd/ef.avif"]
    for n, key in enumerate(keys):
        storage.put(key, bytes([n]), "application/octet-stream")
    for n, key in enumerate(keys):
        assert storage.get(key) == bytes([n])


@pytest.mark.parametrize("key", ["u1/été.jpg", "u1/a b.png", "u1/a+b=c&d.png", "u1/%41.gif"])
def test_keys_outside_the_one_key_alphabet_are_refused_everywhere(
    storage: BlobStorage, key: str
) -> None:
    with pytest.raises(ValueError, match="key"):
        storage.put(key, b"x", "application/octet-stream")


def test_put_replaces_what_was_there(storage: BlobStorage) -> None:
    storage.put("u1/a.jpg", b"first version", "image/jpeg")
    storage.put("u1/a.jpg", b"second", "image/png")
    assert storage.get("u1/a.jpg") == b"second"


def test_a_missing_key_is_blob_not_found(storage: BlobStorage) -> None:
    storage.put("u1/a.jpg", b"x", "image/jpeg")
    assert not storage.exists("u1/b.jpg")
    with pytest.raises(BlobNotFound):
        storage.get("u1/b.jpg")
    with pytest.raises(BlobNotFound):
        storage.get("u1")


def test_delete_removes_one_key(storage: BlobStorage) -> None:
    storage.put("u1/a.jpg", b"a", "image/jpeg")
    storage.put("u1/b.jpg", b"b", "image/jpeg")

    storage.delete("u1/a.jpg")

    assert not storage.exists("u1/a.jpg")
    assert storage.get("u1/b.jpg") == b"b"
    with pytest.raises(BlobNotFound):
        storage.get("u1/a.jpg")


def test_deleting_a_missing_key_is_not_an_error(storage: BlobStorage) -> None:
    storage.delete("u1/never-written.jpg")
    storage.put("u1/a.jpg", b"a", "image/jpeg")
    storage.delete("u1/a.jpg")
    storage.delete("u1/a.jpg")
    assert not storage.exists("u1/a.jpg")


def test_delete_prefix_removes_only_what_is_under_the_prefix(storage: BlobStorage) -> None:
    doomed = ["u1/src/d1.webp", "u1/src/d2.png", "u1/src/deeper/d3.jpg"]
    kept = ["u1/src.jpg", "u1/src2/d.webp", "u1/other/d.webp", "u10/src/d.webp", "u1x/src/a"]
    for key in doomed + kept:
        storage.put(key, key.encode(), "application/octet-stream")

    removed = storage.delete_prefix("u1/src/")

    assert removed == len(doomed)
    assert [key for key in doomed if storage.exists(key)] == []
    assert [storage.get(key) for key in kept] == [key.encode() for key in kept]


def test_delete_prefix_of_a_whole_user_and_of_nothing(storage: BlobStorage) -> None:
    for key in ["u1/a.jpg", "u1/a/b.webp", "u10/a.jpg"]:
        storage.put(key, b"x", "image/jpeg")

    assert storage.delete_prefix("u1/") == 2
    assert storage.delete_prefix("u1/") == 0
    assert storage.delete_prefix("nobody/") == 0
    assert storage.exists("u10/a.jpg")


@pytest.mark.parametrize("prefix", ["", "/", "u1", "../", "u1//", "/u1/", "u1/../", "u1\\"])
def test_delete_prefix_refuses_what_is_not_a_folder_of_keys(
    storage: BlobStorage, prefix: str
) -> None:
    storage.put("u1/a.jpg", b"x", "image/jpeg")
    storage.put("u10/a.jpg", b"x", "image/jpeg")
    with pytest.raises(ValueError, match=r"."):
        storage.delete_prefix(prefix)
    assert storage.exists("u1/a.jpg")
    assert storage.exists("u10/a.jpg")


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
def test_hostile_keys_are_refused_everywhere(storage: BlobStorage, key: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: storage.put(key, b"x", "image/jpeg"),
        lambda: storage.get(key),
        lambda: storage.exists(key),
        lambda: storage.delete(key),
        lambda: storage.signed_url(key, 60),
    ]
    for operation in operations:
        with pytest.raises(ValueError, match=r"."):
            operation()


def test_a_signed_url_names_the_key_and_expires_by_the_clock(
    storage: BlobStorage, clock: ManualClock
) -> None:
    storage.put("u1/original.jpg", b"x", "image/jpeg")

    signed = storage.signed_url("u1/original.jpg", 300)

    assert "u1/original.jpg" in signed.url
    assert signed.expires_at == clock.now() + timedelta(seconds=300)
    assert signed.expires_at.utcoffset() == timedelta(0)


def test_signed_urls_differ_by_key_and_by_expiry(storage: BlobStorage, clock: ManualClock) -> None:
    storage.put("u1/a.jpg", b"a", "image/jpeg")
    storage.put("u1/b.jpg", b"b", "image/jpeg")

    first = storage.signed_url("u1/a.jpg", 300)
    other_key = storage.signed_url("u1/b.jpg", 300)
    clock.advance(60)
    later = storage.signed_url("u1/a.jpg", 300)

    assert len({first.url, other_key.url, later.url}) == 3
    assert later.expires_at - first.expires_at == timedelta(seconds=60)


def test_a_signed_url_can_name_a_download_filename(storage: BlobStorage) -> None:
    storage.put("u1/a.jpg", b"a", "image/jpeg")

    plain = storage.signed_url("u1/a.jpg", 300)
    named = storage.signed_url("u1/a.jpg", 300, filename="holiday.jpg")

    assert named.url != plain.url
    assert "holiday.jpg" in named.url


#: Lifetimes outside the port's bound, and lifetimes that are not whole seconds at all.
REFUSED_LIFETIMES: list[Any] = [0, -1, MAX_URL_TTL_SECONDS + 1, 10**9, True, 1.5, "300", None]


@pytest.mark.parametrize("expires_in", REFUSED_LIFETIMES, ids=repr)
def test_a_lifetime_outside_the_ports_bound_is_refused_the_same_way(
    storage: BlobStorage, expires_in: Any
) -> None:
    storage.put("u1/a.jpg", b"a", "image/jpeg")
    with pytest.raises(ValueError, match="expires_in_seconds") as expected:
        check_signed_url(expires_in)

    with pytest.raises(ValueError, match="expires_in_seconds") as refused:
        storage.signed_url("u1/a.jpg", expires_in)

    assert str(refused.value) == str(expected.value)


@pytest.mark.parametrize("expires_in", [1, MAX_URL_TTL_SECONDS])
def test_the_bounds_themselves_are_accepted(
    storage: BlobStorage, clock: ManualClock, expires_in: int
) -> None:
    storage.put("u1/a.jpg", b"a", "image/jpeg")
    signed = storage.signed_url("u1/a.jpg", expires_in)
    assert signed.expires_at == clock.now() + timedelta(seconds=expires_in)


def test_an_empty_download_filename_is_the_same_as_none(storage: BlobStorage) -> None:
    storage.put("u1/a.jpg", b"a", "image/jpeg")
    assert storage.signed_url("u1/a.jpg", 300, filename="") == storage.signed_url("u1/a.jpg", 300)
