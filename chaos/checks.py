"""What a round checks once its processes have stopped.

- **Lost**: a job whose request was answered 200 and whose derived image is neither READY nor
  FAILED after the drain (or has no row at all). Each comes with the evidence there is: its
  row (status, attempts), whether its job is still in the outbox, where its message is on the
  job topic (partition and offset of every copy), the group's committed offset there (past
  the message means a worker committed a job it never finished), what the workers logged of
  it, and who held its partition when.
- **FAILED**, grouped by reason.
- **Differing**: a READY derivative whose stored object is not what rendering the same source
  with the same (stored) transformation gives: one reference render per job, made afterwards
  in this process, cleanly, with the engine the workers use (the container's Pillow codec);
  or whose row's size or dimensions disagree with the object. Jobs run twice write the same
  key, so the object is the last run's: a run that wrote other bytes shows up here.
- **Redelivery**, for the record: messages the relay published more than once, and messages
  the workers ran more than once (a killed worker's unfinished share; work redone after a
  refused commit).
- Objects in the bucket that belong to no READY image, and dead letters.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from sqlalchemy import select

from imgproc_core.adapters.sqlalchemy.models import JobRow
from imgproc_core.container import Container
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.transformations import canonical_form
from imgproc_core.ports.messages import decode_job
from tests.e2e.production.deployment import Deployment, WorkerProcess, partition_of
from tests.support.kafka import committed_offsets, end_offsets
from tests.support.production import ProductionStack

if TYPE_CHECKING:
    from chaos.progress import Progress
    from chaos.round import RoundResult

READY: Final = JobStatus.READY
FAILED: Final = JobStatus.FAILED
#: What a worker logs when the group refuses its commit.
_REFUSED: Final = re.compile(r"imgproc_worker\.consumer: committing .* failed")
_ASSIGNMENT: Final = re.compile(r"imgproc_worker\.consumer: (assigned|revoked|lost) ")
_TOPIC_READ_DEADLINE_SECONDS: Final = 60.0


@dataclass
class LostJob:
    image_id: str
    source_id: str
    status: str
    attempts: int | None
    #: The partition the relay keys the job to (by its source's id).
    partition: int
    in_outbox: bool
    #: Every copy of the job's message on the topic: (partition, offset, when the relay
    #: published it).
    on_topic: list[tuple[int, int, str]] = field(default_factory=list)
    committed_offset: int | None = None
    #: A copy sits below the committed offset: a worker committed past a job it never ended.
    committed_past: bool = False
    #: The partition's end offset, and how many messages after this job's first copy there
    #: belong to jobs that ended: a consumer that went past it without running it.
    partition_end: int | None = None
    ended_after_it: int = 0
    worker_lines: list[str] = field(default_factory=list)
    #: The assignment changes of every worker that held the partition, in time order.
    partition_history: list[str] = field(default_factory=list)


@dataclass
class Difference:
    image_id: str
    source: str
    transformation: str
    reason: str


@dataclass
class Redelivery:
    messages_on_topic: int = 0
    #: Jobs whose message is on the topic more than once (a relay re-sent its batch).
    published_more_than_once: int = 0
    #: Messages the workers ran to an end more than once, in all and by more than one worker.
    handled_more_than_once: int = 0
    handled_by_several_workers: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def settle(
    result: RoundResult,
    stack: ProductionStack,
    container: Container,
    entries: list[str],
    deployed: Deployment,
    progress: Progress,
) -> None:
    """Fill ``result``'s findings from the database, the topic, the bucket and the logs."""
    images = {image.id: image for image in _derived(container)}
    workers = [p for p in deployed.processes if isinstance(p, WorkerProcess)]
    topic = _read_topic(stack)
    committed = committed_offsets(stack.topics.bootstrap, stack.topics.group)

    result.ready = sum(images[i].status is READY for i in entries if i in images)
    failed: dict[str, list[str]] = defaultdict(list)
    for image_id in entries:
        image = images.get(image_id)
        if image is not None and image.status is FAILED:
            failed[image.failure_reason or "(no reason)"].append(image_id)
    result.failed = dict(failed)
    unfinished = [
        image_id
        for image_id in entries
        if image_id not in images or images[image_id].status not in (READY, FAILED)
    ]
    result.lost = [
        _lost(image_id, images.get(image_id), stack, container, topic, committed, workers, images)
        for image_id in unfinished
    ]
    progress.note(
        f"{result.ready} READY, {result.failed_count} FAILED, {len(result.lost)} lost; "
        "comparing every READY object with a reference render"
    )
    ready = [images[i] for i in entries if i in images and images[i].status is READY]
    result.differing = _differences(container, images, ready)
    result.redelivery = _redelivery(topic, workers)
    keys = {image.storage_key for image in images.values() if image.status is READY}
    originals = {image.storage_key for image in _originals(container, images)}
    result.stray_objects = sorted(set(stack.blob_files()) - keys - originals)
    result.dead_letters = sum(
        end_offsets(stack.topics.bootstrap, stack.topics.dead_letter_topic).values()
    )


def _derived(container: Container) -> list[Image]:
    found: list[Image] = []
    with container.unit_of_work() as uow:
        while True:
            page = uow.images.list_derived(offset=len(found), limit=500)
            found.extend(page)
            if len(page) < 500:
                return found


def _originals(container: Container, derived: dict[str, Image]) -> list[Image]:
    with container.unit_of_work() as uow:
        sources = {image.source_id for image in derived.values() if image.source_id}
        return [image for image in map(uow.images.get, sorted(sources)) if image is not None]


# -- the topic -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    #: When the relay published it (the producer's timestamp, UTC).
    published: str


Topic = dict[str, list[Message]]


