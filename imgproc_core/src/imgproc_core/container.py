"""The composition root: one container that builds every adapter and use case from settings.

Nothing is built at import time. Shells receive a built container (``create_app(container)``);
tests override its providers, or use :func:`imgproc_core.testing.build_test_container`.
Adapters of optional technologies (PostgreSQL, GCS, Redis, Kafka) are imported only when the
settings choose them, so the embedded profile runs without their packages.
"""

from __future__ import annotations

import hashlib
import time
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
    CheckReadiness,
    DeleteImage,
    DisableUser,
    GetDownloadUrl,
    GetImageMetadata,
    GetOutboxBacklog,
    GetServiceStats,
    GiveUpJob,
    JobPolicy,
    ListImages,
    ListJobs,
    ListUserImages,
    ListUsers,
    LogIn,
    ParkMessage,
    ProcessTransformJob,
    PurgeUserImages,
    RegisterUser,
    RelayOutbox,
    RequestTransform,
    RetryFailedJobs,
    RetryJob,
    RunJob,
    RunNextJob,
    UploadImage,
)

#: How many outbox rows a relay claims, publishes and acknowledges at once.
RELAY_BATCH_SIZE = 100


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


def job_codec_kind(settings: Settings) -> str:
    """``pool`` when jobs run in worker processes (and so under a hard time limit), else
    ``inline``: in the calling thread, which nothing can stop."""
    return "pool" if settings.worker_processes > 0 else "inline"


def _codec_pool(settings: Settings) -> Iterator[Any]:
    # Opened by ``init_resources()`` even when not chosen; the processes start at first use.
    if job_codec_kind(settings) != "pool":
        yield None
        return
    from imgproc_core.adapters.pillow.allocator import tune_allocator
    from imgproc_core.adapters.process_pool import ProcessPoolImageCodec

    pool = ProcessPoolImageCodec(
        settings.worker_processes, settings.job_time_limit_seconds, initializer=tune_allocator
    )
    try:
        yield pool
    finally:
        pool.close()


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


def _gcs_storage(settings: Settings, clock: Any) -> Any:
    from imgproc_core.adapters.gcs import GcsBlobStorage

    return GcsBlobStorage(
        settings.gcs_bucket,
        project=settings.gcs_project or None,
        credentials_file=settings.gcs_credentials_file or None,
        emulator_host=settings.gcs_emulator_host or None,
        clock=clock,
    )


def uses_redis(settings: Settings) -> bool:
    return "redis" in (settings.rate_limiter, settings.url_cache)


def _redis_client(settings: Settings) -> Iterator[Any]:
    # Like the SQL engine: nothing to open unless an adapter on Redis was chosen. The client
    # connects on its first command, so opening it needs no running Redis.
    if not uses_redis(settings):
        yield None
        return
    from imgproc_core.adapters.redis import redis_client_from_url

    client = redis_client_from_url(settings.redis_url)
    try:
        yield client
    finally:
        client.close()


def _redis_rate_limiter(client: Any) -> Any:
    from imgproc_core.adapters.redis import RedisRateLimiter

    # Redis's own clock: every API process counts against the same time, whatever the hosts'
    # clocks say.
    return RedisRateLimiter(client, clock=None)


def _redis_url_cache(client: Any, clock: Any) -> Any:
    from imgproc_core.adapters.redis import RedisUrlCache

    return RedisUrlCache(client, clock)


def uses_kafka(settings: Settings) -> bool:
    return settings.queue == "kafka"


def _kafka_job_publisher(settings: Settings) -> Iterator[Any]:
    # Opened by ``init_resources()`` in every process; the producer connects on the first
    # publish, so only the relay ever talks to the broker through it.
    if not uses_kafka(settings):
        yield None
        return
    from imgproc_core.adapters.kafka import KafkaJobPublisher

    publisher = KafkaJobPublisher(settings.kafka_bootstrap_servers, settings.kafka_topic)
    try:
        yield publisher
    finally:
        publisher.close()


def _kafka_dead_letter_publisher(settings: Settings) -> Iterator[Any]:
    if not uses_kafka(settings):
        yield None
        return
    from imgproc_core.adapters.kafka import KafkaDeadLetterPublisher

    publisher = KafkaDeadLetterPublisher(
        settings.kafka_bootstrap_servers, settings.kafka_dead_letter_topic
    )
    try:
        yield publisher
    finally:
        publisher.close()


def _ensure_kafka_topics(settings: Settings) -> list[str]:
    from imgproc_core.adapters.kafka import ensure_topics

    return ensure_topics(
        settings.kafka_bootstrap_servers,
        settings.kafka_topic,
        settings.kafka_dead_letter_topic,
        settings.kafka_partitions,
    )


