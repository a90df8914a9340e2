"""The Kafka worker on real services (PostgreSQL, Kafka, a blob folder): it renders what the
relay published, commits only what is finished, parks what cannot be done on the dead-letter
topic, and loses nothing when it is stopped or killed."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dependency_injector import providers
from kafka import KafkaConsumer, KafkaProducer
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.partitioner.default import murmur2

from imgproc_core.container import Container
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.ports.messages import (
    DeadLetterCode,
    decode_dead_letter,
    decode_job,
    encode_job,
    job_key,
)
from imgproc_core.use_cases import JobOutcome
from imgproc_worker import run_worker
from tests.support.kafka import (
    committed_offsets,
    end_offsets,
    read_messages,
    wait_until_committed,
)
from tests.support.production import (
    ROOT,
    ProductionStack,
    Seeded,
    production_stack,
    python_module_command,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

logger = logging.getLogger(__name__)

#: How long a test waits for a subprocess (a deadline, not a timing assertion).
PROCESS_DEADLINE_SECONDS = 120.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ProductionStack]:
    with production_stack(tmp_path) as built:
        yield built


@pytest.fixture
def container(stack: ProductionStack) -> Container:
    return stack.container()


@pytest.fixture
def original(corpus_dir: Path) -> Path:
    return corpus_dir / "pillow" / "hopper.jpg"


class _RunningWorker:
    """``run_worker`` on a thread of the test process."""

    def __init__(self, container: Container) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(container,), name="test-worker")

    def _run(self, container: Container) -> None:
        try:
            run_worker(container, self.stop)
        except BaseException as exc:
            self.errors.append(exc)

    def __enter__(self) -> _RunningWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()

    def finish(self) -> None:
        """Stop it as SIGTERM would, and wait until it has."""
        self.stop.set()
        self._thread.join(PROCESS_DEADLINE_SECONDS)
        assert not self._thread.is_alive(), "the worker did not stop"
        assert not self.errors, self.errors


class _CountingProcess:
    """The container's ProcessTransformJob, counting its runs per job."""

    def __init__(self, process: Any) -> None:
        self._process = process
        self._lock = threading.Lock()
        self.runs: dict[str, int] = {}

    def __call__(self, job: TransformJob) -> JobOutcome:
        with self._lock:
            self.runs[job.id] = self.runs.get(job.id, 0) + 1
        outcome: JobOutcome = self._process(job)
        return outcome

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.runs.values())


def _transforms(count: int) -> list[dict[str, Any]]:
    return [{"resize": {"width": 20 + 3 * n}, "format": "webp"} for n in range(count)]


def _relay_all(container: Container, stack: ProductionStack) -> None:
    relay = container.relay_outbox(relay_id="test-relay")
    while stack.outbox_size(container):
        relay()


def _dead_letters(stack: ProductionStack, count: int) -> list[Any]:
    """Exactly ``count`` letters: waits for them, then a little longer for any extra."""
    records = read_messages(
        stack.topics.bootstrap, stack.topics.dead_letter_topic, count, settle_seconds=2.0
    )
    assert len(records) == count, [record.value for record in records]
    return [decode_dead_letter(record.value) for record in records]


def _assert_outputs_written_once(
    stack: ProductionStack, seeded: Seeded, images: list[Image]
) -> None:
    """One file per derived image, at its own key, with the size recorded."""
    derived_files = [key for key in stack.blob_files() if key != seeded.source.storage_key]
    assert derived_files == sorted(image.storage_key for image in images)
    for image in images:
        assert image.status is JobStatus.READY, image.failure_reason
        assert (stack.storage_dir / image.storage_key).stat().st_size == image.size_bytes


def test_a_worker_renders_what_the_relay_published_and_commits_it(
    stack: ProductionStack, container: Container, original: Path
) -> None:
    seeded = stack.seed(container, original, _transforms(8))
    _relay_all(container, stack)

    with _RunningWorker(container):
        images = stack.wait_for(container, [image.id for image in seeded.derived])
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)

    _assert_outputs_written_once(stack, seeded, images)
    for image in images:
        assert image.format == "webp"
    assert sum(end_offsets(stack.topics.bootstrap, stack.topics.dead_letter_topic).values()) == 0


