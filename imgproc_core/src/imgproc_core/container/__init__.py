"""The composition root: the use cases, wired to one container per technology that the
settings chose.

Each technology (the in-memory adapters, SQLAlchemy, the local folder, Google Cloud Storage,
Redis, Kafka, Pillow, the process pool, bcrypt and JWT, Prometheus) has a container of its own
in this package, as a module that imports its adapters. :func:`build_container` imports only
the modules the settings chose and plugs them into the slots of :class:`Container`, so the
embedded profile runs without the production profile's packages, and the in-memory fakes need
nothing beyond ``dependency-injector``. Nothing is built at import time; resources (engines,
clients, producers, the process pool) are opened by ``container.init_resources()``, and only
those of the chosen technologies exist to be opened.

Shells receive a built container (``create_app(container)``); tests override its providers, or
use :func:`imgproc_core.testing.build_test_container`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Final

from dependency_injector import containers, providers

from imgproc_core.adapters.system import SystemClock, freeze_start_up_objects
from imgproc_core.domain.backoff import Backoff
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.webhooks import DeliverySchedule
from imgproc_core.ports import (
    BlobStorage,
    Clock,
    DatabaseSchema,
    DeadLetterPublisher,
    ImageCodec,
    JobMetrics,
    JobPublisher,
    PasswordHasher,
    RateLimiter,
    SignedBlobFiles,
    TokenIssuer,
    UnitOfWork,
    UrlCache,
)
from imgproc_core.ports.metrics import WebhookMetrics
from imgproc_core.ports.webhooks import WebhookSender
from imgproc_core.settings import Settings
from imgproc_core.use_cases import (
    Authenticate,
    CheckReadiness,
    CreateLink,
    DeleteImage,
    DeletePreset,
    DisableUser,
    GetDownloadUrl,
    GetImageMetadata,
    GetOutboxBacklog,
    GetPreset,
    GetServiceStats,
    GiveUpJob,
    JobPolicy,
    ListImages,
    ListJobs,
    ListLinks,
    ListPresets,
    ListUserImages,
    ListUsers,
    LogIn,
    OpenLink,
    ParkMessage,
    ProcessTransformJob,
    PurgeUserImages,
    PutPreset,
    RegisterUser,
    RelayOutbox,
    RequestTransform,
    ResolveLink,
    RetryFailedJobs,
    RetryJob,
    RevokeLink,
    RunJob,
    RunNextJob,
    UploadImage,
)
from imgproc_core.use_cases.webhooks import (
    CreateWebhook,
    DeleteWebhook,
    DeliverWebhooks,
    GetWebhook,
    GetWebhookBacklog,
    ListDeliveryAttempts,
    ListWebhooks,
    RetryDelivery,
    SendTestWebhook,
    WebhookDispatcher,
    WebhookEvents,
)

__all__ = [
    "TECHNOLOGIES",
    "Container",
    "NoMetrics",
    "QueueTable",
    "Technology",
    "build_container",
    "chosen_technologies",
    "link_signing_key",
]

#: How many outbox rows a relay claims, publishes and acknowledges at once.
RELAY_BATCH_SIZE: Final = 100

#: A technology's container class. Each takes ``settings`` and ``clock`` and provides what its
#: slot of :class:`Container` names.
Technology = type[containers.DeclarativeContainer]


def link_signing_key(settings: Settings) -> bytes:
    """The key that signs delivery links: its own setting, or one derived from the JWT secret
    (apart from the one that signs local blob URLs), so that one strong secret is enough."""
    if settings.link_signing_secret:
        return settings.link_signing_secret.encode()
    return hashlib.sha256(b"imgproc-link-signing\x00" + settings.jwt_secret.encode()).digest()


def make_webhook_dispatcher(
    deliver: DeliverWebhooks,
    metrics: WebhookMetrics | None,
    backlog: GetWebhookBacklog,
    clock: Clock,
    idle_seconds: float,
    sender_id: str,
) -> WebhookDispatcher:
    """A webhook sender's thread, reporting to ``metrics``; the metrics learn to read the
    backlog (the oldest undelivered event) when scraped, if they can."""
    read = getattr(metrics, "read_backlog_with", None)
    if read is not None:
        read(lambda: (backlog().oldest_pending_created_at, clock.now()))
    return WebhookDispatcher(
        deliver,
        sender_id,
        idle_seconds=idle_seconds,
        on_outcome=metrics.delivery_ended if metrics is not None else None,
    )


class QueueTable(containers.DeclarativeContainer):
    """The messaging of the queue table (the embedded profile): jobs wait in the database and
    the embedded worker threads claim them, so nothing is published. A job given up becomes a
    FAILED row, not a dead letter."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    dead_letter_publisher: providers.Provider[DeadLetterPublisher | None] = providers.Object(None)


