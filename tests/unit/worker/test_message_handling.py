"""What the worker does with one message, on the in-memory adapters: run, retry with backoff,
give up, park, or leave it for the next owner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from imgproc_core.adapters.memory import InMemoryBlobStorage, fake_image_bytes
from imgproc_core.container import Container
from imgproc_core.domain.errors import (
    CodecCrashed,
    DependencyUnavailable,
    ProcessingTimeout,
)
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.ports.messages import (
    DeadLetter,
    DeadLetterCode,
    TransformRequested,
    decode_dead_letter,
    encode_dead_letter,
    encode_job,
    job_key,
)
from imgproc_core.testing import build_test_container
from imgproc_core.use_cases import (
    JobOutcome,
    RegisterUserCommand,
    RequestTransformCommand,
    UploadImageCommand,
)
from imgproc_worker import Delivery, MessageHandler, RetryPolicy

#: Small, so that retries take milliseconds.
POLICY = RetryPolicy(max_attempts=3, backoff_seconds=0.001, outage_backoff_max_seconds=0.002)


class DeadLetters:
    """The dead-letter topic as a list; down for its first ``failures`` publishes."""

    def __init__(self, failures: int = 0) -> None:
        self.letters: list[DeadLetter] = []
        self.failures = failures

    def publish(self, letter: DeadLetter) -> None:
        if self.failures:
            self.failures -= 1
            raise DependencyUnavailable("Kafka is down", "kafka")
        self.letters.append(letter)


class Scripted:
    """The real ProcessTransformJob behind a script of errors to raise first."""

    def __init__(self, process: Callable[[TransformJob], JobOutcome], *errors: Exception):
        self._process = process
        self._errors = list(errors)
        self.calls = 0

    def __call__(self, job: TransformJob) -> JobOutcome:
        self.calls += 1
        if self._errors:
            raise self._errors.pop(0)
        return self._process(job)


@pytest.fixture
def container() -> Container:
    return build_test_container()


@pytest.fixture
def derived(container: Container) -> Image:
    """A derived image whose job is queued."""
    user = container.register_user()(RegisterUserCommand("alice", "correct horse")).user
    source = container.upload_image()(
        UploadImageCommand(user.id, "a.png", fake_image_bytes("png", 400, 300))
    )
    return container.request_transform()(
        RequestTransformCommand(user.id, source.id, Transformation(resize=Resize(width=100)))
    )


def delivery_of(image: Image, value: bytes | None = None, offset: int = 7) -> Delivery:
    assert image.source_id is not None
    job = TransformJob(image_id=image.id, source_id=image.source_id, user_id=image.user_id)
    return Delivery(
        topic="jobs", partition=2, offset=offset, key=job_key(job), value=value or encode_job(job)
    )


def handler(
    container: Container,
    process: Callable[[TransformJob], JobOutcome],
    dead_letters: DeadLetters,
    policy: RetryPolicy = POLICY,
) -> MessageHandler:
    return MessageHandler(
        process=process,
        give_up=container.give_up_job(),
        dead_letters=dead_letters,
        clock=container.clock(),
        worker_id="worker-1",
        policy=policy,
    )


def stored(container: Container, image_id: str) -> Image:
    with container.unit_of_work() as uow:
        image: Image | None = uow.images.get(image_id)
    assert image is not None
    return image


def always() -> bool:
    return True


def test_a_job_is_rendered_and_done_with(container: Container, derived: Image) -> None:
    letters = DeadLetters()
    process = Scripted(container.process_transform_job())

    assert handler(container, process, letters)(delivery_of(derived), always) is True

    assert stored(container, derived.id).status is JobStatus.READY
    assert process.calls == 1
    assert letters.letters == []


def test_a_job_delivered_again_is_done_with_at_once(container: Container, derived: Image) -> None:
    letters = DeadLetters()
    run = handler(container, container.process_transform_job(), letters)
    assert run(delivery_of(derived, offset=1), always)
    storage: InMemoryBlobStorage = container.blob_storage()
    first = storage.get(derived.storage_key)

    assert run(delivery_of(derived, offset=2), always)

    assert storage.get(derived.storage_key) == first
    assert letters.letters == []


@pytest.mark.parametrize(
    "value",
    [b"{", b'{"type": "transform.v2"}', b"\x00\x01", b'{"image_id": "x"}'],
)
def test_a_malformed_message_is_parked_with_its_bytes_and_the_reason(
    container: Container, derived: Image, value: bytes
) -> None:
    letters = DeadLetters()
    process = Scripted(container.process_transform_job())

    assert handler(container, process, letters)(delivery_of(derived, value), always) is True

    assert process.calls == 0
    (letter,) = letters.letters
    assert letter.code == DeadLetterCode.MALFORMED
    assert letter.value == value
    assert letter.job is None
    assert (letter.topic, letter.partition, letter.offset) == ("jobs", 2, 7)
    assert letter.key == derived.source_id
    assert letter.worker == "worker-1"
    assert letter.reason.startswith("not a transform.v1 message")
    assert letter.dead_at == container.clock().now()


def test_a_message_without_a_value_is_parked(container: Container, derived: Image) -> None:
    letters = DeadLetters()
    delivery = Delivery(topic="jobs", partition=0, offset=3, key=None, value=None)

    assert handler(container, container.process_transform_job(), letters)(delivery, always)

    (letter,) = letters.letters
    assert letter.code == DeadLetterCode.MALFORMED
    assert letter.value == b""
    assert letter.key is None


def test_a_corrupt_source_fails_for_good_once(container: Container, derived: Image) -> None:
    storage: InMemoryBlobStorage = container.blob_storage()
    with container.unit_of_work() as uow:
        source = uow.images.get(derived.source_id or "")
    assert source is not None
    storage.put(source.storage_key, b"definitely not an image", "image/png")
    letters = DeadLetters()
    process = Scripted(container.process_transform_job())

    assert handler(container, process, letters)(delivery_of(derived), always) is True

    image = stored(container, derived.id)
    assert image.status is JobStatus.FAILED
    assert process.calls == 1
    (letter,) = letters.letters
    assert letter.code == DeadLetterCode.FAILED
    assert letter.reason == image.failure_reason
    assert letter.job == TransformRequested(
        image_id=derived.id, source_id=source.id, user_id=derived.user_id
    )
    assert letter.attempts == 1


def test_time_limits_are_retried_then_the_job_succeeds(
    container: Container, derived: Image
) -> None:
    letters = DeadLetters()
    process = Scripted(
        container.process_transform_job(), ProcessingTimeout("slow"), CodecCrashed("killed")
    )

    assert handler(container, process, letters)(delivery_of(derived), always) is True

    assert process.calls == 3
    assert stored(container, derived.id).status is JobStatus.READY
    assert letters.letters == []


def test_a_job_that_fails_every_attempt_is_given_up_and_parked(
    container: Container, derived: Image
) -> None:
    letters = DeadLetters()
    process = Scripted(
        container.process_transform_job(), *(ProcessingTimeout("too slow") for _ in range(3))
    )

    assert handler(container, process, letters)(delivery_of(derived), always) is True

    assert process.calls == POLICY.max_attempts
    image = stored(container, derived.id)
    assert image.status is JobStatus.FAILED
    assert image.failure_reason == "gave up after 3 attempts: processing_timeout: too slow"
    (letter,) = letters.letters
    assert letter.code == DeadLetterCode.GAVE_UP
    assert letter.reason == image.failure_reason
    assert letter.attempts == 3
    with container.unit_of_work() as uow:
        assert uow.jobs.pending_count() == 0


def test_an_outage_is_waited_out_without_using_up_attempts(
    container: Container, derived: Image
) -> None:
    letters = DeadLetters()
    outages = [DependencyUnavailable("storage is down", "storage") for _ in range(10)]
    process = Scripted(container.process_transform_job(), *outages)

    assert handler(container, process, letters)(delivery_of(derived), always) is True

    assert process.calls == 11
    assert stored(container, derived.id).status is JobStatus.READY
    assert letters.letters == []


def test_a_dead_letter_waits_for_the_broker(container: Container, derived: Image) -> None:
    letters = DeadLetters(failures=4)

    run = handler(container, container.process_transform_job(), letters)
    assert run(delivery_of(derived, b"garbage"), always) is True

    assert len(letters.letters) == 1


def test_a_job_waiting_to_retry_is_abandoned_when_the_worker_stops(
    container: Container, derived: Image
) -> None:
    letters = DeadLetters()
    process = Scripted(container.process_transform_job(), ProcessingTimeout("slow"))
    stop = threading.Event()
    stop.set()

    assert (
        handler(container, process, letters)(delivery_of(derived), lambda: not stop.is_set())
        is False
    )

    # The attempt in hand ran; the retry was left to the partition's next owner.
    assert process.calls == 1
    assert stored(container, derived.id).status is JobStatus.PENDING
    assert letters.letters == []


def test_an_outage_is_abandoned_when_the_partition_is_lost(
    container: Container, derived: Image
) -> None:
    letters = DeadLetters()
    process = Scripted(
        container.process_transform_job(),
        *(DependencyUnavailable("database is down", "database") for _ in range(100)),
    )
    # The partition goes to another worker during the third wait.
    run = handler(container, process, letters)
    assert run(delivery_of(derived), lambda: process.calls < 3) is False

    assert process.calls == 3
    assert letters.letters == []


def test_delays_grow_exponentially_up_to_their_caps() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_seconds=1.0, outage_backoff_max_seconds=30.0)

    assert [policy.retry_delay(n) for n in range(1, 5)] == [1.0, 2.0, 4.0, 8.0]
    assert policy.retry_delay(20) == 300.0
    assert [policy.outage_delay(n) for n in (1, 3, 5, 6, 50)] == [1.0, 4.0, 16.0, 30.0, 30.0]
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)


def test_dead_letters_round_trip() -> None:
    letter = DeadLetter(
        code=DeadLetterCode.GAVE_UP,
        reason="gave up",
        topic="jobs",
        partition=1,
        offset=5,
        key="k",
        value=b"\x00\xff raw",
        job=TransformRequested(image_id="a", source_id="b", user_id="c", attempts=2),
        attempts=5,
        worker="w",
        dead_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert decode_dead_letter(encode_dead_letter(letter)) == letter
