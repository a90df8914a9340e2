"""The worker's and the relay's own series, read back through a registry, and the port they
are served on."""

from __future__ import annotations

import inspect
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from imgproc_core.adapters.memory import InMemoryJobMetrics
from imgproc_core.adapters.prometheus import PrometheusJobMetrics
from imgproc_core.use_cases import OutboxBacklog
from imgproc_worker.metrics import (
    NO_CONSUMER_METRICS,
    ConsumerMetrics,
    NullConsumerMetrics,
    RelayMetrics,
    metrics_served,
    process_registry,
    register_if_collector,
)
from tests.support.waiting import wait_until

TOPIC = "imgproc.transform"


@pytest.fixture
def consumer() -> tuple[ConsumerMetrics, CollectorRegistry]:
    metrics = ConsumerMetrics()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics)
    return metrics, registry


def _lag(registry: CollectorRegistry, partition: int) -> float | None:
    return registry.get_sample_value(
        "imgproc_worker_consumer_lag", {"topic": TOPIC, "partition": str(partition)}
    )


def test_lag_is_a_series_per_partition_until_the_partition_is_forgotten(
    consumer: tuple[ConsumerMetrics, CollectorRegistry],
) -> None:
    metrics, registry = consumer
    metrics.partition_lag(TOPIC, 0, 12)
    metrics.partition_lag(TOPIC, 1, 0)
    metrics.partition_lag(TOPIC, 0, 7)
    assert (_lag(registry, 0), _lag(registry, 1)) == (7, 0)

    metrics.partition_forgotten(TOPIC, 0)
    assert _lag(registry, 0) is None
    assert _lag(registry, 1) == 0
    # Forgetting twice, or a partition never reported, is no error; reported again, it is back.
    metrics.partition_forgotten(TOPIC, 0)
    metrics.partition_forgotten(TOPIC, 5)
    metrics.partition_lag(TOPIC, 0, 3)
    assert _lag(registry, 0) == 3


def test_a_negative_lag_reads_as_none(
    consumer: tuple[ConsumerMetrics, CollectorRegistry],
) -> None:
    metrics, registry = consumer
    # A position read just before the high watermark moved can run ahead of it.
    metrics.partition_lag(TOPIC, 2, -1)
    assert _lag(registry, 2) == 0


def test_rebalances_count_each_change_and_the_partitions_that_moved(
    consumer: tuple[ConsumerMetrics, CollectorRegistry],
) -> None:
    metrics, registry = consumer
    metrics.rebalanced(assigned=3, revoked=0)
    metrics.rebalanced(assigned=0, revoked=2)
    metrics.rebalanced(assigned=1, revoked=1)

    assert registry.get_sample_value("imgproc_worker_rebalances_total") == 3
    assert registry.get_sample_value("imgproc_worker_partitions_assigned_total") == 4
    assert registry.get_sample_value("imgproc_worker_partitions_revoked_total") == 3


def test_jobs_in_flight_is_what_the_consumer_last_said(
    consumer: tuple[ConsumerMetrics, CollectorRegistry],
) -> None:
    metrics, registry = consumer
    assert registry.get_sample_value("imgproc_worker_jobs_in_flight") == 0
    metrics.in_flight(4)
    metrics.in_flight(2)
    assert registry.get_sample_value("imgproc_worker_jobs_in_flight") == 2


def test_the_null_consumer_metrics_answer_every_call_the_real_ones_do() -> None:
    public = {
        name
        for name, _ in inspect.getmembers(ConsumerMetrics, inspect.isfunction)
        if not name.startswith("_") and name != "collect"
    }
    assert public == {"rebalanced", "partition_lag", "partition_forgotten", "in_flight"}
    for name in public:
        real = inspect.signature(getattr(ConsumerMetrics, name))
        null = inspect.signature(getattr(NullConsumerMetrics, name))
        assert null == real, name
    assert isinstance(NO_CONSUMER_METRICS, NullConsumerMetrics)
    NO_CONSUMER_METRICS.rebalanced(1, 0)
    NO_CONSUMER_METRICS.partition_lag(TOPIC, 0, 1)
    NO_CONSUMER_METRICS.partition_forgotten(TOPIC, 0)
    NO_CONSUMER_METRICS.in_flight(1)