class NoMetrics(containers.DeclarativeContainer):
    """Without Prometheus's client installed, the job runner reports nowhere."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    job_metrics: providers.Provider[JobMetrics | None] = providers.Object(None)
    webhook_metrics: providers.Provider[WebhookMetrics | None] = providers.Object(None)


#: The container of each technology each slot may be given, by the name of the choice:
#: ``(module of this package, class)``. A module is imported only when its choice is made.
TECHNOLOGIES: Final[Mapping[str, Mapping[str, tuple[str, str]]]] = {
    "database": {"memory": ("memory", "MemoryDatabase"), "sql": ("sql", "SqlDatabase")},
    "blobs": {
        "memory": ("memory", "MemoryBlobs"),
        "local": ("local", "LocalBlobs"),
        "gcs": ("gcs", "GcsBlobs"),
    },
    "url_caching": {"memory": ("memory", "MemoryCaching"), "redis": ("redis", "RedisCaching")},
    "rate_limiting": {"memory": ("memory", "MemoryCaching"), "redis": ("redis", "RedisCaching")},
    "messaging": {"table": ("", "QueueTable"), "kafka": ("kafka", "KafkaMessaging")},
    "imaging": {
        "memory": ("memory", "MemoryImaging"),
        "pillow": ("pillow", "PillowImaging"),
        "process_pool": ("process_pool", "PooledPillowImaging"),
    },
    "auth": {"memory": ("memory", "MemoryAuth"), "bcrypt_jwt": ("auth", "BcryptJwtAuth")},
    "webhooks": {"memory": ("memory", "MemoryWebhooks"), "http": ("webhooks", "HttpWebhooks")},
    "metrics": {
        "none": ("", "NoMetrics"),
        "memory": ("memory", "MemoryMetrics"),
        "prometheus": ("prometheus", "PrometheusMetrics"),
    },
}


def chosen_technologies(settings: Settings) -> dict[str, str]:
    """The choice the settings make for each slot (a key of :data:`TECHNOLOGIES`)."""
    return {
        "database": "memory" if settings.database_url.startswith("memory") else "sql",
        "blobs": settings.storage,
        "url_caching": settings.url_cache,
        "rate_limiting": settings.rate_limiter,
        # The "memory" queue is the queue table of a database in memory.
        "messaging": "kafka" if settings.queue == "kafka" else "table",
        "imaging": "process_pool" if settings.worker_processes > 0 else "pillow",
        "auth": "bcrypt_jwt",
        "webhooks": "http",
        # Where its client is installed (the HTTP and worker shells bring it).
        "metrics": "prometheus" if importlib.util.find_spec("prometheus_client") else "none",
    }


def _technology(slot: str, choice: str) -> Technology:
    try:
        module_name, class_name = TECHNOLOGIES[slot][choice]
    except KeyError:
        raise ValueError(f"no {slot} technology is called {choice!r}") from None
    module = importlib.import_module(f"{__name__}.{module_name}" if module_name else __name__)
    technology: Technology = getattr(module, class_name)
    return technology


class Container(containers.DeclarativeContainer):
    """The use cases and the ports they run on. Built by :func:`build_container`, which fills
    each technology slot (a ``DependenciesContainer``) with the container the settings chose;
    the ports below are those slots' providers, under one name each."""

    settings = providers.Dependency(instance_of=Settings)
    limits: providers.Provider[Limits] = providers.Callable(
        lambda settings: settings.limits, settings
    )
    clock: providers.Provider[Clock] = providers.Singleton(SystemClock)
    #: ``container.freeze_start_up_objects()``, once a long-running process has built
    #: everything that lives as long as it does.
    freeze_start_up_objects = providers.Callable(freeze_start_up_objects)

    # -- technology slots ----------------------------------------------------------------------
    database = providers.DependenciesContainer()
    blobs = providers.DependenciesContainer()
    url_caching = providers.DependenciesContainer()
    rate_limiting = providers.DependenciesContainer()
    messaging = providers.DependenciesContainer()
    imaging = providers.DependenciesContainer()
    auth = providers.DependenciesContainer()
    metrics = providers.DependenciesContainer()
    webhooks = providers.DependenciesContainer()

    # -- the ports, from the slots ---------------------------------------------------------------
    #: Users, images and the job queue in one unit of work: a new one per call.
    unit_of_work: providers.Provider[UnitOfWork] = database.unit_of_work
    #: ``container.database_schema().upgrade()`` migrates; nothing to do for a database in
    #: memory.
    database_schema: providers.Provider[DatabaseSchema] = database.database_schema
    blob_storage: providers.Provider[BlobStorage] = blobs.blob_storage
    #: The files behind the storage's own signed URLs, which the HTTP shell serves; None when
    #: its URLs point elsewhere.
    blob_files: providers.Provider[SignedBlobFiles | None] = blobs.blob_files
    url_cache: providers.Provider[UrlCache] = url_caching.url_cache
    rate_limiter: providers.Provider[RateLimiter] = rate_limiting.rate_limiter
    #: In process: what uploads are probed with.
    codec: providers.Provider[ImageCodec] = imaging.codec
    #: What transform jobs run on: the same codec, or worker processes that build their own.
    job_codec: providers.Provider[ImageCodec] = imaging.job_codec
    #: ``container.tune_allocator()``, once, before a process decodes its first image.
    tune_allocator: providers.Provider[None] = imaging.tune_allocator
    password_hasher: providers.Provider[PasswordHasher] = auth.password_hasher
    token_issuer: providers.Provider[TokenIssuer] = auth.token_issuer
    #: The relay's publisher (Kafka only).
    job_publisher: providers.Provider[JobPublisher] = messaging.job_publisher
    #: Where given-up jobs are parked; None with the queue table (they become FAILED rows).
    dead_letter_publisher: providers.Provider[DeadLetterPublisher | None] = (
        messaging.dead_letter_publisher
    )
    #: ``container.ensure_topics()`` (Kafka only): the topics it created.
    ensure_topics: providers.Provider[list[str]] = messaging.ensure_topics
    #: Where the job runner reports each attempt and dead letter: one per process, shared by
    #: every job runner in it; None reports nowhere.
    job_metrics: providers.Provider[JobMetrics | None] = metrics.job_metrics
    #: Where the webhook senders report each delivery's outcome; None reports nowhere.
    webhook_metrics: providers.Provider[WebhookMetrics | None] = metrics.webhook_metrics
    #: Sends one attempt at a webhook: over HTTP through the address guard, or in memory.
    webhook_sender: providers.Provider[WebhookSender] = webhooks.webhook_sender

    # -- webhooks: events recorded with the changes they report, and their senders -------------
    webhook_events = providers.Singleton(
        WebhookEvents, clock=clock, base_url=settings.provided.public_base_url
    )
    delivery_schedule = providers.Singleton(
        lambda settings: DeliverySchedule(
            Backoff(
                base_seconds=settings.webhook_backoff_seconds,
                max_seconds=settings.webhook_backoff_max_seconds,
            ),
            timedelta(seconds=settings.webhook_retry_window_seconds),
        ),
        settings,
    )

    # -- running jobs: one policy and one runner for every kind of worker ----------------------
    #: How workers wait between attempts; tests put a faster sleep here.
    sleep: providers.Provider[Callable[[float], None]] = providers.Object(time.sleep)
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
        presets_only=settings.provided.presets_only,
        events=webhook_events,
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
        RequestTransform,
        uow_factory=unit_of_work.provider,
        clock=clock,
        limits=limits,
        presets_only=settings.provided.presets_only,
    )
    process_transform_job = providers.Singleton(
        ProcessTransformJob,
        uow_factory=unit_of_work.provider,
        storage=blob_storage,
        codec=job_codec,
        clock=clock,
        limits=limits,
        events=webhook_events,
    )
    delete_image = providers.Singleton(
        DeleteImage,
        uow_factory=unit_of_work.provider,
        storage=blob_storage,
        cache=url_cache,
        events=webhook_events,
    )
    give_up_job = providers.Singleton(
        GiveUpJob, uow_factory=unit_of_work.provider, clock=clock, events=webhook_events
    )
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

    # -- delivery links ------------------------------------------------------------------------
    link_signing_key: providers.Provider[bytes] = providers.Callable(link_signing_key, settings)
    create_link = providers.Singleton(
        CreateLink,
        uow_factory=unit_of_work.provider,
        clock=clock,
        limits=limits,
        key=link_signing_key,
        base_url=settings.provided.public_base_url,
        presets_only=settings.provided.presets_only,
    )
    list_links = providers.Singleton(
        ListLinks,
        uow_factory=unit_of_work.provider,
        key=link_signing_key,
        base_url=settings.provided.public_base_url,
    )
    revoke_link = providers.Singleton(RevokeLink, uow_factory=unit_of_work.provider)
    create_webhook = providers.Singleton(
        CreateWebhook, uow_factory=unit_of_work.provider, clock=clock
    )
    list_webhooks = providers.Singleton(ListWebhooks, uow_factory=unit_of_work.provider)
    get_webhook = providers.Singleton(GetWebhook, uow_factory=unit_of_work.provider)
    delete_webhook = providers.Singleton(DeleteWebhook, uow_factory=unit_of_work.provider)
    list_delivery_attempts = providers.Singleton(
        ListDeliveryAttempts, uow_factory=unit_of_work.provider
    )
    send_test_webhook = providers.Singleton(
        SendTestWebhook, uow_factory=unit_of_work.provider, clock=clock
    )
    retry_delivery = providers.Singleton(
        RetryDelivery, uow_factory=unit_of_work.provider, clock=clock
    )
    get_webhook_backlog = providers.Singleton(GetWebhookBacklog, uow_factory=unit_of_work.provider)
    deliver_webhooks = providers.Singleton(
        DeliverWebhooks,
        uow_factory=unit_of_work.provider,
        sender=webhook_sender,
        clock=clock,
        schedule=delivery_schedule,
    )
    #: ``container.webhook_dispatcher(sender_id=...)``: the sending thread of a process (the
    #: embedded API's, a relay's), not started.
    webhook_dispatcher = providers.Factory(
        make_webhook_dispatcher,
        deliver=deliver_webhooks,
        metrics=webhook_metrics,
        backlog=get_webhook_backlog,
        clock=clock,
        idle_seconds=settings.provided.webhook_poll_seconds,
    )
    put_preset = providers.Singleton(
        PutPreset,
        uow_factory=unit_of_work.provider,
        clock=clock,
        presets_only=settings.provided.presets_only,
    )
    list_presets = providers.Singleton(ListPresets, uow_factory=unit_of_work.provider)
    get_preset = providers.Singleton(GetPreset, uow_factory=unit_of_work.provider)
    delete_preset = providers.Singleton(DeletePreset, uow_factory=unit_of_work.provider)
    resolve_link = providers.Singleton(
        ResolveLink, uow_factory=unit_of_work.provider, clock=clock, key=link_signing_key
    )
    open_link = providers.Singleton(
        OpenLink,
        uow_factory=unit_of_work.provider,
        resolve=resolve_link,
        request_transform=request_transform,
        rate_limiter=rate_limiter,
        transform_rate=settings.provided.transform_rate,
    )

    # -- operators' use cases (the command line) -----------------------------------------------
    list_users = providers.Singleton(ListUsers, uow_factory=unit_of_work.provider)
    disable_user = providers.Singleton(DisableUser, uow_factory=unit_of_work.provider)
    list_user_images = providers.Singleton(ListUserImages, uow_factory=unit_of_work.provider)
    purge_user_images = providers.Singleton(
        PurgeUserImages,
        uow_factory=unit_of_work.provider,
        storage=blob_storage,
        cache=url_cache,
        events=webhook_events,
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


def build_container(
    settings: Settings | None = None, **technologies: Technology | str
) -> Container:
    """A container for ``settings`` (read from the environment when omitted), each slot filled
    with the technology the settings chose. ``technologies`` choose otherwise for the slots
    they name, by a name of :data:`TECHNOLOGIES` (``imaging="memory"``) or with a container
    class of one's own that provides what the slot needs."""
    settings = settings or Settings.from_env()
    unknown = technologies.keys() - TECHNOLOGIES.keys()
    if unknown:
        raise ValueError(f"no such technology slot: {', '.join(sorted(unknown))}")
    container = Container(settings=settings)
    chosen: dict[str, Technology | str] = {**chosen_technologies(settings), **technologies}
    # A technology chosen for two slots (Redis for the URL cache and the rate limits) is one
    # container: one client, opened once.
    built: dict[Technology, providers.Container[containers.DeclarativeContainer]] = {}
    for slot, choice in chosen.items():
        technology = _technology(slot, choice) if isinstance(choice, str) else choice
        if technology not in built:
            built[technology] = providers.Container(
                technology, settings=container.settings, clock=container.clock
            )
        getattr(container, slot).override(built[technology])
    return container
