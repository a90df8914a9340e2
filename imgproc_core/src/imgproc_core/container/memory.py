"""The in-memory adapters' composition roots: a database, blob storage, caches and rate limits
that live in the process, and the fakes of the codec and of passwords and tokens.

Each container here imports nothing beyond the standard library: they are what
:func:`imgproc_core.testing.build_test_container` is made of, and the embedded profile's rate
limits and URL cache.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDatabase,
    InMemoryImageCodec,
    InMemoryJobMetrics,
    InMemoryPasswordHasher,
    InMemoryRateLimiter,
    InMemorySchema,
    InMemoryTokenIssuer,
    InMemoryUnitOfWork,
    InMemoryUrlCache,
    InMemoryWebhookMetrics,
    InMemoryWebhookSender,
)
from imgproc_core.ports import Clock, SignedBlobFiles
from imgproc_core.settings import Settings


class MemoryDatabase(containers.DeclarativeContainer):
    """Users, images and the job queue in dictionaries, shared by every unit of work."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    database = providers.Singleton(InMemoryDatabase)
    unit_of_work = providers.Factory(InMemoryUnitOfWork, database, clock)
    database_schema = providers.Singleton(InMemorySchema)


class MemoryBlobs(containers.DeclarativeContainer):
    """Blobs in a dictionary; their ``memory://`` URLs are served by nothing."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    blob_storage = providers.Singleton(InMemoryBlobStorage, clock=clock)
    blob_files: providers.Provider[SignedBlobFiles | None] = providers.Object(None)


class MemoryCaching(containers.DeclarativeContainer):
    """Download URLs and rate limits counted in this process only (the embedded profile's
    choice: one process serves every request)."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    url_cache = providers.Singleton(InMemoryUrlCache, clock)
    rate_limiter = providers.Singleton(InMemoryRateLimiter, clock)


class MemoryImaging(containers.DeclarativeContainer):
    """The fake codec (:class:`InMemoryImageCodec`) for uploads and jobs alike."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    codec = providers.Singleton(InMemoryImageCodec)
    job_codec = codec
    #: Nothing to tune: no image is decoded.
    tune_allocator = providers.Callable(lambda: None)


class MemoryAuth(containers.DeclarativeContainer):
    """Passwords hashed once with SHA-256 and opaque tokens remembered until they expire by
    the container's clock: quick, for tests, and not for production."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    password_hasher = providers.Singleton(InMemoryPasswordHasher)
    token_issuer = providers.Singleton(
        InMemoryTokenIssuer, clock, ttl_seconds=settings.provided.access_token_ttl_seconds
    )


class MemoryMetrics(containers.DeclarativeContainer):
    """Job attempts and dead letters kept in a list (:class:`InMemoryJobMetrics`)."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    job_metrics = providers.Singleton(InMemoryJobMetrics)
    webhook_metrics = providers.Singleton(InMemoryWebhookMetrics)


class MemoryWebhooks(containers.DeclarativeContainer):
    """Webhooks answered by an in-memory receiver (:class:`InMemoryWebhookSender`), which
    records what it was sent."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    webhook_sender = providers.Singleton(
        InMemoryWebhookSender, allow_private=settings.provided.webhook_allow_private
    )
