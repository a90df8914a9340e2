"""Prometheus metrics of ``imgproc worker`` and ``imgproc relay``, and the port they are served on.

Each process serves one registry at ``http://IMGPROC_METRICS_HOST:PORT/metrics``
(``IMGPROC_WORKER_METRICS_PORT``, ``IMGPROC_RELAY_METRICS_PORT``; 0 or empty serves none):

- both: the process's own CPU, memory and file descriptors (``process_*``, this process only,
  not the render processes it starts);
- a worker: the job series of the container's ``JobMetrics`` (``imgproc_jobs_total``...,
  reported by the job runner), and the consumer's, from :class:`ConsumerMetrics`;
- a relay: :class:`RelayMetrics`, whose outbox gauges are read from the database at scrape
  time (at most one read at a time, waited on for ``OUTBOX_READ_TIMEOUT_SECONDS``).

docs/operations.md lists every series.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Final, Generic, TypeVar, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from imgproc_core.use_cases import OutboxBacklog

__all__ = [
    "NO_CONSUMER_METRICS",
    "OUTBOX_READ_TIMEOUT_SECONDS",
    "ConsumerMetrics",
    "NullConsumerMetrics",
    "RelayMetrics",
    "metrics_served",
    "process_registry",
    "register_if_collector",
]

logger = logging.getLogger(__name__)

#: How long a scrape waits for the outbox's counts before it reports them unreadable.
OUTBOX_READ_TIMEOUT_SECONDS: Final = 2.0

_T = TypeVar("_T")


class ConsumerMetrics(Collector):
    """What the Kafka consumer sees: its lag per partition, its rebalances, the jobs it runs.

    The consumer (:class:`imgproc_worker.consumer.Worker`, whose ``ConsumerMetrics`` protocol
    this implements) calls these from its polling thread; scrapes read them from the metrics
    server's thread.
    """

    def __init__(self) -> None:
        self._lag = Gauge(
            "imgproc_worker_consumer_lag",
            "Messages of a partition this worker owns that are not known done: from its last "
            "commit to the partition's end",
            ["topic", "partition"],
            registry=None,
        )
        self._rebalances = Counter(
            "imgproc_worker_rebalances",
            "Changes of this worker's partition assignment",
            registry=None,
        )
        self._assigned = Counter(
            "imgproc_worker_partitions_assigned",
            "Partitions given to this worker by rebalances",
            registry=None,
        )
        self._revoked = Counter(
            "imgproc_worker_partitions_revoked",
            "Partitions taken from this worker by rebalances",
            registry=None,
        )
        self._in_flight = Gauge(
            "imgproc_worker_jobs_in_flight",
            "Jobs this worker's job threads are running",
            registry=None,
        )
        self._lag_by_partition: dict[tuple[str, int], Gauge] = {}

    def rebalanced(self, assigned: int, revoked: int) -> None:
        """One assignment change: ``assigned`` partitions came, ``revoked`` went."""
        self._rebalances.inc()
        self._assigned.inc(max(0, assigned))
        self._revoked.inc(max(0, revoked))

    def partition_lag(self, topic: str, partition: int, lag: int) -> None:
        key = (topic, partition)
        gauge = self._lag_by_partition.get(key)
        if gauge is None:
            gauge = self._lag_by_partition[key] = self._lag.labels(topic, str(partition))
        gauge.set(max(0, lag))

    def partition_forgotten(self, topic: str, partition: int) -> None:
        """The partition is no longer this worker's: its lag is another worker's to report."""
        if self._lag_by_partition.pop((topic, partition), None) is not None:
            self._lag.remove(topic, str(partition))

    def in_flight(self, jobs: int) -> None:
        self._in_flight.set(max(0, jobs))

    def collect(self) -> Iterable[Metric]:
        for metric in (self._lag, self._rebalances, self._assigned, self._revoked):
            yield from metric.collect()
        yield from self._in_flight.collect()


class NullConsumerMetrics:
    """:class:`ConsumerMetrics`'s methods, counting nothing."""

    def rebalanced(self, assigned: int, revoked: int) -> None:
        pass

    def partition_lag(self, topic: str, partition: int, lag: int) -> None:
        pass

    def partition_forgotten(self, topic: str, partition: int) -> None:
        pass

    def in_flight(self, jobs: int) -> None:
        pass


