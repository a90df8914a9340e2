"""LocalBlobStorage: files under a root folder, strict keys, atomic writes, signed URLs."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgproc_core.adapters.blob_keys import MAX_KEY_CHARS, MAX_SEGMENT_CHARS
from imgproc_core.adapters.local import MIN_SECRET_BYTES, LocalBlobStorage, UrlSigner
from imgproc_core.adapters.local import storage as local_storage_module
from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import BlobNotFound, Conflict, DependencyUnavailable
from imgproc_core.domain.images import derivative_key, derivative_prefix, original_key
from tests.support.local_storage import (
    TEST_BASE_URL,
    TEST_SIGNING_SECRET,
    make_local_blob_storage,
)

USER = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ORIGINAL = "a" * 32
DERIVED = "d" * 64
JPEG = "image/jpeg"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def storage(tmp_path: Path, clock: ManualClock) -> LocalBlobStorage:
    return make_local_blob_storage(tmp_path, clock)


def _files(root: Path) -> list[str]:
    """Every file (and link) below ``root``, as sorted relative paths."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() or path.is_symlink()
    )


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


# -- layout and round trip ---------------------------------------------------------------------


def test_an_original_and_its_derivative_land_where_the_layout_says(
    storage: LocalBlobStorage,
) -> None:
    key = original_key(USER, ORIGINAL, "jpeg")
    derived = derivative_key(USER, ORIGINAL, DERIVED, "webp")

    storage.put(key, b"original bytes", JPEG)
    storage.put(derived, b"derived bytes", "image/webp")

    assert (storage.root / USER / f"{ORIGINAL}.jpg").read_bytes() == b"original bytes"
    assert (storage.root / USER / ORIGINAL / f"{DERIVED}.webp").read_bytes() == b"derived bytes"
    assert storage.get(key) == b"original bytes"
    assert storage.get(derived) == b"derived bytes"
    assert storage.path_for(derived) == storage.root / USER / ORIGINAL / f"{DERIVED}.webp"


def test_round_trip_keeps_every_byte(storage: LocalBlobStorage) -> None:
    data = bytes(range(256)) * 1000 + b"\x00tail"
    storage.put("u1/all-bytes.bin", data, "application/octet-stream")
    assert storage.get("u1/all-bytes.bin") == data
    assert storage.exists("u1/all-bytes.bin")


def test_an_empty_blob_is_a_blob(storage: LocalBlobStorage) -> None:
    storage.put("u1/empty.png", b"", "image/png")
    assert storage.exists("u1/empty.png")
    assert storage.get("u1/empty.png") == b""


def test_the_root_is_created_on_the_first_write_only(tmp_path: Path, clock: ManualClock) -> None:
    storage = make_local_blob_storage(tmp_path, clock)
    assert not storage.root.exists()
    assert not storage.exists("u1/a.jpg")
    with pytest.raises(BlobNotFound):
        storage.get("u1/a.jpg")
    assert storage.delete_prefix("u1/") == 0

    storage.put("u1/a.jpg", b"x", JPEG)
    assert storage.root.is_dir()


