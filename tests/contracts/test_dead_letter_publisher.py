"""Contract of DeadLetterPublisher, run against every implementation in IMPLEMENTATIONS: the
in-memory fake and the Kafka adapter on a real broker (topics of the test's own).

A letter is stored whole (the original message's bytes unchanged), under its key, in the order
published, by the time ``publish`` returns; a broker that cannot be reached is
``DependencyUnavailable``, never a hang or a library's own exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from imgproc_core.adapters.memory import InMemoryDeadLetterPublisher
from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.ports import DeadLetterPublisher
from imgproc_core.ports.messages import (
    DeadLetter,
    DeadLetterCode,
    TransformRequested,
    dead_letter_key,
    decode_dead_letter,
)


@dataclass
class DeadLetterTopic:
    publisher: DeadLetterPublisher
    #: The first ``count`` letters stored, with their keys, in order.
    read_back: Callable[[int], list[tuple[bytes | None, DeadLetter]]]
    #: A publisher whose broker cannot be reached.
    unreachable: Callable[[], DeadLetterPublisher]


Implementation = Callable[[ExitStack], DeadLetterTopic]


def _memory(stack: ExitStack) -> DeadLetterTopic:
    publisher = InMemoryDeadLetterPublisher()

    def unreachable() -> DeadLetterPublisher:
        down = InMemoryDeadLetterPublisher()
        down.available = False
        return down

    return DeadLetterTopic(publisher, lambda count: publisher.stored[:count], unreachable)


def _kafka(stack: ExitStack) -> DeadLetterTopic:
    from imgproc_core.adapters.kafka import KafkaDeadLetterPublisher, ProducerTimeouts
    from tests.support.kafka import created_topics, fresh_topics, kafka_bootstrap, read_messages

    topics = stack.enter_context(created_topics(fresh_topics(kafka_bootstrap(), partitions=1)))
    publisher = KafkaDeadLetterPublisher(topics.bootstrap, topics.dead_letter_topic)
    stack.callback(publisher.close)

    def read_back(count: int) -> list[tuple[bytes | None, DeadLetter]]:
        records = read_messages(topics.bootstrap, topics.dead_letter_topic, count)
        return [(record.key, decode_dead_letter(record.value)) for record in records[:count]]

    def unreachable() -> DeadLetterPublisher:
        # Nothing listens on port 1 of this machine.
        down = KafkaDeadLetterPublisher(
            "127.0.0.1:1",
            topics.dead_letter_topic,
            timeouts=ProducerTimeouts(connect_seconds=1.0, delivery_seconds=1.0),
        )
        stack.callback(down.close)
        return down

    return DeadLetterTopic(publisher, read_back, unreachable)


IMPLEMENTATIONS = [
    pytest.param(_memory, id="memory"),
    pytest.param(_kafka, id="kafka", marks=pytest.mark.integration),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def topic(request: pytest.FixtureRequest) -> Iterator[DeadLetterTopic]:
    implementation: Implementation = request.param
    with ExitStack() as stack:
        yield implementation(stack)


def letter(number: int, *, readable: bool = True, key: str | None = "source-1") -> DeadLetter:
    job = TransformRequested(image_id=f"image-{number}", source_id="source-1", user_id="user-1")
    return DeadLetter(
        code=DeadLetterCode.GAVE_UP if readable else DeadLetterCode.MALFORMED,
        reason=f"reason {number}: gave up after 5 attempts",
        topic="imgproc.transform",
        partition=number % 3,
        offset=100 + number,
        key=key,
        value=b'{"type": "transform.v1"} \x00\xff raw',
        job=job if readable else None,
        attempts=5 if readable else 0,
        worker="host-42",
        dead_at=datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC),
    )


def test_a_letter_is_stored_whole_by_the_time_publish_returns(topic: DeadLetterTopic) -> None:
    parked = letter(1)

    topic.publisher.publish(parked)

    assert topic.read_back(1) == [(b"image-1", parked)]


def test_letters_keep_the_order_they_were_published_in(topic: DeadLetterTopic) -> None:
    letters = [letter(n) for n in range(5)]

    for parked in letters:
        topic.publisher.publish(parked)

    assert [stored for _, stored in topic.read_back(5)] == letters


@pytest.mark.parametrize(
    ("parked", "key"),
    [
        (letter(7), b"image-7"),
        (letter(8, readable=False), b"source-1"),
        (letter(9, readable=False, key=None), None),
    ],
    ids=["the job's image", "the original key", "no key"],
)
def test_a_letter_is_keyed_by_its_job_else_by_the_original_key(
    topic: DeadLetterTopic, parked: DeadLetter, key: bytes | None
) -> None:
    topic.publisher.publish(parked)

    assert topic.read_back(1) == [(key, parked)]
    assert dead_letter_key(parked) == key


def test_a_broker_that_cannot_be_reached_is_unavailable(topic: DeadLetterTopic) -> None:
    with pytest.raises(DependencyUnavailable):
        topic.unreachable().publish(letter(1))