NO_CONSUMER_METRICS: Final = NullConsumerMetrics()


class _BoundedRead(Generic[_T]):
    """Runs ``read`` on a daemon thread and waits for it at most ``timeout`` seconds.

    A read that outlasts its wait is not started again while it runs: the next call waits on
    the same one. So a database that hangs costs one thread, not one per scrape.
    """

    def __init__(self, read: Callable[[], _T], timeout: float) -> None:
        self._read = read
        self._timeout = timeout
        self._lock = threading.Lock()
        self._pending: Future[_T] | None = None

    def __call__(self) -> _T:
        """The read's result; ``TimeoutError``, or what the read raised."""
        with self._lock:
            future = self._pending
            if future is None or future.done():
                future = self._pending = Future()
                threading.Thread(
                    target=self._run, args=(future,), name="imgproc-metrics-read", daemon=True
                ).start()
        return future.result(timeout=self._timeout)

    def _run(self, future: Future[_T]) -> None:
        try:
            future.set_result(self._read())
        except BaseException as exc:
            future.set_exception(exc)


class RelayMetrics(Collector):
    """The relay's series: what it relayed and failed to relay, counted by its loop, and the
    outbox's depth and oldest row, read through ``backlog`` when scraped."""

    def __init__(
        self,
        backlog: Callable[[], OutboxBacklog],
        *,
        read_timeout_seconds: float = OUTBOX_READ_TIMEOUT_SECONDS,
    ) -> None:
        self._backlog = _BoundedRead(backlog, read_timeout_seconds)
        self._read_timeout = read_timeout_seconds
        self._relayed = Counter(
            "imgproc_relay_jobs_relayed",
            "Jobs published to the broker and removed from the outbox",
            registry=None,
        )
        self._failures = Counter(
            "imgproc_relay_failures",
            "Relay attempts that failed (the broker or the database unavailable)",
            registry=None,
        )

    def relayed(self, jobs: int) -> None:
        self._relayed.inc(jobs)

    def relay_failed(self) -> None:
        self._failures.inc()

    def collect(self) -> Iterator[Metric]:
        yield from self._relayed.collect()
        yield from self._failures.collect()
        up = GaugeMetricFamily(
            "imgproc_metrics_source_up", "Whether the outbox could be read from the database"
        )
        try:
            backlog = self._backlog()
        except TimeoutError:
            logger.warning("metrics: the outbox was not read within %.1f s", self._read_timeout)
            up.add_metric([], 0)
            yield up
            return
        except Exception:
            logger.warning("metrics: cannot read the outbox", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        depth = GaugeMetricFamily("imgproc_relay_outbox_depth", "Jobs waiting in the outbox")
        depth.add_metric([], backlog.depth)
        yield depth
        age = GaugeMetricFamily(
            "imgproc_relay_outbox_oldest_age_seconds",
            "How long the oldest job in the outbox has waited (0 when it is empty)",
        )
        age.add_metric([], backlog.oldest_age_seconds)
        yield age
        up.add_metric([], 1)
        yield up


def process_registry() -> CollectorRegistry:
    """A registry with this process's own series (CPU, memory, file descriptors, Python)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def register_if_collector(registry: CollectorRegistry, candidate: object) -> None:
    """Register ``candidate`` when it is a Prometheus collector, one with ``collect()`` (the
    container's job metrics are, unless a test or a service replaced them with another kind)."""
    if callable(getattr(candidate, "collect", None)):
        registry.register(cast(Collector, candidate))


@contextmanager
def metrics_served(registry: CollectorRegistry, host: str, port: int) -> Iterator[str | None]:
    """Serve ``registry`` at ``http://host:port/metrics`` while the block runs; yields that
    URL, or None when ``port`` is 0 or cannot be listened on. Metrics are an aid: a process
    that cannot serve them logs why and goes on with its work."""
    if port == 0:
        logger.info("metrics are off (port 0)")
        yield None
        return
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        logger.error("cannot serve metrics on %s:%d (%s); going on without them", host, port, exc)
        yield None
        return
    url = f"http://{host}:{port}/metrics"
    logger.info("serving metrics at %s", url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)