def test_a_relative_root_is_fixed_at_construction(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = LocalBlobStorage("var/blobs", TEST_BASE_URL, TEST_SIGNING_SECRET, clock)
    monkeypatch.chdir("/")
    storage.put("u1/a.jpg", b"x", JPEG)
    assert (tmp_path / "var" / "blobs" / "u1" / "a.jpg").read_bytes() == b"x"


def test_a_missing_key_is_blob_not_found(storage: LocalBlobStorage) -> None:
    storage.put("u1/present.jpg", b"x", JPEG)
    with pytest.raises(BlobNotFound):
        storage.get("u1/absent.jpg")
    with pytest.raises(BlobNotFound):
        storage.get("u2/absent.jpg")
    assert not storage.exists("u1/absent.jpg")


def test_a_folder_of_derivatives_is_not_a_blob(storage: LocalBlobStorage) -> None:
    storage.put(derivative_key(USER, ORIGINAL, DERIVED, "png"), b"x", "image/png")
    folder_key = f"{USER}/{ORIGINAL}"

    assert not storage.exists(folder_key)
    with pytest.raises(BlobNotFound):
        storage.get(folder_key)
    storage.delete(folder_key)
    assert storage.exists(derivative_key(USER, ORIGINAL, DERIVED, "png"))
    with pytest.raises(Conflict):
        storage.put(folder_key, b"would hide the derivatives", JPEG)


def test_a_key_through_an_existing_blob_is_a_conflict(storage: LocalBlobStorage) -> None:
    storage.put("u1/a.jpg", b"x", JPEG)
    with pytest.raises(Conflict):
        storage.put("u1/a.jpg/b.png", b"y", "image/png")
    assert not storage.exists("u1/a.jpg/b.png")
    with pytest.raises(BlobNotFound):
        storage.get("u1/a.jpg/b.png")
    assert storage.get("u1/a.jpg") == b"x"


# -- atomic writes -----------------------------------------------------------------------------


def test_overwrite_replaces_the_bytes_and_leaves_no_temporary_file(
    storage: LocalBlobStorage,
) -> None:
    storage.put("u1/a.jpg", b"first version, longer than the second", JPEG)
    storage.put("u1/a.jpg", b"second", JPEG)

    assert storage.get("u1/a.jpg") == b"second"
    assert _files(storage.root) == ["u1/a.jpg"]


def test_writing_the_same_bytes_twice_gives_the_same_file(storage: LocalBlobStorage) -> None:
    storage.put("u1/a.jpg", b"same", JPEG)
    first = storage.path_for("u1/a.jpg").read_bytes()
    storage.put("u1/a.jpg", b"same", JPEG)

    assert storage.path_for("u1/a.jpg").read_bytes() == first == b"same"
    assert _files(storage.root) == ["u1/a.jpg"]


def test_a_write_is_a_rename_of_a_complete_file(
    storage: LocalBlobStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.put("u1/a.jpg", b"old", JPEG)
    renames: list[tuple[str, bytes]] = []
    real_replace = os.replace

    def spying_replace(source: str, target: str | os.PathLike[str]) -> None:
        # What the rename is about to publish must already be whole on disk.
        renames.append((Path(source).name, Path(source).read_bytes()))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spying_replace)
    storage.put("u1/a.jpg", b"new bytes", JPEG)

    assert len(renames) == 1
    temporary, content = renames[0]
    assert temporary.startswith(".~a.jpg.")
    assert temporary.endswith(".tmp")
    assert content == b"new bytes"


def test_a_write_that_fails_midway_keeps_the_old_file_and_no_debris(
    storage: LocalBlobStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.put("u1/a.jpg", b"old", JPEG)

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(DependencyUnavailable) as caught:
        storage.put("u1/a.jpg", b"new bytes that never fit", JPEG)

    assert caught.value.dependency == "storage"
    assert "No space left on device" in caught.value.message
    monkeypatch.undo()
    assert storage.get("u1/a.jpg") == b"old"
    assert _files(storage.root) == ["u1/a.jpg"]


def test_a_failed_rename_keeps_the_old_file_and_no_debris(
    storage: LocalBlobStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.put("u1/a.jpg", b"old", JPEG)

    def denied(source: str, target: str) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", denied)
    with pytest.raises(DependencyUnavailable):
        storage.put("u1/a.jpg", b"new", JPEG)

    monkeypatch.undo()
    assert storage.get("u1/a.jpg") == b"old"
    assert _files(storage.root) == ["u1/a.jpg"]


def test_a_folder_removed_during_a_write_is_made_again(
    storage: LocalBlobStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_mkstemp = tempfile.mkstemp
    calls = 0

    def folder_vanishes_once(*, prefix: str, suffix: str, dir: Path) -> tuple[int, str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            dir.rmdir()
        return real_mkstemp(prefix=prefix, suffix=suffix, dir=dir)

    monkeypatch.setattr("tempfile.mkstemp", folder_vanishes_once)
    storage.put("u1/a.jpg", b"x", JPEG)

    assert calls == 2
    assert storage.get("u1/a.jpg") == b"x"


def test_concurrent_readers_see_only_whole_versions(storage: LocalBlobStorage) -> None:
    versions = {bytes([n]) * (64 * 1024 + n) for n in range(8)}
    storage.put("u1/hot.png", next(iter(versions)), "image/png")
    seen: list[bytes] = []

    def write(data: bytes) -> None:
        for _ in range(10):
            storage.put("u1/hot.png", data, "image/png")

    def read() -> None:
        for _ in range(40):
            seen.append(storage.get("u1/hot.png"))

    threads = [threading.Thread(target=write, args=(data,)) for data in versions]
    threads += [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(seen) == 160
    assert set(seen) <= versions
    assert storage.get("u1/hot.png") in versions
    assert _files(storage.root) == ["u1/hot.png"]


# -- delete and delete_prefix ------------------------------------------------------------------


def test_delete_removes_and_tolerates_a_missing_key(storage: LocalBlobStorage) -> None:
    storage.put("u1/a.jpg", b"x", JPEG)
    storage.delete("u1/a.jpg")
    assert not storage.exists("u1/a.jpg")
    with pytest.raises(BlobNotFound):
        storage.get("u1/a.jpg")

    storage.delete("u1/a.jpg")
    storage.delete("nobody/never.jpg")


def _populate(storage: LocalBlobStorage) -> None:
    storage.put(original_key(USER, ORIGINAL, "jpeg"), b"o", JPEG)
    storage.put(derivative_key(USER, ORIGINAL, "1" * 64, "png"), b"d1", "image/png")
    storage.put(derivative_key(USER, ORIGINAL, "2" * 64, "webp"), b"d2", "image/webp")
    storage.put(original_key(USER, "b" * 32, "png"), b"other original", "image/png")
    storage.put(original_key("someone-else", ORIGINAL, "jpeg"), b"not mine", JPEG)


def test_delete_prefix_of_an_original_removes_its_derivatives_only(
    storage: LocalBlobStorage,
) -> None:
    _populate(storage)

    assert storage.delete_prefix(derivative_prefix(USER, ORIGINAL)) == 2

    assert _files(storage.root) == [
        f"{USER}/{ORIGINAL}.jpg",
        f"{USER}/{'b' * 32}.png",
        f"someone-else/{ORIGINAL}.jpg",
    ]
    assert not (storage.root / USER / ORIGINAL).exists()
    assert storage.delete_prefix(derivative_prefix(USER, ORIGINAL)) == 0


def test_delete_prefix_of_a_user_removes_everything_of_that_user(
    storage: LocalBlobStorage,
) -> None:
    _populate(storage)

    assert storage.delete_prefix(f"{USER}/") == 4

    assert _files(storage.root) == [f"someone-else/{ORIGINAL}.jpg"]
    assert not (storage.root / USER).exists()
    assert storage.root.is_dir()


def test_delete_prefix_keeps_neighbours_whose_names_start_the_same(
    storage: LocalBlobStorage,
) -> None:
    _populate(storage)
    storage.put(f"{USER}/{ORIGINAL}-sibling/d.gif", b"s", "image/gif")
    storage.put("someone-else-too/a.jpg", b"t", JPEG)

    assert storage.delete_prefix(derivative_prefix(USER, ORIGINAL)) == 2
    assert storage.delete_prefix("someone-else/") == 1

    assert _files(storage.root) == [
        f"{USER}/{ORIGINAL}-sibling/d.gif",
        f"{USER}/{ORIGINAL}.jpg",
        f"{USER}/{'b' * 32}.png",
        "someone-else-too/a.jpg",
    ]


def test_delete_prefix_reaches_any_depth(storage: LocalBlobStorage) -> None:
    for key in ("u1/a/b/c/d.jpg", "u1/a/b/e.jpg", "u1/a/f.jpg", "u1/g.jpg"):
        storage.put(key, b"x", JPEG)

    assert storage.delete_prefix("u1/a/") == 3
    assert _files(storage.root) == ["u1/g.jpg"]
    assert sorted(path.name for path in (storage.root / "u1").iterdir()) == ["g.jpg"]


def test_delete_prefix_clears_debris_of_interrupted_writes_without_counting_it(
    storage: LocalBlobStorage,
) -> None:
    storage.put("u1/img/a.png", b"a", "image/png")
    (storage.root / "u1" / "img" / ".~a.png.x1y2z3.tmp").write_bytes(b"half")
    (storage.root / "u1" / ".~b.jpg.q9w8e7.tmp").write_bytes(b"half")

    assert storage.delete_prefix("u1/img/") == 1
    assert storage.delete_prefix("u1/") == 0
    assert _files(storage.root) == []


@pytest.mark.parametrize(
    "prefix",
    ["", "/", "u1", "u1/a.jpg", "/u1/", "../", "u1//", "u1/../", "u1/./", "a\\b/", "\uff55\uff11/"],
)
def test_delete_prefix_refuses_what_is_not_a_safe_folder(
    storage: LocalBlobStorage, prefix: str
) -> None:
    storage.put("u1/a.jpg", b"x", JPEG)
    storage.put("u10/a.jpg", b"x", JPEG)
    with pytest.raises(ValueError, match="blob"):
        storage.delete_prefix(prefix)
    assert storage.exists("u1/a.jpg")
    assert storage.exists("u10/a.jpg")


# -- hostile keys ------------------------------------------------------------------------------

HOSTILE_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("../x", id="parent"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("a/../../b", id="parent-in-the-middle"),
    pytest.param("a/./b", id="dot-segment"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("..\\..\\windows", id="backslash-parent"),
    pytest.param("a//b", id="empty-segment"),
    pytest.param("a/b/", id="trailing-slash"),
    pytest.param("a/b\x00.jpg", id="nul"),
    pytest.param("a/b\n.jpg", id="newline"),
    pytest.param("a/b c.jpg", id="space"),
    pytest.param("a/.~b.jpg.abc123.tmp", id="temporary-name"),
    pytest.param("a/b~1.jpg", id="tilde"),
    pytest.param("\u2024\u2024/x", id="one-dot-leaders"),
    pytest.param("\uff0e\uff0e/x", id="fullwidth-dots"),
    pytest.param("a\u2215b", id="division-slash"),
    pytest.param("a\uff0fb", id="fullwidth-slash"),
    pytest.param("caf\u00e9/x.jpg", id="non-ascii"),
    pytest.param("a/b\u200b.jpg", id="zero-width-space"),
    pytest.param("x" * (MAX_KEY_CHARS + 1), id="too-long"),
    pytest.param("u/" + "x" * (MAX_SEGMENT_CHARS + 1), id="segment-too-long"),
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_a_hostile_key_is_refused_by_every_operation(
    storage: LocalBlobStorage, tmp_path: Path, key: str
) -> None:
    operations: dict[str, Callable[[], object]] = {
        "put": lambda: storage.put(key, b"x", JPEG),
        "get": lambda: storage.get(key),
        "exists": lambda: storage.exists(key),
        "delete": lambda: storage.delete(key),
        "path_for": lambda: storage.path_for(key),
        "signed_url": lambda: storage.signed_url(key, 60),
    }
    for name, operation in operations.items():
        with pytest.raises(ValueError, match="blob"):
            operation()
        assert not storage.root.exists(), f"{name} touched the disk"
    assert storage.verify(key, "9999999999", "A" * 43) is False
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_dots_inside_segments_are_fine(storage: LocalBlobStorage) -> None:
    keys = ["u1/.hidden", "u1/..x", "u1/x..", "u1/...", ".u/a.b.c", "u1/-_-.jpg"]
    for n, key in enumerate(keys):
        storage.put(key, bytes([n]), JPEG)
    assert [storage.get(key) for key in keys] == [bytes([n]) for n in range(len(keys))]
    assert storage.delete_prefix("u1/") == 5


def test_keys_at_the_length_limits_work(storage: LocalBlobStorage) -> None:
    longest_segment = "s" * MAX_SEGMENT_CHARS
    storage.put(f"u1/{longest_segment}", b"x", JPEG)
    assert storage.get(f"u1/{longest_segment}") == b"x"

    longest_key = "/".join(["k" * 99] * 5) + "/" + "z" * (MAX_KEY_CHARS - 500)
    assert len(longest_key) == MAX_KEY_CHARS
    storage.put(longest_key, b"y", JPEG)
    assert storage.get(longest_key) == b"y"


@given(key=st.text(min_size=1, max_size=60))
def test_any_text_is_refused_or_stays_under_the_root(key: str) -> None:
    storage = LocalBlobStorage("/srv/blobs", TEST_BASE_URL, TEST_SIGNING_SECRET, ManualClock())
    try:
        path = storage.path_for(key)
    except ValueError:
        return
    assert path.is_relative_to(storage.root)
    assert path != storage.root
    assert path.relative_to(storage.root).as_posix() == key


# -- symbolic links ----------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.jpg").write_bytes(b"secret")
    return folder


def test_a_linked_folder_pointing_outside_is_never_followed(
    storage: LocalBlobStorage, outside: Path
) -> None:
    storage.put("u0/seed.jpg", b"seed", JPEG)
    (storage.root / "u1").symlink_to(outside, target_is_directory=True)

    with pytest.raises(ValueError, match="symbolic link"):
        storage.get("u1/secret.jpg")
    with pytest.raises(ValueError, match="symbolic link"):
        storage.exists("u1/secret.jpg")
    with pytest.raises(ValueError, match="symbolic link"):
        storage.put("u1/planted.jpg", b"planted", JPEG)
    with pytest.raises(ValueError, match="symbolic link"):
        storage.put("u1/secret.jpg", b"overwritten", JPEG)
    with pytest.raises(ValueError, match="symbolic link"):
        storage.delete("u1/secret.jpg")
    with pytest.raises(ValueError, match="symbolic link"):
        storage.path_for("u1/secret.jpg")
    with pytest.raises(ValueError, match="symbolic link"):
        storage.delete_prefix("u1/")

    storage.put("u3/own.jpg", b"own", JPEG)
    (storage.root / "u3" / "linked").symlink_to(outside, target_is_directory=True)
    assert storage.delete_prefix("u3/") == 1
    assert (storage.root / "u3" / "linked").is_symlink()
    assert sorted(path.name for path in outside.iterdir()) == ["secret.jpg"]
    assert (outside / "secret.jpg").read_bytes() == b"secret"
    assert (storage.root / "u1").is_symlink()


def test_a_linked_file_pointing_outside_is_never_followed(
    storage: LocalBlobStorage, outside: Path
) -> None:
    storage.put("u1/real.jpg", b"real", JPEG)
    (storage.root / "u1" / "link.jpg").symlink_to(outside / "secret.jpg")

    with pytest.raises(ValueError, match="symbolic link"):
        storage.get("u1/link.jpg")
    with pytest.raises(ValueError, match="symbolic link"):
        storage.put("u1/link.jpg", b"overwritten", JPEG)
    with pytest.raises(ValueError, match="symbolic link"):
        storage.delete("u1/link.jpg")
    with pytest.raises(ValueError, match="symbolic link"):
        storage.path_for("u1/link.jpg")

    assert storage.delete_prefix("u1/") == 1
    assert (outside / "secret.jpg").read_bytes() == b"secret"
    assert (storage.root / "u1" / "link.jpg").is_symlink()


def test_a_link_pointing_inside_the_root_is_not_followed_either(
    storage: LocalBlobStorage,
) -> None:
    storage.put("u1/real.jpg", b"real", JPEG)
    (storage.root / "u2").symlink_to(storage.root / "u1", target_is_directory=True)

    with pytest.raises(ValueError, match="symbolic link"):
        storage.get("u2/real.jpg")


def test_the_resolved_path_is_checked_even_when_a_link_goes_unnoticed(
    storage: LocalBlobStorage, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.put("u0/seed.jpg", b"seed", JPEG)
    (storage.root / "u1").symlink_to(outside, target_is_directory=True)
    # As if the link had appeared between the per-segment check and the resolution.
    blind = SimpleNamespace(S_ISLNK=lambda mode: False, S_ISREG=stat.S_ISREG, S_ISDIR=stat.S_ISDIR)
    monkeypatch.setattr(local_storage_module, "stat", blind)

    with pytest.raises(ValueError, match="outside the storage folder"):
        storage.get("u1/secret.jpg")
    with pytest.raises(ValueError, match="outside the storage folder"):
        storage.put("u1/secret.jpg", b"overwritten", JPEG)
    assert (outside / "secret.jpg").read_bytes() == b"secret"


def test_a_root_that_is_itself_a_link_is_fine(tmp_path: Path, clock: ManualClock) -> None:
    real = tmp_path / "real-blobs"
    real.mkdir()
    (tmp_path / "blobs").symlink_to(real, target_is_directory=True)
    storage = make_local_blob_storage(tmp_path, clock)

    storage.put("u1/a.jpg", b"x", JPEG)

    assert storage.root == real
    assert (real / "u1" / "a.jpg").read_bytes() == b"x"


# -- storage failures --------------------------------------------------------------------------


def test_a_root_below_a_file_makes_the_storage_unavailable(
    tmp_path: Path, clock: ManualClock
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    storage = LocalBlobStorage(blocker / "blobs", TEST_BASE_URL, TEST_SIGNING_SECRET, clock)

    failures: dict[str, Callable[[], object]] = {
        "put": lambda: storage.put("u1/a.jpg", b"x", JPEG),
        "get": lambda: storage.get("u1/a.jpg"),
        "exists": lambda: storage.exists("u1/a.jpg"),
        "delete": lambda: storage.delete("u1/a.jpg"),
        "delete_prefix": lambda: storage.delete_prefix("u1/"),
    }
    for name, operation in failures.items():
        with pytest.raises(DependencyUnavailable) as caught:
            operation()
        assert caught.value.dependency == "storage", name
        assert isinstance(caught.value.__cause__, OSError), name
    assert blocker.read_bytes() == b""


def test_a_root_that_is_a_file_makes_the_storage_unavailable(
    tmp_path: Path, clock: ManualClock
) -> None:
    (tmp_path / "blobs").write_bytes(b"")
    storage = make_local_blob_storage(tmp_path, clock)

    with pytest.raises(DependencyUnavailable):
        storage.put("u1/a.jpg", b"x", JPEG)
    with pytest.raises(DependencyUnavailable):
        storage.get("u1/a.jpg")


def test_a_read_error_makes_the_storage_unavailable(
    storage: LocalBlobStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.put("u1/a.jpg", b"x", JPEG)

    def io_error(path: str, flags: int) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "open", io_error)
    with pytest.raises(DependencyUnavailable, match="Input/output error"):
        storage.get("u1/a.jpg")


def test_the_storage_recovers_when_the_folder_comes_back(
    tmp_path: Path, clock: ManualClock
) -> None:
    (tmp_path / "blobs").write_bytes(b"")
    storage = make_local_blob_storage(tmp_path, clock)
    with pytest.raises(DependencyUnavailable):
        storage.put("u1/a.jpg", b"x", JPEG)

    (tmp_path / "blobs").unlink()
    storage.put("u1/a.jpg", b"x", JPEG)
    assert storage.get("u1/a.jpg") == b"x"


# -- signed URLs -------------------------------------------------------------------------------


def test_a_signed_url_has_the_documented_shape(
    storage: LocalBlobStorage, clock: ManualClock
) -> None:
    key = original_key(USER, ORIGINAL, "jpeg")
    signed = storage.signed_url(key, 300)

    parts = urlsplit(signed.url)
    query = _query(signed.url)
    assert f"{parts.scheme}://{parts.netloc}" == TEST_BASE_URL
    assert parts.path == f"/blobs/{key}"
    assert set(query) == {"expires", "signature"}
    assert int(query["expires"]) == int(clock.now().timestamp()) + 300
    assert signed.expires_at == clock.now() + timedelta(seconds=300)
    assert len(query["signature"]) == 43
    assert "=" not in query["signature"]
    assert storage.verify(key, query["expires"], query["signature"])


def test_a_signed_url_with_a_filename_carries_and_signs_it(storage: LocalBlobStorage) -> None:
    filename = "holiday photo (1) & more=ok.jpg"
    signed = storage.signed_url("u1/a.jpg", 60, filename=filename)
    query = _query(signed.url)

    assert query["filename"] == filename
    assert storage.verify("u1/a.jpg", query["expires"], query["signature"], filename)
    assert not storage.verify("u1/a.jpg", query["expires"], query["signature"])
    assert not storage.verify("u1/a.jpg", query["expires"], query["signature"], "other.jpg")


def test_the_route_prefix_and_base_url_shape_the_url(tmp_path: Path, clock: ManualClock) -> None:
    storage = LocalBlobStorage(
        tmp_path, "https://img.example.org/", TEST_SIGNING_SECRET, clock, route_prefix="/files/"
    )
    signed = storage.signed_url("u1/a.jpg", 60)
    assert signed.url.startswith("https://img.example.org/files/u1/a.jpg?expires=")
    assert storage.route_prefix == "/files"


def test_the_signature_binds_the_route(tmp_path: Path, clock: ManualClock) -> None:
    blobs = LocalBlobStorage(tmp_path, TEST_BASE_URL, TEST_SIGNING_SECRET, clock)
    files = LocalBlobStorage(
        tmp_path, TEST_BASE_URL, TEST_SIGNING_SECRET, clock, route_prefix="/files"
    )
    query = _query(blobs.signed_url("u1/a.jpg", 60).url)
    assert not files.verify("u1/a.jpg", query["expires"], query["signature"])


@pytest.fixture
def signed(storage: LocalBlobStorage) -> dict[str, str]:
    return _query(storage.signed_url("u1/a.jpg", 300, filename="a.jpg").url)


def test_a_tampered_key_fails(storage: LocalBlobStorage, signed: dict[str, str]) -> None:
    for key in ("u1/b.jpg", "u2/a.jpg", "u1/a.jpgx", "u1/a.png", "../u1/a.jpg"):
        assert not storage.verify(key, signed["expires"], signed["signature"], "a.jpg"), key


def test_a_tampered_expiry_fails(storage: LocalBlobStorage, signed: dict[str, str]) -> None:
    later = str(int(signed["expires"]) + 3600)
    for expires in (later, "0" + signed["expires"], signed["expires"] + "0"):
        assert not storage.verify("u1/a.jpg", expires, signed["signature"], "a.jpg"), expires


def test_a_tampered_signature_fails(storage: LocalBlobStorage, signed: dict[str, str]) -> None:
    signature = signed["signature"]
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    for candidate in (flipped, signature[:-1], signature + "A", signature + "=", "", "é" * 43):
        assert not storage.verify("u1/a.jpg", signed["expires"], candidate, "a.jpg"), candidate


def test_a_tampered_filename_fails(storage: LocalBlobStorage, signed: dict[str, str]) -> None:
    for filename in ("b.jpg", "a.jpg ", "A.jpg", None):
        assert not storage.verify("u1/a.jpg", signed["expires"], signed["signature"], filename)


def test_a_signature_from_another_secret_fails(
    tmp_path: Path, clock: ManualClock, storage: LocalBlobStorage
) -> None:
    forger = LocalBlobStorage(tmp_path, TEST_BASE_URL, b"f" * MIN_SECRET_BYTES, clock)
    query = _query(forger.signed_url("u1/a.jpg", 300).url)
    assert not storage.verify("u1/a.jpg", query["expires"], query["signature"])


def test_a_url_expires_on_the_clock(
    storage: LocalBlobStorage, clock: ManualClock, signed: dict[str, str]
) -> None:
    def valid() -> bool:
        return storage.verify("u1/a.jpg", signed["expires"], signed["signature"], "a.jpg")

    assert valid()
    clock.advance(299.999)
    assert valid()
    clock.advance(0.001)
    assert not valid()
    clock.advance(86400)
    assert not valid()


def test_a_fractional_now_rounds_the_expiry_up(tmp_path: Path, clock: ManualClock) -> None:
    clock.advance(0.25)
    storage = make_local_blob_storage(tmp_path, clock)
    signed = storage.signed_url("u1/a.jpg", 10)
    query = _query(signed.url)

    assert int(query["expires"]) == int(clock.now().timestamp()) + 11
    assert signed.expires_at == clock.now() + timedelta(seconds=10)
    clock.advance(10)
    assert storage.verify("u1/a.jpg", query["expires"], query["signature"])


@pytest.mark.parametrize(
    "expires",
    [
        "",
        "abc",
        "-1",
        "+1767225900",
        " 1767225900",
        "1767225900 ",
        "1.5e9",
        "1767225900.0",
        "\uff11\uff17\uff16\uff17",
        "\u0661\u0667",
        "9" * 30,
        "0x69",
    ],
)
def test_a_malformed_expiry_is_false_not_an_error(
    storage: LocalBlobStorage, signed: dict[str, str], expires: str
) -> None:
    assert storage.verify("u1/a.jpg", expires, signed["signature"], "a.jpg") is False


@pytest.mark.parametrize("seconds", [0, -1, 7 * 24 * 3600 + 1])
def test_an_out_of_range_lifetime_is_refused(storage: LocalBlobStorage, seconds: int) -> None:
    with pytest.raises(ValueError, match="expires_in_seconds"):
        storage.signed_url("u1/a.jpg", seconds)


def test_an_empty_filename_is_the_same_as_none(storage: LocalBlobStorage) -> None:
    query = _query(storage.signed_url("u1/a.jpg", 60, filename="").url)
    assert "filename" not in query
    assert storage.verify("u1/a.jpg", query["expires"], query["signature"], None)
    assert storage.verify("u1/a.jpg", query["expires"], query["signature"], "")


# -- secrets and configuration -----------------------------------------------------------------


@pytest.mark.parametrize("secret", [b"", b"short", b"x" * (MIN_SECRET_BYTES - 1)])
def test_a_short_secret_is_refused_at_construction(
    tmp_path: Path, clock: ManualClock, secret: bytes
) -> None:
    with pytest.raises(ValueError, match="at least 32"):
        LocalBlobStorage(tmp_path, TEST_BASE_URL, secret, clock)


def test_a_secret_of_exactly_the_minimum_is_accepted(tmp_path: Path, clock: ManualClock) -> None:
    storage = LocalBlobStorage(tmp_path, TEST_BASE_URL, b"x" * MIN_SECRET_BYTES, clock)
    assert storage.signed_url("u1/a.jpg", 60).url.startswith(TEST_BASE_URL)


def test_a_text_secret_is_a_type_error(tmp_path: Path, clock: ManualClock) -> None:
    with pytest.raises(TypeError, match="bytes"):
        LocalBlobStorage(tmp_path, TEST_BASE_URL, "x" * 40, clock)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "base_url", ["", "127.0.0.1:8000", "ftp://host", "http://", "http://h/?q=1", "http://h/#f"]
)
def test_a_bad_base_url_is_refused(tmp_path: Path, clock: ManualClock, base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        LocalBlobStorage(tmp_path, base_url, TEST_SIGNING_SECRET, clock)


@pytest.mark.parametrize("route_prefix", ["blobs", "/blobs?x=1", "/b#x"])
def test_a_bad_route_prefix_is_refused(
    tmp_path: Path, clock: ManualClock, route_prefix: str
) -> None:
    with pytest.raises(ValueError, match="route_prefix"):
        LocalBlobStorage(tmp_path, TEST_BASE_URL, TEST_SIGNING_SECRET, clock, route_prefix)


# -- the signer on its own ---------------------------------------------------------------------


def test_the_signer_keeps_fields_apart(clock: ManualClock) -> None:
    signer = UrlSigner(TEST_SIGNING_SECRET, clock)
    expires = signer.expiry(60)

    assert signer.sign("/a", expires, {"x": "1\ny=2"}) != signer.sign(
        "/a", expires, {"x": "1", "y": "2"}
    )
    assert signer.sign("/a", expires, {"x": "1"}) != signer.sign("/a", expires, {"x1": ""})
    assert signer.sign("/a", expires) != signer.sign("/a", expires, {"filename": ""})
    assert signer.sign("/a", expires) == signer.sign("/a", expires, {})


def test_the_signer_verifies_what_it_signed_and_nothing_else(clock: ManualClock) -> None:
    signer = UrlSigner(TEST_SIGNING_SECRET, clock)
    expires = signer.expiry(60)
    signature = signer.sign("/exports/report.csv", expires, {"user": "u1"})

    assert signer.verify("/exports/report.csv", expires, signature, {"user": "u1"})
    assert signer.verify("/exports/report.csv", str(expires), signature, {"user": "u1"})
    assert not signer.verify("/exports/report.csv", expires, signature, {"user": "u2"})
    assert not signer.verify("/exports/other.csv", expires, signature, {"user": "u1"})
    assert not signer.verify("/exports/report.csv", -1, signature, {"user": "u1"})
    assert not signer.verify("/exports/report.csv", True, signature, {"user": "u1"})
    assert not signer.verify("/exports/report.csv", expires, None, {"user": "u1"})  # type: ignore[arg-type]
    clock.advance(60)
    assert not signer.verify("/exports/report.csv", expires, signature, {"user": "u1"})


def test_the_signer_refuses_to_sign_a_negative_expiry(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="expires"):
        UrlSigner(TEST_SIGNING_SECRET, clock).sign("/a", -5)
