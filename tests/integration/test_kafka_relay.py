"""The relay on real services: outbox rows in PostgreSQL become messages on a Kafka topic,
keyed by their source image, and leave the outbox only once the broker holds them."""

from __future__ import annotations

import json
import socket
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from dependency_injector import providers

from imgproc_core.adapters.kafka import KafkaJobPublisher, ProducerTimeouts, ensure_topics
from imgproc_core.adapters.memory import ManualClock
from imgproc_core.container import Container
from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.ports.messages import JOB_TAG, decode_job
from imgproc_core.use_cases import RelayOutbox
from imgproc_worker import run_worker
from tests.support.kafka import end_offsets, read_messages, wait_until_committed
from tests.support.production import ProductionStack, production_stack

pytestmark = pytest.mark.integration

LEASE_SECONDS = 60.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ProductionStack]:
    with production_stack(tmp_path, job_lease_seconds=LEASE_SECONDS) as built:
        yield built


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def container(stack: ProductionStack, clock: ManualClock) -> Container:
    """The stack's container on a clock the test moves, so that leases can run out."""
    built = stack.container()
    built.clock.override(providers.Object(clock))
    return built


@pytest.fixture
def original(corpus_dir: Path) -> Path:
    return corpus_dir / "pillow" / "hopper.jpg"


def _resizes(count: int) -> list[dict[str, object]]:
    return [{"resize": {"width": 16 + n}, "format": "png"} for n in range(count)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Crash(BaseException):
    """The relay process dies here (a ``BaseException``, so nothing on the way catches it)."""


class _DiesAfterFlushing:
    """A publisher whose relay dies right after the broker stored the batch, before the rows
    are acknowledged."""

    def __init__(self, publisher: KafkaJobPublisher) -> None:
        self._publisher = publisher

    def publish(self, job: TransformJob) -> None:
        self._publisher.publish(job)

    def flush(self) -> None:
        self._publisher.flush()
        raise _Crash


def test_rows_become_messages_keyed_by_source_and_leave_the_outbox(
    stack: ProductionStack, container: Container, clock: ManualClock, original: Path
) -> None:
    first = stack.seed(container, original, _resizes(4), after_each=lambda: clock.advance(1))
    second = stack.seed(container, original, _resizes(3), after_each=lambda: clock.advance(1))
    assert stack.outbox_size(container) == 7

    assert container.relay_outbox(relay_id="relay-1")() == 7

    assert stack.outbox_size(container) == 0
    records = read_messages(stack.topics.bootstrap, stack.topics.topic, 7, settle_seconds=1.0)
    assert len(records) == 7
    by_source: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for record in records:
        payload = json.loads(record.value)
        assert payload["type"] == JOB_TAG
        job = decode_job(record.value).to_job()
        assert record.key == job.source_id.encode()
        by_source[job.source_id].append((record.partition, record.offset, job.image_id))
    for seeded in (first, second):
        placed = sorted(by_source[seeded.source.id])
        # One image's jobs share one partition, in the order they were queued.
        assert {partition for partition, _, _ in placed} == {placed[0][0]}
        assert [image_id for _, _, image_id in placed] == [image.id for image in seeded.derived]
    jobs = {decode_job(record.value).to_job() for record in records}
    assert jobs == {
        TransformJob(image_id=image.id, source_id=seeded.source.id, user_id=seeded.user_id)
        for seeded in (first, second)
        for image in seeded.derived
    }


def test_an_empty_outbox_publishes_nothing(stack: ProductionStack, container: Container) -> None:
    assert container.relay_outbox(relay_id="relay-1")() == 0
    assert sum(end_offsets(stack.topics.bootstrap, stack.topics.topic).values()) == 0


def test_an_unreachable_broker_gives_the_rows_back_for_the_next_relay(
    stack: ProductionStack, container: Container, clock: ManualClock, original: Path
) -> None:
    seeded = stack.seed(container, original, _resizes(2))
    unreachable = KafkaJobPublisher(
        f"127.0.0.1:{_free_port()}",
        stack.topics.topic,
        timeouts=ProducerTimeouts(connect_seconds=1.0, delivery_seconds=2.0),
    )
    try:
        relay = RelayOutbox(
            container.unit_of_work,
            unreachable,
            clock,
            "relay-down",
            lease_seconds=LEASE_SECONDS,
        )
        with pytest.raises(DependencyUnavailable) as raised:
            relay()
    finally:
        unreachable.close()

    assert raised.value.dependency == "kafka"
    assert stack.outbox_size(container) == 2
    # Given back by the failed relay: the next relay publishes them at once, lease or not.
    assert container.relay_outbox(relay_id="relay-up")() == 2

    assert stack.outbox_size(container) == 0
    records = read_messages(stack.topics.bootstrap, stack.topics.topic, 2, settle_seconds=1.0)
    assert sorted(decode_job(record.value).image_id for record in records) == sorted(
        image.id for image in seeded.derived
    )


def test_topics_on_an_unreachable_broker_are_a_dependency_error() -> None:
    with pytest.raises(DependencyUnavailable) as raised:
        ensure_topics(f"127.0.0.1:{_free_port()}", "jobs", "dead", 3, timeout_seconds=1.0)
    assert raised.value.dependency == "kafka"


def test_creating_the_topics_again_changes_nothing(stack: ProductionStack) -> None:
    topics = stack.topics
    assert ensure_topics(topics.bootstrap, topics.topic, topics.dead_letter_topic, 12) == []
    assert len(end_offsets(topics.bootstrap, topics.topic)) == topics.partitions
    assert len(end_offsets(topics.bootstrap, topics.dead_letter_topic)) == 1


def test_concurrent_relays_publish_every_row(
    stack: ProductionStack, container: Container, original: Path
) -> None:
    seeded = stack.seed(container, original, _resizes(45))
    relays = [container.relay_outbox(relay_id=f"relay-{n}", batch_size=4) for n in range(3)]
    start = threading.Barrier(len(relays))
    errors: list[BaseException] = []

    def drain(relay: RelayOutbox) -> None:
        try:
            start.wait()
            while stack.outbox_size(container):
                relay()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(relay,)) for relay in relays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not errors
    assert stack.outbox_size(container) == 0
    records = read_messages(stack.topics.bootstrap, stack.topics.topic, 45, settle_seconds=1.0)
    published = [decode_job(record.value).image_id for record in records]
    # Leases keep relays off each other's rows: every job once, none twice.
    assert sorted(published) == sorted(image.id for image in seeded.derived)


