"""Kafka for tests: the project's private broker, topics of a test's own, and reading back.

The broker comes from ``IMGPROC_TEST_KAFKA_BOOTSTRAP`` when it is set, else from
``scripts/services/kafka.sh start``. When neither gives a broker that answers, the test fails
loudly: an integration test never skips for want of its service.

Each test takes fresh names from :func:`fresh_topics` (a job topic, its dead-letter topic and a
consumer group, all with a random suffix), so tests never see each other's messages; the
``kafka_topics`` fixture creates them and deletes them when the test ends.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.structs import TopicPartition

from imgproc_core.adapters.kafka import ensure_topics
from tests.support.waiting import wait_until

ROOT: Final = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT: Final = ROOT / "scripts" / "services" / "kafka.sh"
KAFKA_BOOTSTRAP_VARIABLE: Final = "IMGPROC_TEST_KAFKA_BOOTSTRAP"
#: Topics and groups the tests make start with this, so a leftover one is easy to recognise.
TEST_NAME_PREFIX: Final = "imgproc-t-"
#: How long a test waits for messages before it fails (a deadline, not a timing assertion).
READ_DEADLINE_SECONDS: Final = 60.0


@functools.cache
def kafka_bootstrap() -> str:
    """The bootstrap servers of a running test broker, started on first use; fails the test if
    none answers."""
    servers = os.environ.get(KAFKA_BOOTSTRAP_VARIABLE)
    if not servers:
        servers = _start_private_kafka()
    try:
        admin = KafkaAdminClient(bootstrap_servers=servers, bootstrap_timeout_ms=20_000)
        try:
            admin.list_topics()
        finally:
            admin.close()
    except Exception as exc:
        pytest.fail(
            f"Kafka at {servers} does not answer ({exc}). Start it with "
            f"`{KAFKA_SCRIPT.relative_to(ROOT)} start`, or point {KAFKA_BOOTSTRAP_VARIABLE} "
            f"at a broker where the tests may create and delete topics named "
            f"{TEST_NAME_PREFIX}*.",
            pytrace=False,
        )
    return servers


def _start_private_kafka() -> str:
    def run(command: str) -> str:
        try:
            done = subprocess.run(
                [str(KAFKA_SCRIPT), command],
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"{KAFKA_SCRIPT} {command} could not run: {exc}", pytrace=False)
        if done.returncode != 0:
            pytest.fail(
                f"{KAFKA_SCRIPT} {command} failed with exit code {done.returncode} and "
                f"{KAFKA_BOOTSTRAP_VARIABLE} is not set; the integration tests need Kafka.\n"
                f"{done.stdout}{done.stderr}",
                pytrace=False,
            )
        return done.stdout.strip()

    run("start")
    return run("bootstrap")


@dataclass(frozen=True)
class KafkaTopics:
    """Names of a test's own: the job topic, its dead-letter topic, the workers' group."""

    bootstrap: str
    topic: str
    dead_letter_topic: str
    group: str
    partitions: int


def fresh_topics(bootstrap: str, partitions: int = 3) -> KafkaTopics:
    suffix = uuid.uuid4().hex[:12]
    return KafkaTopics(
        bootstrap=bootstrap,
        topic=f"{TEST_NAME_PREFIX}jobs-{suffix}",
        dead_letter_topic=f"{TEST_NAME_PREFIX}dead-{suffix}",
        group=f"{TEST_NAME_PREFIX}workers-{suffix}",
        partitions=partitions,
    )


@contextmanager
def created_topics(topics: KafkaTopics) -> Iterator[KafkaTopics]:
    """``topics`` created on the broker, deleted afterwards."""
    ensure_topics(topics.bootstrap, topics.topic, topics.dead_letter_topic, topics.partitions)
    try:
        yield topics
    finally:
        admin = KafkaAdminClient(bootstrap_servers=topics.bootstrap)
        try:
            admin.delete_topics([topics.topic, topics.dead_letter_topic], raise_errors=False)
        finally:
            admin.close()


def read_messages(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    deadline_seconds: float = READ_DEADLINE_SECONDS,
    settle_seconds: float = 0.0,
) -> list[Any]:
    """The first ``count`` messages of every partition of ``topic`` put together, read from the
    beginning outside any group; fails if fewer arrive before the deadline. With
    ``settle_seconds``, keeps reading that long after the ``count``-th, so that a test can also
    see messages that should not be there."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    try:
        partitions = _partitions(consumer, topic)
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []

        def read_enough() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return len(records) >= count

        # The poll itself waits for messages: no pause between polls.
        wait_until(
            read_enough,
            timeout=deadline_seconds,
            interval=0,
            message=lambda: f"{len(records)} of {count} messages on {topic}",
        )
        # Reading on for a set time, not waiting for a condition: what comes now should not.
        settled_at = time.monotonic() + settle_seconds
        while time.monotonic() < settled_at:
            read_enough()
        return records
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = _partitions(consumer, topic)
        ends = consumer.end_offsets(partitions)
        return {partition.partition: offset for partition, offset in ends.items()}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    """The group's committed offset of each partition it committed, by partition number."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        answer = admin.list_group_offsets({group: None})
    finally:
        admin.close()
    return {
        partition.partition: committed.offset
        for partition, committed in answer.get(group, {}).items()
        if committed.offset >= 0
    }


def wait_until_committed(
    bootstrap: str, group: str, topic: str, *, deadline_seconds: float = READ_DEADLINE_SECONDS
) -> dict[int, int]:
    """Wait until ``group`` has committed every message of ``topic`` there is now (its
    committed offsets equal the end offsets); fails at the deadline."""
    expected = {partition: end for partition, end in end_offsets(bootstrap, topic).items() if end}

    committed: dict[int, int] = {}

    def caught_up() -> bool:
        nonlocal committed
        committed = committed_offsets(bootstrap, group)
        return all(committed.get(partition) == end for partition, end in expected.items())

    wait_until(
        caught_up,
        timeout=deadline_seconds,
        interval=0.2,
        message=lambda: f"{group} committed {committed} on {topic}; the ends are {expected}",
    )
    return committed


def _partitions(consumer: Any, topic: str) -> list[TopicPartition]:
    numbers = wait_until(
        lambda: consumer.partitions_for_topic(topic),
        timeout=READ_DEADLINE_SECONDS,
        interval=0.1,
        message=f"the topic {topic} has no partitions",
    )
    return [TopicPartition(topic, number) for number in sorted(numbers)]
