"""Running the worker and the relay from a built container, as ``imgproc worker`` and
``imgproc relay`` (and ``python -m imgproc_worker``) do: configuration comes from the
environment (``IMGPROC_*``), SIGTERM and SIGINT stop them cleanly, exit status 0."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final, Literal, cast

from prometheus_client.registry import Collector

from imgproc_core.container import Container, build_container
from imgproc_core.settings import Settings, SettingsError
from imgproc_core.use_cases.webhooks import WebhookDispatcher
from imgproc_worker.consumer import ConsumerOptions, Worker
from imgproc_worker.handling import MessageHandler
from imgproc_worker.metrics import (
    ConsumerMetrics,
    RelayMetrics,
    metrics_served,
    process_registry,
    register_if_collector,
)
from imgproc_worker.relay import RelayLoop

__all__ = [
    "LOG_FORMAT",
    "Role",
    "process_id",
    "run_relay",
    "run_worker",
    "serve",
    "stop_on_signals",
    "worker_options",
]

logger = logging.getLogger(__name__)

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

Role = Literal["worker", "relay"]


def process_id() -> str:
    """``host-pid``: names this process in leases, client ids and dead letters."""
    return f"{socket.gethostname()}-{os.getpid()}"


def worker_options(settings: Settings) -> ConsumerOptions:
    return ConsumerOptions(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic=settings.kafka_topic,
        group=settings.kafka_group,
        # One thread more than render processes: it reads its source, and writes its result,
        # while the others' images are being rendered, so the processes never wait for it.
        threads=settings.worker_processes + 1 if settings.worker_processes > 0 else 1,
        max_poll_interval_ms=max(300_000, int((settings.job_time_limit_seconds * 2 + 60) * 1000)),
    )


def _require_kafka(settings: Settings, role: Role) -> None:
    if settings.queue != "kafka":
        raise SettingsError(
            f"IMGPROC_QUEUE is {settings.queue!r}: the {role} needs the Kafka queue "
            "(IMGPROC_QUEUE=kafka); with the table queue, `imgproc serve` runs the jobs itself"
        )


def run_worker(container: Container, stop: threading.Event) -> None:
    """Consume and render jobs until ``stop`` is set (the container's resources are the
    caller's to open and close), serving metrics on ``IMGPROC_WORKER_METRICS_PORT``."""
    settings: Settings = container.settings()
    _require_kafka(settings, "worker")
    worker_id = process_id()
    registry = process_registry()
    # The job runner reports to the container's job metrics; the consumer to its own.
    register_if_collector(registry, container.job_metrics())
    consumer_metrics = ConsumerMetrics()
    registry.register(consumer_metrics)
    handler = MessageHandler(container.run_job(), container.park_message(), worker_id)
    worker = Worker(
        handler,
        worker_options(settings),
        worker_id,
        before_connect=container.ensure_topics,
        metrics=consumer_metrics,
    )
    with metrics_served(registry, settings.metrics_host, settings.worker_metrics_port):
        worker.run(stop)


#: An attempt in hand at shutdown ends within the sender's timeout (5 s).
WEBHOOK_SHUTDOWN_GRACE_SECONDS: Final = 10.0


def run_relay(container: Container, stop: threading.Event) -> RelayLoop:
    """Relay the outbox to Kafka until ``stop`` is set, serving metrics on
    ``IMGPROC_RELAY_METRICS_PORT``; returns the loop (its ``relayed`` count) once stopped."""
    settings: Settings = container.settings()
    _require_kafka(settings, "relay")
    registry = process_registry()
    metrics = RelayMetrics(container.get_outbox_backlog())
    registry.register(metrics)
    loop = RelayLoop(container.relay_outbox(relay_id=f"relay-{process_id()}"), metrics=metrics)
    # The relay sends the webhooks too: it already loops over the database's outboxes, and
    # several relays at once lease what each sends.
    webhook_metrics = container.webhook_metrics()
    if callable(getattr(webhook_metrics, "collect", None)):
        registry.register(cast(Collector, webhook_metrics))
    dispatcher: WebhookDispatcher = container.webhook_dispatcher(
        sender_id=f"relay-{process_id()}:webhooks"
    )
    # Served from the start: the outbox fills up while the broker is away, which is when an
    # operator looks.
    with metrics_served(registry, settings.metrics_host, settings.relay_metrics_port):
        dispatcher.start()
        try:
            # Backed off like a failed batch, so that the broker's return is noticed within
            # seconds however long it was away.
            if not loop.prepare(stop, container.ensure_topics, "cannot create the topics"):
                return loop
            logger.info("relaying the outbox to %s", settings.kafka_topic)
            loop.run(stop)
        finally:
            dispatcher.stop(WEBHOOK_SHUTDOWN_GRACE_SECONDS)
    return loop


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM or SIGINT while the block runs (main thread only)."""

    def requested(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.info("%s: already stopping", name)
        else:
            logger.info("%s: finishing the work in hand, then stopping", name)
        stop.set()

    previous = {
        signum: signal.signal(signum, requested) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def serve(settings: Settings, role: Role) -> None:
    """Run ``role`` with a container built from ``settings`` until SIGTERM or SIGINT.

    ``SettingsError`` when the settings do not choose Kafka or keep a weak secret.
    """
    _require_kafka(settings, role)
    settings.check_secrets()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # kafka-python reports every connection and rebalance step at INFO.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    container = build_container(settings)
    if role == "worker":
        # Jobs decode images in this process when they run inline; pool processes tune
        # themselves.
        container.tune_allocator()
    run: Callable[[Container, threading.Event], object] = (
        run_worker if role == "worker" else run_relay
    )
    stop = threading.Event()
    container.init_resources()
    # Long collector pauses would also hold up the Kafka client's network thread.
    container.freeze_start_up_objects()
    try:
        with stop_on_signals(stop):
            run(container, stop)
    finally:
        container.shutdown_resources()
