"""The production profile's blob storage: a Google Cloud Storage bucket, V4 signed URLs.

Needs the ``gcs`` extra (google-cloud-storage); nothing else in the core imports it.
"""

from imgproc_core.adapters.gcs.signing import (
    CredentialsUrlSigning,
    EmulatorDownloadUrls,
    GcsUrlSigning,
    inline_disposition,
)
from imgproc_core.adapters.gcs.storage import GcsBlobStorage

__all__ = [
    "CredentialsUrlSigning",
    "EmulatorDownloadUrls",
    "GcsBlobStorage",
    "GcsUrlSigning",
    "inline_disposition",
]
