"""The embedded profile waits out a storage outage: jobs queued while the blob folder is gone
stay queued, their attempts untouched, and all become READY once it is back; none is FAILED.

Real components of the embedded profile: SQLite, the local blob storage, the Pillow codec and
the app's two worker threads. The storage is broken for real (its folder moved away and a
plain file put in its place). Only the workers' sleep is injected: it runs 20 times faster
than the wall clock, so the outage lasts 60 s of the workers' time (the policy's backoff of
1, 2, 4, 8, 16 and then 30 s) in 3 s of the test's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers

from imgproc_core.adapters.memory import InMemoryJobMetrics
from imgproc_core.container import Container
from tests.e2e.conftest import Api
from tests.e2e.rewired import RewiredApps
from tests.support.local_storage import BrokenFolder

pytestmark = pytest.mark.e2e

#: How much faster than the wall clock the workers' waits run.
SPEED = 20.0
#: How long the storage is down, in the workers' time.
OUTAGE_SECONDS = 60.0
FLOWER = "flower.jpg"
TRANSFORMS: list[dict[str, Any]] = [
    {"resize": {"width": 200}},
    {"rotate": 90},
    {"grayscale": True, "format": "png"},
    {"flip": True},
    {"resize": {"width": 100}, "format": "webp"},
    {"crop": {"x": 0, "y": 0, "width": 100, "height": 100}},
]


class FastSleep:
    """``time.sleep`` at ``SPEED`` times the pace; adds up the time slept, in the workers'
    seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.slept = 0.0

    def __call__(self, seconds: float) -> None:
        time.sleep(seconds / SPEED)
        with self._lock:
            self.slept += seconds


@pytest.fixture
def rewired_app(tmp_path: Path) -> Iterator[RewiredApps]:
    apps = RewiredApps(tmp_path)
    yield apps
    apps.close()


def statuses(api: Api, images: list[dict[str, Any]], user: dict[str, str]) -> set[str]:
    return {api.metadata(image["id"], user)["status"] for image in images}


def test_a_minute_without_storage_fails_no_job(
    rewired_app: RewiredApps, open_api: Any, corpus_dir: Path
) -> None:
    sleep = FastSleep()
    metrics = InMemoryJobMetrics()

    def rewire(container: Container) -> None:
        container.sleep.override(providers.Object(sleep))
        container.job_metrics.override(providers.Object(metrics))

    # The service's own backoff, not the fast one of the other end-to-end tests.
    embedded = rewired_app(rewire, job_backoff_seconds=1.0, job_max_attempts=3)
    with open_api(embedded) as api:
        user = api.register()
        original = api.upload(corpus_dir / "pillow" / FLOWER, user)

        with BrokenFolder(embedded.storage_dir) as storage:
            derived = [api.transform(original["id"], body, user) for body in TRANSFORMS]
            broken_at = time.monotonic()
            while (time.monotonic() - broken_at) * SPEED < OUTAGE_SECONDS:
                assert statuses(api, derived, user) <= {"PENDING", "PROCESSING"}
                time.sleep(0.1)
            storage.repair()

        for image in derived:
            api.wait_until_ready(image["id"], user)

    # Both threads met the outage and waited it out: more outage waits than the three
    # attempts a job has, and none of them counted.
    assert metrics.outcomes.count("unavailable") > 2 * 3
    assert sleep.slept >= OUTAGE_SECONDS
    assert metrics.outcomes.count("ready") == len(TRANSFORMS)
    assert set(metrics.outcomes) == {"unavailable", "ready"}
    assert metrics.dead_lettered == []
    with embedded.container.unit_of_work() as uow:
        assert uow.jobs.pending_count() == 0
