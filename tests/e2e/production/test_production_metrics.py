"""``imgproc relay`` and ``imgproc worker`` as real processes on the production stack, scraped
on their metrics ports the way Prometheus would.

One run serves every test of the module: jobs wait in the outbox while a relay that cannot
reach the broker shows them (its depth, its oldest job's age); then a relay that can reach it
and a worker run them all, and both are scraped once the jobs are READY (the worker once its
lag is back to zero).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from imgproc_core.domain.jobs import JobStatus
from tests.e2e.conftest import _free_port
from tests.e2e.production.deployment import (
    JOB_DEADLINE_SECONDS,
    START_DEADLINE_SECONDS,
    production_deployment,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PARTITIONS = 2
JOBS = 6
ORIGINAL = "basn2c08.png"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass(frozen=True)
class Scrape:
    """One scrape of a metrics endpoint: the family names, and every sample's value."""

    families: frozenset[str]
    samples: Samples

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def values(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [
            (dict(labels), value) for (each, labels), value in self.samples.items() if each == name
        ]


def scrape(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    families = list(text_string_to_metric_families(text))
    return Scrape(
        frozenset(family.name for family in families),
        {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in families
            for sample in family.samples
        },
    )


def scrape_until(url: str, done: Callable[[Scrape], bool], what: str) -> Scrape:
    """Scrape ``url`` until ``done(scrape)`` holds (the process may not listen yet)."""
    last: object = None

    def scraped_done() -> Scrape | None:
        nonlocal last
        scraped = scrape(url)
        last = scraped.samples
        return scraped if done(scraped) else None

    return wait_until(
        scraped_done,
        timeout=START_DEADLINE_SECONDS,
        interval=0.2,
        message=lambda: f"{url}: never {what}; last samples: {last}",
        ignoring=OSError,
    )


@dataclass(frozen=True)
class Run:
    topic: str
    stranded_relay: Scrape
    relay: Scrape
    worker: Scrape


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Iterator[Run]:
    tmp_path = tmp_path_factory.mktemp("metrics")
    with production_deployment(tmp_path, PARTITIONS) as (stack, deployed):
        container = stack.container()
        seeded = stack.seed(
            container,
            corpus_dir / "pngsuite" / ORIGINAL,
            [{"resize": {"width": 8 + n}, "format": ("png", "webp")[n % 2]} for n in range(JOBS)],
        )

        # Nothing listens on that broker's port: the jobs stay in the outbox, and age.
        stranded_port = _free_port()
        stranded = deployed.start_relay(
            kafka_bootstrap_servers=f"127.0.0.1:{_free_port()}",
            relay_metrics_port=str(stranded_port),
        )
        stranded_scrape = scrape_until(
            f"http://127.0.0.1:{stranded_port}/metrics",
            lambda s: (s.value("imgproc_relay_outbox_oldest_age_seconds") or 0) > 1,
            "showed the outbox ageing",
        )
        # Stuck reaching the broker; it holds no lease, so nothing is lost.
        stranded.kill()

        relay_port, worker_port = _free_port(), _free_port()
        relay = deployed.start_relay(relay_metrics_port=str(relay_port))
        worker = deployed.start_worker(worker_processes="1", worker_metrics_port=str(worker_port))
        images = stack.wait_for(
            container, [image.id for image in seeded.derived], deadline=JOB_DEADLINE_SECONDS
        )
        assert {image.status for image in images} == {JobStatus.READY}

        relay_scrape = scrape_until(
            f"http://127.0.0.1:{relay_port}/metrics",
            lambda s: s.value("imgproc_relay_outbox_depth") == 0,
            "showed an empty outbox",
        )
        # The worker reports its lag once a second, from its last commit: zero once the
        # offsets of the finished jobs are committed.
        worker_scrape = scrape_until(
            f"http://127.0.0.1:{worker_port}/metrics",
            lambda s: (
                bool(lags := s.values("imgproc_worker_consumer_lag"))
                and all(value == 0 for _, value in lags)
            ),
            "showed its partitions caught up",
        )
        for started in (relay, worker):
            assert started.terminate() == 0, started.tail()
        yield Run(stack.topics.topic, stranded_scrape, relay_scrape, worker_scrape)


def test_a_relay_that_cannot_publish_shows_the_backlog_waiting(run: Run) -> None:
    scraped = run.stranded_relay
    assert scraped.value("imgproc_relay_outbox_depth") == JOBS
    assert scraped.value("imgproc_metrics_source_up") == 1
    assert scraped.value("imgproc_relay_jobs_relayed_total") == 0


def test_the_relay_counts_what_it_relayed_and_the_outbox_empties(run: Run) -> None:
    scraped = run.relay
    assert scraped.value("imgproc_relay_outbox_depth") == 0
    assert scraped.value("imgproc_relay_outbox_oldest_age_seconds") == 0
    assert scraped.value("imgproc_relay_jobs_relayed_total") == JOBS
    assert scraped.value("imgproc_relay_failures_total") == 0
    assert scraped.value("imgproc_metrics_source_up") == 1
    assert (scraped.value("process_cpu_seconds_total") or 0) > 0


def test_the_worker_serves_every_series(run: Run) -> None:
    assert {
        "imgproc_jobs",
        "imgproc_job_duration_seconds",
        "imgproc_jobs_running",
        "imgproc_dead_letters",
        "imgproc_worker_consumer_lag",
        "imgproc_worker_rebalances",
        "imgproc_worker_partitions_assigned",
        "imgproc_worker_partitions_revoked",
        "imgproc_worker_jobs_in_flight",
        "process_cpu_seconds",
    } <= run.worker.families
    assert run.worker.value("imgproc_jobs_running") == 0
    assert run.worker.value("imgproc_dead_letters_total", code="gave_up") == 0


def test_the_worker_counts_the_jobs_it_ran(run: Run) -> None:
    assert run.worker.value("imgproc_jobs_total", outcome="ready") == JOBS
    assert run.worker.value("imgproc_job_duration_seconds_count", format="png") == JOBS / 2
    assert run.worker.value("imgproc_job_duration_seconds_count", format="webp") == JOBS / 2


def test_the_worker_reports_its_partitions_and_their_lag(run: Run) -> None:
    assert (run.worker.value("imgproc_worker_rebalances_total") or 0) >= 1
    assert (run.worker.value("imgproc_worker_partitions_assigned_total") or 0) >= PARTITIONS
    # A series for each partition the worker took jobs from: all the jobs are of one source
    # image, so of one partition.
    lags = run.worker.values("imgproc_worker_consumer_lag")
    assert len(lags) == 1
    ((labels, lag),) = lags
    assert labels["topic"] == run.topic
    assert int(labels["partition"]) in range(PARTITIONS)
    assert lag == 0
    assert run.worker.value("imgproc_worker_jobs_in_flight") == 0
