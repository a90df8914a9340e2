"""What the worker does with one message, on the in-memory adapters: run, retry with backoff,
give up, park, or leave it for the next owner. The policy is the core's (:class:`JobPolicy`),
and so is the runner; waits move the test's clock instead of sleeping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDeadLetterPublisher,
    InMemoryJobMetrics,
    ManualClock,
    fake_image_bytes,
)
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
    JobPolicy,
    ParkMessage,
    RegisterUserCommand,
    RequestTransformCommand,
    RunJob,
    UploadImageCommand,
)
from imgproc_worker import Delivery, MessageHandler
from tests.support.jobs import ScriptedProcess

POLICY = JobPolicy(max_attempts=3, backoff_seconds=1.0, outage_backoff_max_seconds=30.0)


class DeadLetters(InMemoryDeadLetterPublisher):
    """The dead-letter topic as a list; down for its first ``failures`` publishes."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures


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
    policy: JobPolicy = POLICY,
    metrics: InMemoryJobMetrics | None = None,
) -> MessageHandler:
    clock: ManualClock = container.clock()
    run_job = RunJob(
        process,
        container.give_up_job(),
        clock,
        policy,
        dead_letters,
        metrics,
        sleep=clock.advance,
    )
    park = ParkMessage(dead_letters, clock, policy, metrics, sleep=clock.advance)
    return MessageHandler(run_job, park, "worker-1")


def waited(container: Container, since: datetime) -> float:
    """Seconds the handler waited since ``since``, on the test's clock."""
    elapsed: timedelta = container.clock().now() - since
    return elapsed.total_seconds()


def stored(container: Container, image_id: str) -> Image:
    with container.unit_of_work() as uow:
        image: Image | None = uow.images.get(image_id)
    assert image is not None
    return image


def always() -> bool:
    return True


def test_a_job_is_rendered_and_done_with(container: Container, derived: Image) -> None:
    letters = DeadLetters()
    process = ScriptedProcess(container.process_transform_job())

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
    process = ScriptedProcess(container.process_transform_job())

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
    metrics = InMemoryJobMetrics()
    process = ScriptedProcess(container.process_transform_job())

    assert handler(container, process, letters, metrics=metrics)(delivery_of(derived), always)

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
    assert metrics.outcomes == ["failed"]
    assert metrics.dead_lettered == [DeadLetterCode.FAILED]


def test_time_limits_are_retried_in_place_with_backoff_then_the_job_succeeds(
    container: Container, derived: Image
) -> None:
    letters = DeadLetters()
    metrics = InMemoryJobMetrics()
    process = ScriptedProcess(
        container.process_transform_job(), ProcessingTimeout("slow"), CodecCrashed("killed")
    )
    start = container.clock().now()

    assert handler(container, process, letters, metrics=metrics)(delivery_of(derived), always)

    assert process.calls == 3
    assert waited(container, start) == 1.0 + 2.0
    assert stored(container, derived.id).status is JobStatus.READY
    assert letters.letters == []
    assert metrics.outcomes == ["retried", "retried", "ready"]
    assert [attempt.output_format for attempt in metrics.ended] == [None, None, "png"]
    assert metrics.in_flight == 0


def test_a_job_that_fails_every_attempt_is_given_up_and_parked(
    container: Container, derived: Image
) -> None:
    letters = DeadLetters()
    metrics = InMemoryJobMetrics()
    process = ScriptedProcess(
        container.process_transform_job(), *(ProcessingTimeout("too slow") for _ in range(3))
    )

    assert handler(container, process, letters, metrics=metrics)(delivery_of(derived), always)

    assert metrics.outcomes == ["retried", "retried", "gave_up"]
    assert metrics.dead_lettered == [DeadLetterCode.GAVE_UP]

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
    metrics = InMemoryJobMetrics()
    outages = [DependencyUnavailable("storage is down", "storage") for _ in range(10)]
    process = ScriptedProcess(container.process_transform_job(), *outages)
    start = container.clock().now()

    assert handler(container, process, letters, metrics=metrics)(delivery_of(derived), always)

    # Ten outages against three attempts: none of them counted.
    assert process.calls == 11
    # 1, 2, 4, 8, 16 s, then at the cap of 30 s.
    assert waited(container, start) == 1 + 2 + 4 + 8 + 16 + 5 * 30
    assert stored(container, derived.id).status is JobStatus.READY
    assert letters.letters == []
    assert metrics.outcomes == ["unavailable"] * 10 + ["ready"]


def test_a_dead_letter_waits_for_the_broker(container: Container, derived: Image) -> None:
    letters = DeadLetters(failures=4)
    metrics = InMemoryJobMetrics()
    start = container.clock().now()

    run = handler(container, container.process_transform_job(), letters, metrics=metrics)
    assert run(delivery_of(derived, b"garbage"), always) is True

    assert len(letters.letters) == 1
    assert waited(container, start) == 1 + 2 + 4 + 8
    assert metrics.dead_lettered == [DeadLetterCode.MALFORMED]
    assert metrics.started == 0


def test_a_dead_letter_left_unsent_when_the_worker_stops_is_not_done_with(
    container: Container, derived: Image
) -> None:
    letters = DeadLetters()
    letters.available = False
    calls = iter(range(100))

    run = handler(container, container.process_transform_job(), letters)
    assert run(delivery_of(derived, b"garbage"), lambda: next(calls) < 3) is False

    assert letters.letters == []


def test_a_job_waiting_to_retry_is_abandoned_when_the_worker_stops(
    container: Container, derived: Image
) -> None:
    letters = DeadLetters()
    process = ScriptedProcess(container.process_transform_job(), ProcessingTimeout("slow"))
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
    process = ScriptedProcess(
        container.process_transform_job(),
        *(DependencyUnavailable("database is down", "database") for _ in range(100)),
    )
    # The partition goes to another worker during the third wait.
    run = handler(container, process, letters)
    assert run(delivery_of(derived), lambda: process.calls < 3) is False

    assert process.calls == 3
    assert letters.letters == []


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