def test_malformed_messages_are_parked_and_the_worker_goes_on(
    stack: ProductionStack, container: Container, original: Path
) -> None:
    seeded = stack.seed(container, original, _transforms(1))
    valid = TransformJob(
        image_id=seeded.derived[0].id, source_id=seeded.source.id, user_id=seeded.user_id
    )
    wrong_version = json.loads(encode_job(valid)) | {"type": "transform.v9"}
    unknown_field = json.loads(encode_job(valid)) | {"priority": 1}
    malformed = [
        b"not json at all",
        json.dumps(wrong_version).encode(),
        json.dumps(unknown_field).encode(),
        b"\xff\xfe\x00",
    ]
    producer = KafkaProducer(bootstrap_servers=stack.topics.bootstrap)
    try:
        # All on the valid job's partition, before it: a parked message must not hold it up.
        for value in malformed:
            producer.send(stack.topics.topic, key=job_key(valid), value=value)
        producer.flush()
    finally:
        producer.close()
    _relay_all(container, stack)

    with _RunningWorker(container):
        (image,) = stack.wait_for(container, [valid.image_id])
        letters = _dead_letters(stack, len(malformed))
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)

    assert image.status is JobStatus.READY
    assert sorted(letter.value for letter in letters) == sorted(malformed)
    for letter in letters:
        assert letter.code == DeadLetterCode.MALFORMED
        assert letter.job is None
        assert letter.topic == stack.topics.topic
        assert letter.attempts == 0
        assert letter.key == seeded.source.id
    reasons = {letter.value: letter.reason for letter in letters}
    assert "transform.v9" in reasons[malformed[1]]
    assert "priority" in reasons[malformed[2]]


def test_a_corrupt_source_fails_once_and_is_parked_once(
    stack: ProductionStack, container: Container, original: Path
) -> None:
    seeded = stack.seed(container, original, _transforms(1))
    (stack.storage_dir / seeded.source.storage_key).write_bytes(b"\xff\xd8\xff" + b"\x00" * 64)
    counting = _CountingProcess(container.process_transform_job())
    container.process_transform_job.override(providers.Object(counting))
    _relay_all(container, stack)

    with _RunningWorker(container):
        (image,) = stack.wait_for(container, [seeded.derived[0].id])
        (letter,) = _dead_letters(stack, 1)
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)

    assert image.status is JobStatus.FAILED
    assert image.failure_reason is not None
    assert "corrupt" in image.failure_reason
    # Failed for good: no retries.
    assert counting.runs == {image.id: 1}
    assert letter.code == DeadLetterCode.FAILED
    assert letter.reason == image.failure_reason
    assert letter.job is not None
    assert letter.job.image_id == image.id
    assert decode_job(letter.value).image_id == image.id
    assert letter.attempts == 1
    assert not (stack.storage_dir / image.storage_key).exists()


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)


def _wait_for_exit(process: subprocess.Popen[bytes], log: Path) -> int:
    try:
        return process.wait(PROCESS_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"the process did not exit; its log:\n{log.read_text()}")


def _offsets_by_image(stack: ProductionStack, count: int) -> dict[str, tuple[int, int]]:
    records = read_messages(stack.topics.bootstrap, stack.topics.topic, count)
    return {
        decode_job(record.value).image_id: (record.partition, record.offset) for record in records
    }


