"""Prometheus metrics, exposed at ``/metrics`` in the text format.

- ``imgproc_http_requests_total{route,method,status}`` and
  ``imgproc_http_request_duration_seconds{route,method,status}``: every request, labelled
  with its route template (``/api/v1/images/{image_id:str}``), never the raw path, so the
  number of series stays bounded;
- ``imgproc_images{status}``: images by job status (originals are READY);
- ``imgproc_queue_depth``: jobs waiting in the queue table (or outbox);
- ``imgproc_metrics_source_up``: 0 when the database could not be read for the two above
  (both come from the ``GetServiceStats`` use case, which ``imgproc stats`` shows too);
- delivery links: ``imgproc_link_hits_total{status}`` (304 among them),
  ``imgproc_link_renders_total`` (derivatives queued by a link's first use),
  ``imgproc_link_render_polls_total`` (reads of their state while readers wait) and
  ``imgproc_link_render_wait_seconds`` (how long a reader waited for one);
- with worker threads (the embedded profile), the job series of the container's job metrics:
  ``imgproc_jobs_total{outcome}``, ``imgproc_job_duration_seconds{format}``,
  ``imgproc_jobs_running``, ``imgproc_dead_letters_total{code}``.

Each app has its own registry, so several apps in one process (tests) do not mix counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from imgproc_core.domain import JobStatus
from imgproc_core.use_cases import DELIVERY_PATH, GetServiceStats, ServiceStatsQuery

logger = logging.getLogger(__name__)

#: Seconds; covers a cached redirect (~1 ms) up to a bcrypt login and a large upload.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class JobsCollector(Collector):
    """Reads job counts from the database at scrape time."""

    def __init__(self, get_service_stats: GetServiceStats) -> None:
        self._get_service_stats = get_service_stats

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "imgproc_metrics_source_up", "Whether the job counts could be read from the database"
        )
        try:
            stats = self._get_service_stats(ServiceStatsQuery())
        except Exception:
            logger.warning("metrics: cannot read job counts", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        images = GaugeMetricFamily("imgproc_images", "Images by job status", labels=["status"])
        by_status = stats.images_by_status
        for status in JobStatus:
            images.add_metric([status.value], by_status[status])
        yield images
        queue = GaugeMetricFamily("imgproc_queue_depth", "Jobs waiting in the queue")
        queue.add_metric([], stats.queued_jobs)
        yield queue
        up.add_metric([], 1)
        yield up


#: Seconds a link's reader may wait for a render: up to the longest wait the settings allow.
RENDER_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0)


class LinkMetrics:
    """What delivery links do: hits by status, renders on the fly, the waits for them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hits = Counter(
            "imgproc_link_hits", "Requests of delivery links", ("status",), registry=registry
        )
        self.renders = Counter(
            "imgproc_link_renders",
            "Derivatives queued by the first use of a delivery link",
            registry=registry,
        )
        self.render_polls = Counter(
            "imgproc_link_render_polls",
            "Reads of a derivative's state while its delivery link's readers wait for it",
            registry=registry,
        )
        self.render_wait = Histogram(
            "imgproc_link_render_wait_seconds",
            "Time a delivery link's reader waited for its derivative",
            buckets=RENDER_WAIT_BUCKETS,
            registry=registry,
        )


class HttpMetrics:
    """The app's registry and request metrics; :meth:`middleware` records every request."""

    def __init__(self, get_service_stats: GetServiceStats | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("route", "method", "status")
        self.requests = Counter(
            "imgproc_http_requests",
            "HTTP requests answered",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "imgproc_http_request_duration_seconds",
            "Time to answer an HTTP request",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.links = LinkMetrics(self.registry)
        if get_service_stats is not None:
            self.registry.register(JobsCollector(get_service_stats))
        #: The labelled series of each (route, method, status) seen, looked up once: the
        #: client's own lookup takes a lock and checks the labels on every call.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def include(self, collector: object) -> None:
        """Export ``collector``'s series too, when it is a Prometheus collector (the core's
        ``PrometheusJobMetrics``; a fake put in its place by a test is left out)."""
        if callable(getattr(collector, "collect", None)):
            self.registry.register(cast(Collector, collector))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            values = (route, method, str(status))
            children = (self.requests.labels(*values), self.latency.labels(*values))
            self._children[key] = children
        requests, latency = children
        requests.inc()
        latency.observe(seconds)
        if route.startswith(f"{DELIVERY_PATH}/"):
            self.links.hits.labels(str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """A plain ASGI middleware (a factory for Litestar's ``middleware=``) that times every
        HTTP request and counts it by route template, method and status."""
        observe = self.observe

        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def send_and_note_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_and_note_status)
            finally:
                route: Any = scope.get("path_template") or "unmatched"
                observe(route, scope.get("method", ""), status, time.perf_counter() - started)

        return timed
