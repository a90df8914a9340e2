"""A LocalBlobStorage in a test's temporary folder, for the BlobStorage contract and others; and
a storage folder broken for real, for the tests of outages."""

from __future__ import annotations

from pathlib import Path

from imgproc_core.adapters.local import LocalBlobStorage
from imgproc_core.ports.clock import Clock

#: 32 bytes exactly: the shortest secret the storage accepts.
TEST_SIGNING_SECRET = b"local-blob-storage-test-secret!!"
TEST_BASE_URL = "http://testserver"


def make_local_blob_storage(tmp_path: Path, clock: Clock) -> LocalBlobStorage:
    """Blobs under ``tmp_path / "blobs"`` (not created until the first write)."""
    return LocalBlobStorage(
        tmp_path / "blobs", base_url=TEST_BASE_URL, secret=TEST_SIGNING_SECRET, clock=clock
    )


class BrokenFolder:
    """Replaces a folder by a plain file, and puts it back."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._parked = folder.with_name(folder.name + ".parked")

    def __enter__(self) -> BrokenFolder:
        self._folder.rename(self._parked)
        self._folder.write_bytes(b"not a folder")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.repair()

    def repair(self) -> None:
        if self._parked.exists():
            self._folder.unlink()
            self._parked.rename(self._folder)
