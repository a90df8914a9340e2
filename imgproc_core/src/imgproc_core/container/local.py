"""The local folder's composition root: blobs as files under ``IMGPROC_STORAGE_DIR``, read
through URLs signed by the service and served by its ``/blobs`` route."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dependency_injector import containers, providers

from imgproc_core.adapters.local import LocalBlobStorage
from imgproc_core.ports import Clock
from imgproc_core.settings import Settings


def url_signing_key(settings: Settings) -> bytes:
    """The key that signs local blob URLs: its own setting, or one derived from the JWT secret
    so that one strong secret is enough for the embedded profile."""
    if settings.url_signing_secret:
        return settings.url_signing_secret.encode()
    return hashlib.sha256(b"imgproc-url-signing\x00" + settings.jwt_secret.encode()).digest()


def local_storage(settings: Settings, clock: Clock) -> LocalBlobStorage:
    return LocalBlobStorage(
        Path(settings.storage_dir),
        base_url=settings.public_base_url.rstrip("/"),
        secret=url_signing_key(settings),
        clock=clock,
    )


class LocalBlobs(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    blob_storage = providers.Singleton(local_storage, settings, clock)
    #: The same storage: it checks the URLs it signed, and knows the file behind each key.
    blob_files = blob_storage