def test_sigterm_lets_a_worker_finish_its_job_and_commit_it(
    stack: ProductionStack, container: Container, original: Path, tmp_path: Path
) -> None:
    seeded = stack.seed(container, original, _transforms(3))
    _relay_all(container, stack)
    ids = [image.id for image in seeded.derived]
    log = tmp_path / "worker.log"
    env = stack.env(worker_processes="0", test_codec_delay_seconds="3")
    worker = _start(python_module_command("tests.support.slow_worker"), env, log)
    try:
        _wait_until_one_is_processing(stack, container, ids, worker, log)
        worker.send_signal(signal.SIGTERM)
        status = _wait_for_exit(worker, log)
    finally:
        if worker.poll() is None:
            worker.kill()
    output = log.read_text()
    assert status == 0, output
    assert "finishing the work in hand" in output

    images = {image_id: stack.image(container, image_id) for image_id in ids}
    ready = [image_id for image_id, image in images.items() if image.status is JobStatus.READY]
    # One thread: the job it held when the signal came, and no other, was finished.
    assert len(ready) == 1, {image_id: image.status for image_id, image in images.items()}
    assert all(
        image.status is JobStatus.PENDING
        for image_id, image in images.items()
        if image_id not in ready
    )
    placed = _offsets_by_image(stack, 3)
    committed = committed_offsets(stack.topics.bootstrap, stack.topics.group)
    for image_id, (partition, offset) in placed.items():
        if image_id in ready:
            assert committed.get(partition, 0) > offset
        else:
            assert committed.get(partition, 0) <= offset

    # What it left is there for the next worker.
    with _RunningWorker(container):
        finished = stack.wait_for(container, ids)
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)
    _assert_outputs_written_once(stack, seeded, finished)


def _wait_until_one_is_processing(
    stack: ProductionStack,
    container: Container,
    ids: list[str],
    process: subprocess.Popen[bytes],
    log: Path,
) -> None:
    def one_processing() -> bool:
        statuses = [stack.image(container, image_id).status for image_id in ids]
        if JobStatus.PROCESSING in statuses:
            return True
        assert process.poll() is None, f"the worker exited:\n{log.read_text()}"
        return False

    wait_until(
        one_processing,
        timeout=PROCESS_DEADLINE_SECONDS,
        interval=0.05,
        message=lambda: f"no job started:\n{log.read_text()}",
    )


def test_a_worker_killed_mid_batch_is_taken_over_and_nothing_is_lost(
    stack: ProductionStack, container: Container, original: Path, tmp_path: Path
) -> None:
    seeded = stack.seed(container, original, _transforms(12))
    ids = [image.id for image in seeded.derived]
    relay_log, victim_log, heir_log = (
        tmp_path / f"{name}.log" for name in ("relay", "victim", "heir")
    )
    imgproc = str(Path(sys.executable).parent / "imgproc")
    relay = _start([imgproc, "relay"], stack.env(), relay_log)
    victim = _start(
        python_module_command("tests.support.slow_worker"),
        stack.env(worker_processes="0", test_codec_delay_seconds="0.5"),
        victim_log,
    )
    heir: subprocess.Popen[bytes] | None = None
    try:
        _wait_until_some_are_ready(stack, container, ids, victim, victim_log, at_least=3)
        victim.kill()
        victim.wait()
        done_by_victim = sum(
            stack.image(container, image_id).status is JobStatus.READY for image_id in ids
        )
        assert done_by_victim < len(ids), "the victim finished everything before it was killed"

        heir = _start(python_module_command("imgproc_worker"), stack.env(), heir_log)
        images = stack.wait_for(container, ids, deadline=PROCESS_DEADLINE_SECONDS)
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)
        heir.send_signal(signal.SIGTERM)
        assert _wait_for_exit(heir, heir_log) == 0, heir_log.read_text()
        relay.send_signal(signal.SIGTERM)
        assert _wait_for_exit(relay, relay_log) == 0, relay_log.read_text()
    finally:
        for process in (relay, victim, heir):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    _assert_outputs_written_once(stack, seeded, images)
    assert stack.outbox_size(container) == 0
    assert sum(end_offsets(stack.topics.bootstrap, stack.topics.dead_letter_topic).values()) == 0
    assert "relayed" in relay_log.read_text()


def _wait_until_some_are_ready(
    stack: ProductionStack,
    container: Container,
    ids: list[str],
    process: subprocess.Popen[bytes],
    log: Path,
    at_least: int,
) -> None:
    ready = 0

    def enough_ready() -> bool:
        nonlocal ready
        ready = sum(stack.image(container, image_id).status is JobStatus.READY for image_id in ids)
        if ready >= at_least:
            return True
        assert process.poll() is None, f"the worker exited:\n{log.read_text()}"
        return False

    wait_until(
        enough_ready,
        timeout=PROCESS_DEADLINE_SECONDS,
        interval=0.05,
        message=lambda: f"{ready} jobs done:\n{log.read_text()}",
    )