def _read_topic(stack: ProductionStack) -> Topic:
    """Every job message on the round's topic, read outside the group: where each copy is
    and when it was published, by the job's id."""
    consumer = KafkaConsumer(
        bootstrap_servers=stack.topics.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    found: Topic = defaultdict(list)
    try:
        partitions = [TopicPartition(stack.topics.topic, n) for n in range(stack.topics.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        give_up = time.monotonic() + _TOPIC_READ_DEADLINE_SECONDS
        while any(consumer.position(p) < end for p, end in ends.items()):
            if time.monotonic() > give_up:
                raise RuntimeError(f"could not read {stack.topics.topic} to its end in time")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    published = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                    found[decode_job(record.value).image_id].append(
                        Message(record.partition, record.offset, f"{published:%H:%M:%S.%f}"[:-3])
                    )
    finally:
        consumer.close()
    return dict(found)


# -- lost ----------------------------------------------------------------------------------------


def _lost(
    image_id: str,
    image: Image | None,
    stack: ProductionStack,
    container: Container,
    topic: Topic,
    committed: dict[int, int],
    workers: list[WorkerProcess],
    images: dict[str, Image],
) -> LostJob:
    source_id = (image.source_id if image else None) or "?"
    partition = partition_of(source_id, stack.topics.partitions)
    copies = sorted(topic.get(image_id, []), key=lambda m: (m.partition, m.offset))
    committed_offset = committed.get(partition)
    offsets = [m.offset for copies_ in topic.values() for m in copies_ if m.partition == partition]
    first = min((m.offset for m in copies if m.partition == partition), default=None)
    lost = LostJob(
        image_id=image_id,
        source_id=source_id,
        status=image.status.value if image else "no row",
        attempts=image.attempts if image else None,
        partition=partition,
        in_outbox=_in_outbox(container, image_id),
        on_topic=[(m.partition, m.offset, m.published) for m in copies],
        committed_offset=committed_offset,
        committed_past=any(
            m.partition in committed and m.offset < committed[m.partition] for m in copies
        ),
        partition_end=max(offsets) + 1 if offsets else None,
        ended_after_it=0
        if first is None
        else sum(
            1
            for job, copies_ in topic.items()
            for m in copies_
            if m.partition == partition
            and m.offset > first
            and job in images
            and images[job].status in (READY, FAILED)
        ),
    )
    name = f"{stack.topics.topic}[{partition}]"
    for worker in workers:
        lines = worker.log().splitlines()
        lost.worker_lines.extend(f"{worker.name}: {line}" for line in lines if image_id in line)
        # Every change of assignment of each worker that ever held the partition: a rebalance
        # that moved other partitions matters too.
        changes = [line for line in lines if _ASSIGNMENT.search(line)]
        if any(name in line for line in changes):
            lost.partition_history.extend(f"{worker.name}: {line}" for line in changes)
    lost.partition_history.sort(key=lambda entry: entry.split(": ", 1)[1])
    return lost


def _in_outbox(container: Container, image_id: str) -> bool:
    with container.database.session_factory()() as session:
        return session.scalar(select(JobRow.id).where(JobRow.id == image_id)) is not None


# -- differing -----------------------------------------------------------------------------------


def _differences(
    container: Container, images: dict[str, Image], ready: list[Image]
) -> list[Difference]:
    storage, codec, limits = container.blob_storage(), container.codec(), container.limits()
    originals = {image.id: image for image in _originals(container, images)}
    source_bytes = {key: storage.get(image.storage_key) for key, image in originals.items()}

    def compare(image: Image) -> Difference | None:
        assert image.source_id is not None
        assert image.transformation is not None
        stored = storage.get(image.storage_key)
        reference = codec.transform(source_bytes[image.source_id], image.transformation, limits)
        reasons = []
        if stored != reference.data:
            reasons.append(
                f"stored {len(stored)} bytes (sha256 {_digest(stored)}), the reference render "
                f"{len(reference.data)} bytes (sha256 {_digest(reference.data)})"
            )
        if image.size_bytes != len(stored):
            reasons.append(f"the row says {image.size_bytes} bytes, the object has {len(stored)}")
        if (image.width, image.height) != (reference.width, reference.height):
            reasons.append(
                f"the row says {image.width}x{image.height}, the render is "
                f"{reference.width}x{reference.height}"
            )
        if not reasons:
            return None
        return Difference(
            image.id,
            originals[image.source_id].filename,
            canonical_form(image.transformation).decode(),
            "; ".join(reasons),
        )

    # Pillow lets go of the interpreter while it decodes and encodes: two threads, two cores.
    with ThreadPoolExecutor(2, thread_name_prefix="chaos-reference") as pool:
        return [found for found in pool.map(compare, ready) if found is not None]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


# -- redelivery ----------------------------------------------------------------------------------


def _redelivery(topic: Topic, workers: list[WorkerProcess]) -> Redelivery:
    handled: Counter[str] = Counter()
    by_worker: dict[str, set[str]] = defaultdict(set)
    outcomes: Counter[str] = Counter()
    for worker in workers:
        for job, outcome in worker.handled():
            handled[job] += 1
            by_worker[job].add(worker.name)
            outcomes[outcome] += 1
    return Redelivery(
        messages_on_topic=sum(map(len, topic.values())),
        published_more_than_once=sum(len(copies) > 1 for copies in topic.values()),
        handled_more_than_once=sum(count > 1 for count in handled.values()),
        handled_by_several_workers=sum(len(names) > 1 for names in by_worker.values()),
        outcomes=dict(outcomes),
    )


def refused_commits(log: str) -> list[str]:
    """The lines of a worker's log that say the group refused its commit."""
    return [line for line in log.splitlines() if _REFUSED.search(line)]
