"""``create_app(container)``: the Litestar application, wired to a built container.

Nothing here builds a container or reads the environment: the caller (the CLI's ``serve``,
:mod:`imgproc_http.server`, a test) builds one and hands it over. Handlers receive use cases
through Litestar dependencies that call the container's providers, one per handler; the guard
(authentication, then rate limits) is made here from the same container, so it runs before any
body is read.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import anyio.to_thread
from litestar import Litestar, Router
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from imgproc_core.container import Container
from imgproc_core.settings import Settings
from imgproc_core.use_cases.webhooks import WebhookDispatcher
from imgproc_http.context import BASE_URL_STATE, JOB_SIGNAL_STATE
from imgproc_http.errors import MAX_UPLOAD_BYTES_STATE, exception_handlers
from imgproc_http.metrics import HttpMetrics
from imgproc_http.rate_limits import RateLimitGuard, add_rate_limit_headers, parse_trusted_proxies
from imgproc_http.readiness import ReadinessChecks
from imgproc_http.routes.auth import login, register
from imgproc_http.routes.blobs import BlobFiles, read_blob
from imgproc_http.routes.delivery import LinkDelivery, deliver
from imgproc_http.routes.images import ImagesController
from imgproc_http.routes.links import LinksController
from imgproc_http.routes.operations import healthz, metrics, readyz
from imgproc_http.routes.presets import PresetsController
from imgproc_http.routes.webhooks import WebhooksController
from imgproc_http.schemas import API_PREFIX
from imgproc_http.security import BEARER_SCHEME, BearerAuthentication
from imgproc_http.workers import EmbeddedWorkers, JobSignal, JobStep

logger = logging.getLogger(__name__)

#: Room for the multipart boundaries and part headers around an upload of the maximum size.
MULTIPART_OVERHEAD_BYTES: Final = 64 * 1024
#: Parts of an upload form: the file, and a few harmless extras a client library may add.
MULTIPART_PART_LIMIT: Final = 8
#: How long shutdown waits for the worker threads to finish the jobs in hand, past the time
#: limit of a job.
WORKER_SHUTDOWN_GRACE_SECONDS: Final = 5.0

#: Use cases handed to handlers by name.
USE_CASES: Final = (
    "register_user",
    "log_in",
    "upload_image",
    "list_images",
    "get_image_metadata",
    "get_download_url",
    "request_transform",
    "delete_image",
    "create_link",
    "list_links",
    "revoke_link",
    "open_link",
    "put_preset",
    "list_presets",
    "get_preset",
    "delete_preset",
    "create_webhook",
    "list_webhooks",
    "get_webhook",
    "delete_webhook",
    "send_test_webhook",
    "list_delivery_attempts",
)


#: An attempt in hand at shutdown ends within the sender's timeout (5 s).
WEBHOOK_SHUTDOWN_GRACE_SECONDS: Final = 10.0


def _webhook_dispatcher(container: Container, http_metrics: HttpMetrics) -> WebhookDispatcher:
    """The embedded profile's webhook sender: a thread beside the worker threads, reporting
    to the API's ``/metrics``."""
    http_metrics.include(container.webhook_metrics())
    dispatcher: WebhookDispatcher = container.webhook_dispatcher(
        sender_id=f"{socket.gethostname()}:{os.getpid()}:webhooks"
    )
    return dispatcher


def _package_version() -> str:
    try:
        return version("imgproc-http")
    except PackageNotFoundError:
        return "0.0.0"


def _from(provider: Callable[[], Any]) -> Provide:
    """A Litestar dependency that asks a container provider each time (singletons are cached
    by the container itself)."""

    def provide() -> Any:
        return provider()

    return Provide(provide, sync_to_thread=False)


def _constant(value: Any) -> Provide:
    def provide() -> Any:
        return value

    return Provide(provide, sync_to_thread=False)


def embedded_workers(
    container: Container, settings: Settings, signal: JobSignal
) -> EmbeddedWorkers | None:
    """Worker threads for the queue table, or None when jobs go elsewhere (or nowhere)."""
    if settings.queue != "table" or settings.worker_threads < 1:
        return None

    def run_next_job(worker_id: str) -> JobStep:
        runner: JobStep = container.run_next_job(worker_id=worker_id)
        return runner

    return EmbeddedWorkers(run_next_job, settings.worker_threads, signal)


