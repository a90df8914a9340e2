"""The composition root: one container that builds every adapter and use case from settings.

Nothing is built at import time. Shells receive a built container (``create_app(container)``);
tests override its providers, or use :func:`imgproc_core.testing.build_test_container`.
Adapters of optional technologies (PostgreSQL, GCS, Redis, Kafka) are imported only when the
settings choose them, so the embedded profile runs without their packages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dependency_injector import containers, providers

from imgproc_core.adapters.auth import BcryptPasswordHasher, JwtTokenIssuer
from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDatabase,
    InMemoryRateLimiter,
    InMemoryUnitOfWork,
    InMemoryUrlCache,
)
from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.system import SystemClock
from imgproc_core.settings import Settings
from imgproc_core.use_cases import (
    Authenticate,
    DeleteImage,
    GetDownloadUrl,
    GetImageMetadata,
    ListImages,
    LogIn,
    ProcessTransformJob,
    RegisterUser,
    RequestTransform,
    RunNextJob,
    UploadImage,
)


def database_kind(settings: Settings) -> str:
    return "memory" if settings.database_url.startswith("memory") else "sql"


def _sql_engine(settings: Settings) -> Iterator[Any]:
    # ``init_resources()`` opens every resource, chosen or not: without a SQL database there is
    # no engine to open.
    if database_kind(settings) != "sql":
        yield None
        return
    from imgproc_core.adapters.sqlalchemy import create_engine_from_url

    engine = create_engine_from_url(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _sql_session_factory(engine: Any) -> Any:
    from imgproc_core.adapters.sqlalchemy import session_factory

    return session_factory(engine)


def _sql_unit_of_work(session_factory: Any, clock: Any) -> Any:
    from imgproc_core.adapters.sqlalchemy import SqlAlchemyUnitOfWork

    return SqlAlchemyUnitOfWork(session_factory, clock)


def url_signing_key(settings: Settings) -> bytes:
    """The key that signs local blob URLs: its own setting, or one derived from the JWT secret
    so that one strong secret is enough for the embedded profile."""
    if settings.url_signing_secret:
        return settings.url_signing_secret.encode()
    return hashlib.sha256(b"imgproc-url-signing\x00" + settings.jwt_secret.encode()).digest()


def _local_storage(settings: Settings, clock: Any) -> Any:
    from imgproc_core.adapters.local import LocalBlobStorage

    return LocalBlobStorage(
        Path(settings.storage_dir),
        base_url=settings.public_base_url.rstrip("/"),
        secret=url_signing_key(settings),
        clock=clock,
    )


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    limits = providers.Callable(lambda settings: settings.limits, settings)

    clock = providers.Singleton(SystemClock)
    codec = providers.Singleton(PillowImageCodec)
    password_hasher = providers.Singleton(
        BcryptPasswordHasher, rounds=settings.provided.bcrypt_rounds
    )
    token_issuer = providers.Singleton(
        JwtTokenIssuer,
        secret=settings.provided.jwt_secret,
        clock=clock,
        issuer=settings.provided.jwt_issuer,
        audience=settings.provided.jwt_audience,
        ttl_seconds=settings.provided.access_token_ttl_seconds,
    )

    # -- persistence: users, images and the job queue in one unit of work ---------------------
    memory_database = providers.Singleton(InMemoryDatabase)
    sql_engine = providers.Resource(_sql_engine, settings)
    sql_session_factory = providers.Singleton(_sql_session_factory, sql_engine)
    unit_of_work = providers.Selector(
        providers.Callable(database_kind, settings),
        memory=providers.Factory(InMemoryUnitOfWork, memory_database, clock),
        sql=providers.Factory(_sql_unit_of_work, sql_session_factory, clock),
    )

    # -- blobs, cache, rate limits -------------------------------------------------------------
    blob_storage = providers.Selector(
        settings.provided.storage,
        memory=providers.Singleton(InMemoryBlobStorage, clock=clock),
        local=providers.Singleton(_local_storage, settings, clock),
    )
    url_cache = providers.Selector(
        settings.provided.url_cache,
        memory=providers.Singleton(InMemoryUrlCache, clock),
    )
    rate_limiter = providers.Selector(
        settings.provided.rate_limiter,
        memory=providers.Singleton(InMemoryRateLimiter, clock),
    )

    # -- use cases -----------------------------------------------------------------------------
    register_user = providers.Singleton(
        RegisterUser,
        uow_factory=unit_of_work.provider,
        hasher=password_hasher,
        tokens=token_issuer,
        clock=clock,
    )
    log_in = providers.Singleton(
        LogIn, uow_factory=unit_of_work.provider, hasher=password_hasher, tokens=token_issuer
    )
    authenticate = providers.Singleton(
        Authenticate, uow_factory=unit_of_work.provider, tokens=token_issuer
    )
    upload_image = providers.Singleton(
        UploadImage,
        uow_factory=unit_of_work.provider,
        storage=blob_storage,
        codec=codec,
        clock=clock,
        limits=limits,
    )
    list_images = providers.Singleton(ListImages, uow_factory=unit_of_work.provider)
    get_image_metadata = providers.Singleton(GetImageMetadata, uow_factory=unit_of_work.provider)
    get_download_url = providers.Singleton(
        GetDownloadUrl,
        uow_factory=unit_of_work.provider,
        storage=blob_storage,
        cache=url_cache,
        clock=clock,
        url_ttl_seconds=settings.provided.signed_url_ttl_seconds,
        cache_margin_seconds=settings.provided.signed_url_cache_margin_seconds,
    )
    request_transform = providers.Singleton(
        RequestTransform, uow_factory=unit_of_work.provider, clock=clock, limits=limits
    )
    process_transform_job = providers.Singleton(
        ProcessTransformJob,
        uow_factory=unit_of_work.provider,
        storage=blob_storage,
        codec=codec,
        clock=clock,
        limits=limits,
    )
    delete_image = providers.Singleton(
        DeleteImage, uow_factory=unit_of_work.provider, storage=blob_storage, cache=url_cache
    )
    #: One per worker thread of the embedded profile: ``container.run_next_job(worker_id=...)``.
    run_next_job = providers.Factory(
        RunNextJob,
        uow_factory=unit_of_work.provider,
        process=process_transform_job,
        clock=clock,
        lease_seconds=settings.provided.job_lease_seconds,
        max_attempts=settings.provided.job_max_attempts,
        backoff_base_seconds=settings.provided.job_backoff_seconds,
    )


def build_container(settings: Settings | None = None) -> Container:
    """A container for ``settings`` (read from the environment when omitted)."""
    container = Container(settings=settings or Settings.from_env())
    return container