def _job_metrics() -> Any:
    # Prometheus's series where its client is installed (the HTTP and worker shells bring it);
    # without it, None: the job runner reports nowhere.
    try:
        from imgproc_core.adapters.prometheus import PrometheusJobMetrics
    except ImportError:
        return None
    return PrometheusJobMetrics()


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    limits = providers.Callable(lambda settings: settings.limits, settings)

    clock = providers.Singleton(SystemClock)
    #: In process: what uploads are probed with, and what jobs run on without worker processes.
    codec = providers.Singleton(PillowImageCodec)
    codec_pool = providers.Resource(_codec_pool, settings)
    #: What transform jobs run on. Overriding ``codec`` reaches it too, unless jobs go to the
    #: worker processes (``worker_processes`` > 0), which build their own Pillow codec.
    job_codec = providers.Selector(
        providers.Callable(job_codec_kind, settings), inline=codec, pool=codec_pool
    )
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
        gcs=providers.Singleton(_gcs_storage, settings, clock),
    )
    redis_client = providers.Resource(_redis_client, settings)
    url_cache = providers.Selector(
        settings.provided.url_cache,
        memory=providers.Singleton(InMemoryUrlCache, clock),
        redis=providers.Singleton(_redis_url_cache, redis_client, clock),
    )
    rate_limiter = providers.Selector(
        settings.provided.rate_limiter,
        memory=providers.Singleton(InMemoryRateLimiter, clock),
        redis=providers.Singleton(_redis_rate_limiter, redis_client),
    )

    # -- messaging (the production profile's job path) -----------------------------------------
    job_publisher = providers.Resource(_kafka_job_publisher, settings)
    dead_letter_publisher = providers.Resource(_kafka_dead_letter_publisher, settings)
    #: ``container.ensure_topics()`` creates the job topic and its dead-letter topic unless
    #: they exist (the topics it created); ``DependencyUnavailable`` when the broker is down.
    ensure_topics = providers.Callable(_ensure_kafka_topics, settings)

    # -- running jobs: one policy and one runner for every kind of worker ----------------------
    #: How workers wait between attempts; tests put a faster sleep here.
    sleep = providers.Object(time.sleep)
    #: Where the job runner reports each attempt and dead letter: one per process, shared by
    #: every job runner in it (the API's ``/metrics`` and a worker's metrics port export it);
    #: None reports nowhere.
    job_metrics = providers.Singleton(_job_metrics)
    job_policy = providers.Singleton(
        JobPolicy,
        max_attempts=settings.provided.job_max_attempts,
        backoff_seconds=settings.provided.job_backoff_seconds,
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
        codec=job_codec,
        clock=clock,
        limits=limits,
    )
    delete_image = providers.Singleton(
        DeleteImage, uow_factory=unit_of_work.provider, storage=blob_storage, cache=url_cache
    )
    give_up_job = providers.Singleton(GiveUpJob, uow_factory=unit_of_work.provider, clock=clock)
    #: The job runner, shared by the threads of a worker; with the Kafka queue it parks on the
    #: dead-letter topic.
    run_job = providers.Singleton(
        RunJob,
        process=process_transform_job,
        give_up=give_up_job,
        clock=clock,
        policy=job_policy,
        dead_letters=dead_letter_publisher,
        metrics=job_metrics,
        sleep=sleep,
    )
    #: What ``imgproc worker`` parks a message it cannot read with (Kafka queue only).
    park_message = providers.Singleton(
        ParkMessage,
        dead_letters=dead_letter_publisher,
        clock=clock,
        policy=job_policy,
        metrics=job_metrics,
        sleep=sleep,
    )
    #: One per worker thread of the embedded profile: ``container.run_next_job(worker_id=...)``.
    run_next_job = providers.Factory(
        RunNextJob,
        uow_factory=unit_of_work.provider,
        run_job=run_job,
        lease_seconds=settings.provided.job_lease_seconds,
    )
    #: One per relay process: ``container.relay_outbox(relay_id=...)``. Its lease is the job
    #: lease: with the Kafka queue, outbox rows are the only thing leased.
    relay_outbox = providers.Factory(
        RelayOutbox,
        uow_factory=unit_of_work.provider,
        publisher=job_publisher,
        clock=clock,
        lease_seconds=settings.provided.job_lease_seconds,
        batch_size=RELAY_BATCH_SIZE,
    )
    get_outbox_backlog = providers.Singleton(
        GetOutboxBacklog, uow_factory=unit_of_work.provider, clock=clock
    )

    # -- operators' use cases (the command line) -----------------------------------------------
    list_users = providers.Singleton(ListUsers, uow_factory=unit_of_work.provider)
    disable_user = providers.Singleton(DisableUser, uow_factory=unit_of_work.provider)
    list_user_images = providers.Singleton(ListUserImages, uow_factory=unit_of_work.provider)
    purge_user_images = providers.Singleton(
        PurgeUserImages, uow_factory=unit_of_work.provider, storage=blob_storage, cache=url_cache
    )
    list_jobs = providers.Singleton(ListJobs, uow_factory=unit_of_work.provider)
    retry_job = providers.Singleton(RetryJob, uow_factory=unit_of_work.provider, clock=clock)
    retry_failed_jobs = providers.Singleton(
        RetryFailedJobs, uow_factory=unit_of_work.provider, clock=clock
    )
    get_service_stats = providers.Singleton(GetServiceStats, uow_factory=unit_of_work.provider)
    check_readiness = providers.Singleton(
        CheckReadiness, uow_factory=unit_of_work.provider, storage=blob_storage, cache=url_cache
    )


def build_container(settings: Settings | None = None) -> Container:
    """A container for ``settings`` (read from the environment when omitted)."""
    container = Container(settings=settings or Settings.from_env())
    return container
