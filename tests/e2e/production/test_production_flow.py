"""The production profile end to end on its real services: one ``imgproc serve``, one
``imgproc relay`` and two ``imgproc worker`` processes on PostgreSQL, Redis, Kafka and the
storage emulator. A user uploads originals and asks for 200 transformations; every one is
rendered into the bucket, both workers take their share, and the API redirects to the bytes."""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PillowImage

from imgproc_core.domain.jobs import JobStatus
from imgproc_core.use_cases import JobOutcomeStatus
from tests.e2e.production.deployment import (
    distinct_spec,
    production_deployment,
    spread,
    transform_burst,
    upload_sources_on_every_partition,
    wait_until_settled,
)
from tests.support.kafka import end_offsets, wait_until_committed

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

logger = logging.getLogger(__name__)

PARTITIONS = 4
JOBS = 200
SAMPLE = 10
ORIGINALS = ("basn2c08.png", "basn0g08.png", "basn3p08.png", "basn6a08.png", "basn4a08.png")


def test_two_workers_render_200_transformations_into_the_bucket(
    tmp_path: Path, corpus_dir: Path
) -> None:
    originals = [corpus_dir / "pngsuite" / name for name in ORIGINALS]
    with production_deployment(tmp_path, PARTITIONS) as (stack, deployed):
        container = stack.container()
        api_process = deployed.start_api()
        relay = deployed.start_relay()
        workers = [deployed.start_worker(worker_processes="2") for _ in range(2)]
        deployed.wait_until_healthy(api_process)
        deployed.wait_until_relaying(relay)
        shares = deployed.wait_until_sharing(workers)

        with api_process.api() as api:
            user = api.register()
            by_partition = upload_sources_on_every_partition(api, user, originals, PARTITIONS)
            sources = spread(by_partition, JOBS)
            burst_started = time.monotonic()
            burst = transform_burst(
                [api_process.base_url],
                user,
                [(source, distinct_spec(n)) for n, source in enumerate(sources)],
            )
            entries = burst.entries()
            images = wait_until_settled(
                container, sources, JOBS, watch=[api_process, relay, *workers]
            )
            settled_after = time.monotonic() - burst_started
            wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)

            assert len({entry["id"] for entry in entries}) == JOBS
            assert sorted(image.id for image in images) == sorted(entry["id"] for entry in entries)
            failed = {
                image.id: image.failure_reason
                for image in images
                if image.status is not JobStatus.READY
            }
            assert not failed
            # The jobs went to every partition, and so to both workers.
            jobs_per_partition = end_offsets(stack.topics.bootstrap, stack.topics.topic)
            assert sorted(jobs_per_partition) == list(range(PARTITIONS))
            assert all(jobs_per_partition.values()), jobs_per_partition

            uploaded = {key for keys in by_partition.values() for key in keys}
            by_id = {image.id: image for image in images}
            for number, entry in enumerate(entries[:SAMPLE]):
                redirect = api.redirect(entry["id"], user)
                assert redirect.status_code == 307, redirect.text
                location = redirect.headers["location"]
                assert location.startswith(f"{stack.settings.gcs_emulator_host}/"), location
                assert f"/b/{stack.settings.gcs_bucket}/" in location, location
                blob = httpx.get(location, timeout=30)
                assert blob.status_code == 200, blob.text
                _assert_rendered_as_asked(blob.content, distinct_spec(number))
                assert len(blob.content) == by_id[entry["id"]].size_bytes
            originals_keys = {stack.image(container, image_id).storage_key for image_id in uploaded}

        blobs = stack.blob_files()
        assert sorted(set(blobs) - originals_keys) == sorted(image.storage_key for image in images)
        assert len(blobs) == len(originals_keys) + JOBS

        rendered = {worker.name: worker.outcomes() for worker in workers}
        logger.info(
            "%d transform requests in %.2f s (%.0f/s); all READY %.2f s after the first "
            "(%.0f jobs/s end to end); partitions %s; outcomes per worker %s",
            JOBS,
            burst.seconds,
            JOBS / burst.seconds,
            settled_after,
            JOBS / settled_after,
            shares,
            rendered,
        )
        for worker in workers:
            assert rendered[worker.name][JobOutcomeStatus.READY] > 0, (worker.name, rendered)
        # Every job rendered by one worker or the other; a job run twice (a rebalance in the
        # middle) is found READY the second time.
        assert sum(counts[JobOutcomeStatus.READY] for counts in rendered.values()) == JOBS
        assert (
            sum(end_offsets(stack.topics.bootstrap, stack.topics.dead_letter_topic).values()) == 0
        )

        for process in (api_process, relay, *workers):
            assert process.terminate() == 0, process.tail()


def _assert_rendered_as_asked(data: bytes, spec: dict[str, Any]) -> None:
    decoded = PillowImage.open(io.BytesIO(data))
    decoded.load()
    resize = spec["resize"]
    assert decoded.size == (resize["width"], resize["height"])
    assert decoded.format == spec["format"].upper()
