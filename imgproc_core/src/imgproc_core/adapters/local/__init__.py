"""The embedded profile's blob storage: files in a local folder, HMAC-signed URLs.

Standard library only, so it needs no extra.
"""

from imgproc_core.adapters.local.signing import MIN_SECRET_BYTES, UrlSigner
from imgproc_core.adapters.local.storage import LocalBlobStorage

__all__ = ["MIN_SECRET_BYTES", "LocalBlobStorage", "UrlSigner"]
