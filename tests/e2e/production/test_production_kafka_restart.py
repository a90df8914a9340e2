"""The Kafka broker crashes (SIGKILL) and comes back while clients keep asking for
transformations through the API: every request is answered, since it only writes the outbox,
and every job is rendered once the relay and the workers have reconnected by themselves.

The broker is the one every test shares: this module has it to itself, and starts it again
however the test ends.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from imgproc_core.container import Container
from imgproc_core.domain.jobs import JobStatus
from tests.e2e.production.deployment import (
    JOB_DEADLINE_SECONDS,
    Burst,
    RunningProcess,
    ServiceScript,
    derived_images,
    distinct_spec,
    production_deployment,
    restarted_at_exit,
    spread,
    transform_burst,
    upload_sources_on_every_partition,
    wait_until_ready_count,
    wait_until_settled,
)
from tests.support.kafka import end_offsets, kafka_bootstrap, wait_until_committed
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

logger = logging.getLogger(__name__)

PARTITIONS = 3
REQUESTS = 180
#: The requests from this one on are sent only once the broker is dead, and those from
#: ``SENT_AFTER_OUTAGE`` on only once it is back: the middle third is answered without it.
SENT_DURING_OUTAGE = 60
SENT_AFTER_OUTAGE = 120
PACE_SECONDS = 0.02
THREADS = 3
#: The outbox lease: a batch the relay could not get acknowledged by the broker is sent again
#: after this long.
LEASE_SECONDS = 5
ORIGINALS = ("basn2c08.png", "basn0g08.png", "basn3p08.png")


def test_a_broker_crash_in_the_middle_of_a_burst_loses_no_job(
    tmp_path: Path, corpus_dir: Path
) -> None:
    kafka = ServiceScript("kafka")
    assert kafka_bootstrap() == kafka.run("bootstrap"), (
        "the tests' broker is not the one scripts/services/kafka.sh controls"
    )
    originals = [corpus_dir / "pngsuite" / name for name in ORIGINALS]
    with (
        production_deployment(tmp_path, PARTITIONS, job_lease_seconds=LEASE_SECONDS) as (
            stack,
            deployed,
        ),
        restarted_at_exit(kafka),
    ):
        container = stack.container()
        api_process = deployed.start_api()
        relay = deployed.start_relay()
        workers = [deployed.start_worker(worker_processes="1") for _ in range(2)]
        deployed.wait_until_healthy(api_process)
        deployed.wait_until_relaying(relay)
        deployed.wait_until_sharing(workers)
        with api_process.api() as api:
            user = api.register()
            by_partition = upload_sources_on_every_partition(api, user, originals, PARTITIONS)
        sources = spread(by_partition, REQUESTS)

        crashed, restarted = threading.Event(), threading.Event()

        def pace(n: int) -> None:
            if n >= SENT_DURING_OUTAGE:
                crashed.wait(timeout=300)
            if n >= SENT_AFTER_OUTAGE:
                restarted.wait(timeout=300)
            time.sleep(PACE_SECONDS)

        burst: list[Burst] = []
        sender = threading.Thread(
            target=lambda: burst.append(
                transform_burst(
                    [api_process.base_url],
                    user,
                    [(source, distinct_spec(n)) for n, source in enumerate(sources)],
                    threads=THREADS,
                    between=pace,
                )
            ),
            name="burst",
        )
        sender.start()
        try:
            # Jobs flow end to end before the crash ...
            wait_until_ready_count(container, sources, 10, watch=[relay, *workers])
            ready_at_crash = _ready(container, sources)
            kafka.kill9()
            crashed_at = time.monotonic()
            crashed.set()
            # ... and requests go on being answered while the broker is away: each answered
            # request is an entry in the database, and later ones wait for the restart.
            _wait_until_requested(container, sources, SENT_AFTER_OUTAGE, api_process)
            kafka.start()
            back_at = time.monotonic()
        finally:
            crashed.set()
            restarted.set()
            sender.join(timeout=300)
        assert not sender.is_alive(), "the burst never ended"
        (sent,) = burst
        entries = sent.entries()

        images = wait_until_settled(
            container, sources, REQUESTS, watch=[api_process, relay, *workers]
        )
        settled_after = time.monotonic() - back_at
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)

        assert sorted(image.id for image in images) == sorted(entry["id"] for entry in entries)
        assert {image.status for image in images} == {JobStatus.READY}
        assert stack.outbox_size(container) == 0
        originals_keys = {stack.image(container, source).storage_key for source in set(sources)}
        blobs = stack.blob_files()
        assert sorted(set(blobs) - originals_keys) == sorted(image.storage_key for image in images)
        assert (
            sum(end_offsets(stack.topics.bootstrap, stack.topics.dead_letter_topic).values()) == 0
        )
        relay_failures = relay.log().count("relay failed")
        logger.info(
            "broker killed with %d of %d jobs READY, down %.1f s, %d requests answered 200 "
            "meanwhile (%d over %.1f s in all); all READY %.1f s after the broker was back; "
            "relay failures %d; worker outcomes %s",
            ready_at_crash,
            REQUESTS,
            back_at - crashed_at,
            SENT_AFTER_OUTAGE - SENT_DURING_OUTAGE,
            len(entries),
            sent.seconds,
            settled_after,
            relay_failures,
            {worker.name: dict(worker.outcomes()) for worker in workers},
        )
        for started in (api_process, relay, *workers):
            assert started.terminate() == 0, started.tail()


def _ready(container: Container, sources: list[str]) -> int:
    return sum(image.status is JobStatus.READY for image in derived_images(container, sources))


def _wait_until_requested(
    container: Container, sources: list[str], count: int, api_process: RunningProcess
) -> None:
    def answered() -> bool:
        if len(derived_images(container, sources)) >= count:
            return True
        assert api_process.running, api_process.tail()
        return False

    wait_until(
        answered,
        timeout=JOB_DEADLINE_SECONDS,
        interval=0.05,
        message=f"fewer than {count} requests answered",
    )