def _openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="imgproc",
        version=_package_version(),
        description=(
            "A self-hosted image service: upload images, ask for transformations that run "
            "asynchronously, fetch them through short-lived signed URLs. Errors are "
            "`application/problem+json` with `status`, `title`, `detail`, `code` and, for "
            "invalid input, `field`."
        ),
        path="/schema",
        render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin()],
        components=Components(
            security_schemes={
                BEARER_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="The access_token from /api/v1/register or /api/v1/login",
                )
            }
        ),
    )


AsyncGuard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def guarded_by(*guards: AsyncGuard) -> AsyncGuard:
    """One guard that runs ``guards`` in order (authentication first: per-user rate limits
    need the user)."""

    async def guard(
        connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        for each in guards:
            await each(connection, handler)

    return guard


async def _maybe_await(result: object) -> None:
    if inspect.isawaitable(result):
        await result


def create_app(container: Container) -> Litestar:
    """The HTTP API over ``container``. Refuses (``SettingsError``) to build with a missing,
    short or well-known secret outside tests."""
    settings: Settings = container.settings()
    settings.check_secrets()
    base_url = settings.public_base_url.rstrip("/")

    signal = JobSignal()
    workers = embedded_workers(container, settings, signal)
    http_metrics = HttpMetrics(container.get_service_stats())
    if workers is not None:
        # The worker threads report to the container's job metrics: their series go out on
        # /metrics beside the API's (an API without workers has no jobs to count).
        http_metrics.include(container.job_metrics())
    dispatcher = _webhook_dispatcher(container, http_metrics) if workers else None
    readiness = ReadinessChecks.for_use_case(container.check_readiness())
    rate_limits = RateLimitGuard(
        container.rate_limiter(),
        {
            "upload": settings.upload_rate,
            "transform": settings.transform_rate,
            "auth": settings.auth_rate,
        },
        trusted_proxies=parse_trusted_proxies(settings.trusted_proxies),
        registry=http_metrics.registry,
        in_process=settings.rate_limiter == "memory",
    )
    clock = container.clock()
    authentication = BearerAuthentication(container.authenticate(), clock)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await _maybe_await(container.init_resources())
        if workers is not None:
            workers.start()
        if dispatcher is not None:
            dispatcher.start()
        try:
            yield
        finally:
            if dispatcher is not None:
                await anyio.to_thread.run_sync(dispatcher.stop, WEBHOOK_SHUTDOWN_GRACE_SECONDS)
            if workers is not None:
                grace = settings.job_time_limit_seconds + WORKER_SHUTDOWN_GRACE_SECONDS
                await anyio.to_thread.run_sync(workers.stop, grace)
            await _maybe_await(container.shutdown_resources())

    def now() -> datetime:
        return clock.now()

    dependencies: dict[str, Provide] = {name: _from(getattr(container, name)) for name in USE_CASES}
    dependencies |= {
        "now": Provide(now, sync_to_thread=False),
        "readiness": _constant(readiness),
        "http_metrics": _constant(http_metrics),
        "blob_files": _constant(BlobFiles(container.blob_files())),
        "link_delivery": _constant(
            LinkDelivery(
                container.blob_storage(),
                container.get_image_metadata(),
                settings.link_render_wait_seconds,
                now,
                http_metrics.links,
                container.blob_files(),
                settings.signed_url_ttl_seconds if settings.link_delivery == "redirect" else None,
            )
        ),
    }

    api = Router(
        path=API_PREFIX,
        route_handlers=[
            register,
            login,
            ImagesController,
            LinksController,
            PresetsController,
            WebhooksController,
        ],
    )

    return Litestar(
        route_handlers=[api, read_blob, deliver, healthz, readyz, metrics],
        dependencies=dependencies,
        exception_handlers=exception_handlers(),
        # One guard: Litestar copies the route handler for every guard of every request.
        guards=[guarded_by(authentication, rate_limits)],
        before_send=[add_rate_limit_headers],
        middleware=[http_metrics.middleware],
        lifespan=[lifespan],
        openapi_config=_openapi_config(),
        # The upload's limit; every route with a JSON body sets its own, smaller one.
        request_max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        multipart_form_part_limit=MULTIPART_PART_LIMIT,
        state=State(
            {
                MAX_UPLOAD_BYTES_STATE: settings.max_upload_bytes,
                BASE_URL_STATE: base_url,
                JOB_SIGNAL_STATE: signal,
            }
        ),
        logging_config=None,
        debug=False,
    )