class _SlowProcess(_CountingProcess):
    def __init__(self, process: Any, delay_seconds: float) -> None:
        super().__init__(process)
        self._delay = delay_seconds

    def __call__(self, job: TransformJob) -> JobOutcome:
        time.sleep(self._delay)
        return super().__call__(job)


def _seed_every_partition(
    stack: ProductionStack, container: Container, original: Path, sources_each: int
) -> list[Seeded]:
    """Sources with 8 jobs each, until every partition of the job topic holds the jobs of at
    least ``sources_each`` of them (a job's key is its source, placed by the key's hash): a
    worker that takes a partition over then finds work in it whichever partition it gets."""
    per_partition = dict.fromkeys(range(stack.topics.partitions), 0)
    seeded: list[Seeded] = []
    while min(per_partition.values()) < sources_each:
        batch = stack.seed(container, original, _transforms(8))
        seeded.append(batch)
        key = batch.source.id.encode()
        per_partition[(murmur2(key) & 0x7FFFFFFF) % stack.topics.partitions] += 1
        assert len(seeded) < 100, "the sources never covered every partition"
    return seeded


def _assert_all_ready_and_written(
    stack: ProductionStack, seeded: list[Seeded], images: list[Image]
) -> None:
    sources = {batch.source.storage_key for batch in seeded}
    derived_files = [key for key in stack.blob_files() if key not in sources]
    assert derived_files == sorted(image.storage_key for image in images)
    for image in images:
        assert image.status is JobStatus.READY, image.failure_reason
        assert (stack.storage_dir / image.storage_key).stat().st_size == image.size_bytes
    assert sum(end_offsets(stack.topics.bootstrap, stack.topics.dead_letter_topic).values()) == 0


def test_workers_joining_and_leaving_the_group_share_the_work_and_lose_nothing(
    stack: ProductionStack, original: Path
) -> None:
    first_container = stack.container()
    second_container = stack.container()
    # Enough work that the first worker alone (three job threads) is still busy when the
    # second has joined, rebalances included: 24 jobs or more a partition, 0.4 s each.
    seeded = _seed_every_partition(stack, first_container, original, sources_each=3)
    ids = [image.id for batch in seeded for image in batch.derived]
    _relay_all(first_container, stack)
    first = _SlowProcess(first_container.process_transform_job(), 0.4)
    first_container.process_transform_job.override(providers.Object(first))
    second = _SlowProcess(second_container.process_transform_job(), 0.4)
    second_container.process_transform_job.override(providers.Object(second))

    with ExitStack() as running:
        first_worker = running.enter_context(_RunningWorker(first_container))
        wait_until(
            lambda: first.total >= 4, timeout=PROCESS_DEADLINE_SECONDS, message="never started"
        )
        # A second worker joins while the first holds jobs: it takes some partitions over ...
        with _RunningWorker(second_container):
            wait_until(
                lambda: second.total >= 3,
                timeout=PROCESS_DEADLINE_SECONDS,
                message="never shared the partitions",
            )
        # ... and gives them back when it leaves.
        before = first.total
        wait_until(
            lambda: first.total >= before + 3,
            timeout=PROCESS_DEADLINE_SECONDS,
            message="never taken the partitions back",
        )
        # It joins once more, and the first leaves with jobs in hand.
        running.enter_context(_RunningWorker(second_container))
        first_worker.finish()
        images = stack.wait_for(first_container, ids)
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)

    logger.info("jobs run by the first worker: %d, the second: %d", first.total, second.total)
    _assert_all_ready_and_written(stack, seeded, images)


