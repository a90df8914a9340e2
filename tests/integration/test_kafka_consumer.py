"""kafka-python's consumer as the worker drives it, on a real broker: a partition paused in the
middle of a fetch's records is returned again once resumed (see
:func:`imgproc_worker.consumer.release_parked_records`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from imgproc_worker.consumer import release_parked_records
from tests.support.kafka import READ_DEADLINE_SECONDS, TEST_NAME_PREFIX, kafka_bootstrap
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

RECORDS = 10


@pytest.fixture
def topic() -> Iterator[str]:
    """A topic of two partitions holding ``RECORDS`` records each."""
    bootstrap = kafka_bootstrap()
    name = f"{TEST_NAME_PREFIX}parked-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 2, 1)])
        producer = KafkaProducer(bootstrap_servers=bootstrap)
        try:
            for number in range(RECORDS):
                for partition in (0, 1):
                    producer.send(name, value=b"%d" % number, partition=partition)
            producer.flush()
        finally:
            producer.close()
        yield name
    finally:
        try:
            admin.delete_topics([name])
        finally:
            admin.close()


def _paused_mid_fetch(topic: str, between_polls: Callable[[KafkaConsumer], None]) -> list[int]:
    """Take two records of one partition, pause it while the rest of its fetch is in hand,
    consume the other partition whole, resume: the offsets the first partition gave."""
    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(partitions)
        offsets: dict[int, list[int]] = {0: [], 1: []}

        def poll(max_records: int) -> None:
            between_polls(consumer)
            batch = consumer.poll(timeout_ms=500, max_records=max_records)
            for partition, records in batch.items():
                offsets[partition.partition].extend(record.offset for record in records)

        # Each poll waits for records itself: no pause between polls.
        def something_came() -> bool:
            if offsets[0] or offsets[1]:
                return True
            poll(2)
            return False

        wait_until(
            something_came, timeout=READ_DEADLINE_SECONDS, interval=0, message="nothing came"
        )
        first = 0 if offsets[0] else 1
        consumer.pause(partitions[first])

        def the_other_is_whole() -> bool:
            if len(offsets[1 - first]) >= RECORDS:
                return True
            poll(100)
            return False

        wait_until(
            the_other_is_whole,
            timeout=READ_DEADLINE_SECONDS,
            interval=0,
            message=lambda: f"the other partition gave {offsets[1 - first]}",
        )
        consumer.resume(partitions[first])
        # Enough polls for the parked records and a fetch after them; a deadline besides.
        for _ in range(6):
            poll(100)
        return offsets[first]
    finally:
        consumer.close()


def test_a_partition_paused_mid_fetch_gives_the_rest_once_resumed(topic: str) -> None:
    assert _paused_mid_fetch(topic, release_parked_records) == list(range(RECORDS))


def test_without_the_workaround_kafka_python_never_gives_the_rest(topic: str) -> None:
    """The client's behaviour that the workaround is for. Once this fails, a kafka-python
    upgrade has fixed the fetcher, and ``release_parked_records`` can go."""
    assert _paused_mid_fetch(topic, lambda consumer: None) == [0, 1]
