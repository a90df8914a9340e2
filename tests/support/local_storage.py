"""A LocalBlobStorage in a test's temporary folder, for the BlobStorage contract and others."""

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