def test_a_worker_the_group_left_behind_joins_again_and_goes_on(
    stack: ProductionStack,
    container: Container,
    original: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker is made to describe the group as stable without the worker (what it sees
    when kafka-python has stopped heartbeating): the worker drops its consumer, joins with a
    new one, and the jobs published meanwhile are all rendered."""
    from imgproc_worker import consumer as consumer_module
    from imgproc_worker import runtime

    left_out = threading.Event()
    descriptions: list[tuple[str, frozenset[str]]] = []

    def describe_with(admin: Any) -> consumer_module.DescribeGroup:
        real = consumer_module_describe(admin)

        def describe(group: str) -> tuple[str, frozenset[str]]:
            state, members = real(group)
            # Once left out: twice "without you", then the truth again.
            if left_out.is_set() and sum(1 for _, seen in descriptions if not seen) < 2:
                members = frozenset()
            descriptions.append((state, members))
            return state, members

        return describe

    consumer_module_describe = consumer_module.describe_with
    monkeypatch.setattr(consumer_module, "describe_with", describe_with)
    options = runtime.worker_options
    monkeypatch.setattr(
        runtime,
        "worker_options",
        lambda settings: replace(options(settings), membership_check_seconds=0.5),
    )
    first = stack.seed(container, original, _transforms(3))
    _relay_all(container, stack)

    with caplog.at_level(logging.INFO, logger="imgproc_worker.consumer"), _RunningWorker(container):
        stack.wait_for(container, [image.id for image in first.derived])
        left_out.set()
        wait_until(
            lambda: "joining again with a new consumer" in caplog.text,
            timeout=PROCESS_DEADLINE_SECONDS,
            interval=0.1,
            message="the worker never noticed it was left out",
        )
        second = stack.seed(container, original, _transforms(4))
        _relay_all(container, stack)
        images = stack.wait_for(container, [image.id for image in second.derived])

    assert all(image.status is JobStatus.READY for image in images)
    assert caplog.text.count("joining again with a new consumer") == 1
    assert "lost " in caplog.text


def test_partitions_revoked_and_assigned_back_while_their_jobs_run_lose_nothing(
    stack: ProductionStack, original: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bare consumer joins the worker's group while every partition's jobs are running, so
    the cooperative rebalance takes some partitions from the worker, and leaves again at once,
    so they come back to it: the jobs of those partitions that ran meanwhile are recorded
    nowhere, and the partitions restart from their committed offsets. Every job ends READY."""
    container = stack.container()
    seeded = _seed_every_partition(stack, container, original, sources_each=1)
    ids = [image.id for batch in seeded for image in batch.derived]
    _relay_all(container, stack)
    slow = _SlowProcess(container.process_transform_job(), 0.2)
    container.process_transform_job.override(providers.Object(slow))

    with (
        caplog.at_level(logging.INFO, logger="imgproc_worker.consumer"),
        _RunningWorker(container),
    ):
        wait_until(
            lambda: slow.total >= 2, timeout=PROCESS_DEADLINE_SECONDS, message="never started"
        )
        intruder = KafkaConsumer(
            bootstrap_servers=stack.topics.bootstrap,
            group_id=stack.topics.group,
            enable_auto_commit=False,
            partition_assignment_strategy=(CooperativeStickyAssignor,),
            session_timeout_ms=10_000,
        )
        try:
            intruder.subscribe([stack.topics.topic])

            def assigned() -> bool:
                if intruder.assignment():
                    return True
                intruder.poll(timeout_ms=500, max_records=1, update_offsets=False)
                return False

            # The poll itself waits (and joins the group): no pause between polls.
            wait_until(
                assigned,
                timeout=PROCESS_DEADLINE_SECONDS,
                interval=0,
                message="the second consumer never got a partition",
            )
            taken = {partition.partition for partition in intruder.assignment()}
        finally:
            # Nothing consumed: the partitions go back with their offsets untouched.
            intruder.close(autocommit=False)
        images = stack.wait_for(container, ids)
        wait_until_committed(stack.topics.bootstrap, stack.topics.group, stack.topics.topic)

    # Taken away and given back, as logged; under heavy load the client may instead fall out
    # of the group, and the watchdog's new consumer gets the partitions back ("lost", then
    # "assigned").
    lines = caplog.text.splitlines()
    for number in taken:
        name = f"{stack.topics.topic}[{number}]"
        away = [
            n
            for n, line in enumerate(lines)
            if re.search(f"(revoked|lost) .*{re.escape(name)}", line)
        ]
        back = [
            n for n, line in enumerate(lines) if re.search(f"assigned .*{re.escape(name)}", line)
        ]
        assert away, caplog.text
        assert back, caplog.text
        assert away[0] < back[-1], caplog.text
    assert all(image.status is JobStatus.READY for image in images)
    _assert_all_ready_and_written(stack, seeded, images)