def _relay(read: object, timeout: float = 0.2) -> tuple[RelayMetrics, CollectorRegistry]:
    metrics = RelayMetrics(read, read_timeout_seconds=timeout)  # type: ignore[arg-type]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return metrics, registry


def test_the_relay_reports_the_outbox_as_read_at_scrape_time() -> None:
    backlogs = iter([OutboxBacklog(7, 42.5), OutboxBacklog(0, 0.0)])
    metrics, registry = _relay(lambda: next(backlogs))
    metrics.relayed(100)
    metrics.relayed(3)
    metrics.relay_failed()

    assert registry.get_sample_value("imgproc_relay_outbox_depth") == 7
    assert registry.get_sample_value("imgproc_relay_outbox_oldest_age_seconds") == 0.0
    # Each get_sample_value is a scrape of its own: the second read found the outbox empty.
    assert registry.get_sample_value("imgproc_relay_jobs_relayed_total") == 103
    assert registry.get_sample_value("imgproc_relay_failures_total") == 1


def test_an_outbox_that_cannot_be_read_is_reported_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> OutboxBacklog:
        raise ConnectionError("the database is down")

    _, registry = _relay(broken)
    with caplog.at_level(logging.WARNING):
        assert registry.get_sample_value("imgproc_metrics_source_up") == 0
    assert registry.get_sample_value("imgproc_relay_outbox_depth") is None
    assert registry.get_sample_value("imgproc_relay_jobs_relayed_total") == 0
    assert "cannot read the outbox" in caplog.text


def test_a_slow_outbox_read_is_given_up_and_not_started_twice() -> None:
    release = threading.Event()
    reads: list[float] = []

    def hangs() -> OutboxBacklog:
        reads.append(time.monotonic())
        release.wait(10)
        return OutboxBacklog(5, 1.0)

    _, registry = _relay(hangs, timeout=0.1)
    started = time.monotonic()
    assert registry.get_sample_value("imgproc_metrics_source_up") == 0
    assert registry.get_sample_value("imgproc_metrics_source_up") == 0
    # Bounded by the timeout, not by the database (a deadline, with room for a busy machine).
    assert time.monotonic() - started < 5
    assert len(reads) == 1

    release.set()
    wait_until(
        lambda: registry.get_sample_value("imgproc_relay_outbox_depth") == 5,
        timeout=5,
        interval=0.001,
        message="the first read never answered",
    )
    # That was the first read, answering at last; the next scrape starts a fresh one.
    assert len(reads) == 1
    assert registry.get_sample_value("imgproc_relay_outbox_depth") == 5
    assert len(reads) == 2


def test_only_collectors_are_registered() -> None:
    registry = CollectorRegistry(auto_describe=True)
    register_if_collector(registry, InMemoryJobMetrics())
    assert list(registry.collect()) == []
    register_if_collector(registry, PrometheusJobMetrics())
    assert registry.get_sample_value("imgproc_jobs_running") == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_registry_is_served_while_the_block_runs() -> None:
    registry = process_registry()
    consumer = ConsumerMetrics()
    registry.register(consumer)
    consumer.partition_lag(TOPIC, 3, 9)
    port = _free_port()

    with metrics_served(registry, "127.0.0.1", port) as url:
        assert url == f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert "process_cpu_seconds" in families
    (lag,) = families["imgproc_worker_consumer_lag"].samples
    assert (lag.labels, lag.value) == ({"topic": TOPIC, "partition": "3"}, 9)
    # Stopped with the block: nothing listens there any more.
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(url, timeout=2)


def test_port_zero_serves_nothing() -> None:
    with metrics_served(CollectorRegistry(), "127.0.0.1", 0) as url:
        assert url is None


def test_a_port_in_use_is_logged_and_the_work_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            caplog.at_level(logging.ERROR),
            metrics_served(CollectorRegistry(), "127.0.0.1", port) as url,
        ):
            assert url is None
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text
