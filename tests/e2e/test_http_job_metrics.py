"""The embedded profile's job series on the API's ``/metrics``: the worker threads of
``imgproc serve`` report to the container's job metrics, and the API exports them beside its
own series. An API without worker threads (the production profile's) exports none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Api, EmbeddedApp

pytestmark = pytest.mark.e2e

HOPPER = "hopper.png"


@pytest.fixture
def user(api: Api) -> dict[str, str]:
    return api.register()


def _samples(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(api: Api, name: str, **labels: str) -> float | None:
    return _samples(api).get((name, tuple(sorted(labels.items()))))


def test_the_job_series_of_the_worker_threads_are_on_metrics(make_app: Any, open_api: Any) -> None:
    embedded: EmbeddedApp = make_app()
    with open_api(embedded) as api:
        assert _value(api, "imgproc_jobs_total", outcome="ready") == 0
        assert _value(api, "imgproc_jobs_running") == 0
        assert _value(api, "imgproc_dead_letters_total", code="gave_up") == 0

        # What the container's job metrics are told is what /metrics says.
        job_metrics = embedded.container.job_metrics()
        job_metrics.job_started()
        assert _value(api, "imgproc_jobs_running") == 1
        job_metrics.job_ended("ready", "webp", 0.3)
        job_metrics.job_dead_lettered("job_failed")

        assert _value(api, "imgproc_jobs_running") == 0
        assert _value(api, "imgproc_jobs_total", outcome="ready") == 1
        assert _value(api, "imgproc_job_duration_seconds_count", format="webp") == 1
        assert _value(api, "imgproc_job_duration_seconds_bucket", format="webp", le="0.5") == 1
        assert _value(api, "imgproc_dead_letters_total", code="job_failed") == 1
        # The API's own series are still there.
        assert _value(api, "imgproc_queue_depth") == 0


def test_an_api_without_worker_threads_has_no_job_series(make_app: Any, open_api: Any) -> None:
    with open_api(make_app(worker_threads=0)) as api:
        names = {name for name, _ in _samples(api)}
    assert "imgproc_queue_depth" in names
    assert not {name for name in names if name.startswith(("imgproc_job", "imgproc_dead"))}


def test_jobs_the_worker_threads_ran_are_counted(
    api: Api, user: dict[str, str], corpus_dir: Path
) -> None:
    original = api.upload(corpus_dir / "pillow" / HOPPER, user)
    for body in ({"rotate": 90, "format": "webp"}, {"rotate": 180, "format": "png"}):
        derived = api.transform(original["id"], body, user)
        api.wait_until_ready(derived["id"], user)

    assert _value(api, "imgproc_jobs_total", outcome="ready") == 2
    assert _value(api, "imgproc_job_duration_seconds_count", format="webp") == 1
    assert _value(api, "imgproc_job_duration_seconds_count", format="png") == 1
    assert _value(api, "imgproc_jobs_running") == 0
