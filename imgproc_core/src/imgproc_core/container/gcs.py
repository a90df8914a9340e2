"""Google Cloud Storage's composition root: blobs in ``IMGPROC_GCS_BUCKET``, read through V4
signed URLs that point at the bucket. Needs the ``gcs`` extra."""

from __future__ import annotations

from dependency_injector import containers, providers

from imgproc_core.adapters.gcs import GcsBlobStorage
from imgproc_core.ports import Clock, SignedBlobFiles
from imgproc_core.settings import Settings


def gcs_storage(settings: Settings, clock: Clock) -> GcsBlobStorage:
    return GcsBlobStorage(
        settings.gcs_bucket,
        project=settings.gcs_project or None,
        credentials_file=settings.gcs_credentials_file or None,
        emulator_host=settings.gcs_emulator_host or None,
        clock=clock,
    )


class GcsBlobs(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    blob_storage = providers.Singleton(gcs_storage, settings, clock)
    #: The URLs point at the bucket: the service serves no files of its own.
    blob_files: providers.Provider[SignedBlobFiles | None] = providers.Object(None)
