"""Contract of JobMetrics, run against every implementation in IMPLEMENTATIONS.

The port only receives calls; each implementation comes with a reader that says what it
counted (the fake's own lists, or the Prometheus series read back through a registry), and
the tests speak to the reader only.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from imgproc_core.adapters.memory import InMemoryJobMetrics
from imgproc_core.adapters.prometheus import PrometheusJobMetrics
from imgproc_core.ports import JobMetrics


@dataclass
class Reader:
    """What an implementation counted, in one vocabulary."""

    in_flight: Callable[[], int]
    outcomes: Callable[[], Counter[str]]
    dead_letters: Callable[[], Counter[str]]
    #: Attempts timed, by output format ("unknown" when none was given).
    timed: Callable[[], Counter[str]]


def _memory() -> tuple[JobMetrics, Reader]:
    metrics = InMemoryJobMetrics()

    def timed() -> Counter[str]:
        return Counter(
            ended.output_format or "unknown"
            for ended in metrics.ended
            if ended.outcome not in ("already_ready", "gone", "unavailable")
        )

    return metrics, Reader(
        lambda: metrics.in_flight,
        lambda: Counter(metrics.outcomes),
        lambda: Counter(metrics.dead_lettered),
        timed,
    )


def _prometheus() -> tuple[JobMetrics, Reader]:
    metrics = PrometheusJobMetrics()
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics)

    def samples(name: str, label: str) -> Counter[str]:
        counted: Counter[str] = Counter()
        for family in registry.collect():
            for sample in family.samples:
                if sample.name == name and sample.value:
                    counted[sample.labels[label]] = int(sample.value)
        return counted

    def in_flight() -> int:
        return int(registry.get_sample_value("imgproc_jobs_running") or 0)

    return metrics, Reader(
        in_flight,
        lambda: samples("imgproc_jobs_total", "outcome"),
        lambda: samples("imgproc_dead_letters_total", "code"),
        lambda: samples("imgproc_job_duration_seconds_count", "format"),
    )


IMPLEMENTATIONS = [
    pytest.param(_memory, id="memory"),
    pytest.param(_prometheus, id="prometheus"),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def metrics_and_reader(request: pytest.FixtureRequest) -> tuple[JobMetrics, Reader]:
    build: Callable[[], tuple[JobMetrics, Reader]] = request.param
    return build()


def test_nothing_is_counted_before_the_first_job(
    metrics_and_reader: tuple[JobMetrics, Reader],
) -> None:
    _, reader = metrics_and_reader
    assert reader.in_flight() == 0
    assert reader.outcomes() == Counter()
    assert reader.dead_letters() == Counter()
    assert reader.timed() == Counter()


def test_an_attempt_is_in_flight_from_its_start_to_its_end(
    metrics_and_reader: tuple[JobMetrics, Reader],
) -> None:
    metrics, reader = metrics_and_reader
    metrics.job_started()
    metrics.job_started()
    assert reader.in_flight() == 2

    metrics.job_ended("ready", "webp", 0.2)
    assert reader.in_flight() == 1
    metrics.job_ended("retried", "webp", 1.5)
    assert reader.in_flight() == 0


def test_attempts_are_counted_by_outcome(metrics_and_reader: tuple[JobMetrics, Reader]) -> None:
    metrics, reader = metrics_and_reader
    for outcome in ("ready", "ready", "failed", "unavailable", "gave_up", "ready"):
        metrics.job_started()
        metrics.job_ended(outcome, "jpeg", 0.01)

    assert reader.outcomes() == Counter(ready=3, failed=1, unavailable=1, gave_up=1)


def test_attempts_that_ran_a_transformation_are_timed_by_output_format(
    metrics_and_reader: tuple[JobMetrics, Reader],
) -> None:
    metrics, reader = metrics_and_reader
    ended = [
        ("ready", "webp"),
        ("ready", "jpeg"),
        ("failed", "jpeg"),
        ("retried", None),
        ("gave_up", "avif"),
        # Found nothing to do, or a dependency down: not how long a job takes.
        ("already_ready", "jpeg"),
        ("gone", "png"),
        ("unavailable", "webp"),
    ]
    for outcome, output_format in ended:
        metrics.job_started()
        metrics.job_ended(outcome, output_format, 0.3)

    assert reader.timed() == Counter(jpeg=2, webp=1, avif=1, unknown=1)


def test_dead_letters_are_counted_by_code(metrics_and_reader: tuple[JobMetrics, Reader]) -> None:
    metrics, reader = metrics_and_reader
    for code in ("job_failed", "gave_up", "job_failed", "malformed_message"):
        metrics.job_dead_lettered(code)

    assert reader.dead_letters() == Counter(job_failed=2, gave_up=1, malformed_message=1)
    assert reader.outcomes() == Counter()


def test_job_threads_reporting_at_once_lose_no_count(
    metrics_and_reader: tuple[JobMetrics, Reader],
) -> None:
    metrics, reader = metrics_and_reader
    threads, jobs = 8, 250
    start = threading.Barrier(threads)

    def work(n: int) -> None:
        start.wait()
        for _ in range(jobs):
            metrics.job_started()
            metrics.job_ended(("ready", "failed")[n % 2], "png", 0.001)
        metrics.job_dead_lettered("gave_up")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(work, range(threads)))

    assert reader.in_flight() == 0
    assert reader.outcomes() == Counter(ready=jobs * 4, failed=jobs * 4)
    assert reader.timed() == Counter(png=threads * jobs)
    assert reader.dead_letters() == Counter(gave_up=threads)
