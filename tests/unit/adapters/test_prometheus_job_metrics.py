"""PrometheusJobMetrics as an operator reads it: series names, labels, buckets, and one set of
counts exported through every registry that includes it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from imgproc_core.adapters.prometheus import (
    KNOWN_DEAD_LETTER_CODES,
    KNOWN_OUTCOMES,
    PrometheusJobMetrics,
)


def _registry(metrics: PrometheusJobMetrics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(metrics)
    return registry


def test_every_outcome_and_dead_letter_code_is_a_series_from_the_start() -> None:
    registry = _registry(PrometheusJobMetrics())

    for outcome in KNOWN_OUTCOMES:
        assert registry.get_sample_value("imgproc_jobs_total", {"outcome": outcome}) == 0
    for code in KNOWN_DEAD_LETTER_CODES:
        assert registry.get_sample_value("imgproc_dead_letters_total", {"code": code}) == 0
    assert registry.get_sample_value("imgproc_jobs_running") == 0


def test_a_duration_lands_in_its_bucket_of_its_format() -> None:
    metrics = PrometheusJobMetrics()
    registry = _registry(metrics)
    metrics.job_started()
    metrics.job_ended("ready", "webp", 0.2)

    def bucket(le: str) -> float | None:
        return registry.get_sample_value(
            "imgproc_job_duration_seconds_bucket", {"format": "webp", "le": le}
        )

    assert bucket("0.1") == 0
    assert bucket("0.25") == 1
    assert bucket("+Inf") == 1
    assert registry.get_sample_value("imgproc_job_duration_seconds_sum", {"format": "webp"}) == 0.2


def test_an_unexpected_outcome_is_counted_under_its_own_name() -> None:
    metrics = PrometheusJobMetrics()
    registry = _registry(metrics)
    metrics.job_started()
    metrics.job_ended("something_new", "png", 0.01)

    assert registry.get_sample_value("imgproc_jobs_total", {"outcome": "something_new"}) == 1


def test_two_registries_export_the_same_counts() -> None:
    metrics = PrometheusJobMetrics()
    first, second = _registry(metrics), _registry(metrics)
    metrics.job_started()
    metrics.job_ended("failed", "jpeg", 1.0)

    for registry in (first, second):
        assert registry.get_sample_value("imgproc_jobs_total", {"outcome": "failed"}) == 1
    assert generate_latest(first) == generate_latest(second)