def test_a_relay_dying_before_it_acknowledges_is_covered_by_another(
    stack: ProductionStack, container: Container, clock: ManualClock, original: Path
) -> None:
    seeded = stack.seed(container, original, _resizes(3))
    publisher = container.job_publisher()
    dying = RelayOutbox(
        container.unit_of_work,
        _DiesAfterFlushing(publisher),
        clock,
        "relay-dies",
        lease_seconds=LEASE_SECONDS,
    )
    with pytest.raises(_Crash):
        dying()
    assert stack.outbox_size(container) == 3

    clock.advance(LEASE_SECONDS + 1)
    assert container.relay_outbox(relay_id="relay-2")() == 3
    assert stack.outbox_size(container) == 0
    records = read_messages(stack.topics.bootstrap, stack.topics.topic, 6, settle_seconds=1.0)
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[decode_job(record.value).image_id] += 1
    assert counts == {image.id: 2 for image in seeded.derived}

    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(container, stop))
    worker.start()
    try:
        images = stack.wait_for(container, [image.id for image in seeded.derived])
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()

    assert {image.status for image in images} == {JobStatus.READY}
    # Each duplicate rendered the same bytes at the same key: one file per derived image.
    derived_files = [key for key in stack.blob_files() if key != seeded.source.storage_key]
    assert derived_files == sorted(image.storage_key for image in images)
    for image in images:
        assert (stack.storage_dir / image.storage_key).stat().st_size == image.size_bytes
    assert sum(end_offsets(stack.topics.bootstrap, stack.topics.dead_letter_topic).values()) == 0
