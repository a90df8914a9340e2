"""The Kafka side of the worker: a consumer in a group, feeding a pool of job threads and
committing, per partition, only what is finished."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import KafkaError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata, TopicPartition

from imgproc_core.adapters.kafka import bootstrap_list
from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_worker.handling import Delivery, MessageHandler
from imgproc_worker.ledger import OffsetLedger

__all__ = ["ConsumerOptions", "DescribeGroup", "Membership", "NotAMember", "Worker"]

logger = logging.getLogger(__name__)

#: How long the first reconnection waits; it doubles up to ``_CONNECT_BACKOFF_MAX_SECONDS``.
_CONNECT_BACKOFF_SECONDS: Final = 0.5
_CONNECT_BACKOFF_MAX_SECONDS: Final = 30.0
#: A commit that the coordinator does not answer in time is tried again on the next round.
_COMMIT_TIMEOUT_MS: Final = 5_000
#: How long the group watchdog waits for the broker's answer.
_ADMIN_TIMEOUT_MS: Final = 2_000


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    bootstrap_servers: str
    topic: str
    group: str
    #: Job threads; with worker processes behind the codec, one per process.
    threads: int = 1
    #: Messages taken ahead of the threads, so a thread that ends a job starts the next one at
    #: once; more would only be delivered again after a crash.
    prefetch: int | None = None
    #: The longest a finished job waits for its commit, and a stop request for the loop.
    poll_seconds: float = 0.2
    #: A worker that stops heartbeating (killed) loses its partitions after this long.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    #: The consumer polls on its own thread, whatever the jobs do, so this is a safety net
    #: only; keep it well above the job time limit anyway.
    max_poll_interval_ms: int = 300_000
    connect_timeout_seconds: float = 10.0
    #: How often the worker asks the broker whether it is still a member of its group (see
    #: :class:`Membership`); 0 never does.
    membership_check_seconds: float = 15.0

    @property
    def capacity(self) -> int:
        return self.threads + (self.threads if self.prefetch is None else self.prefetch)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps the ledger in step with the group's assignment.

    Called on the consumer's network thread, which also sends the heartbeats, so it never
    blocks: on revocation it commits what is finished without waiting for the answer, and
    forgets the partition; jobs of it still running are redone by the next owner.
    """

    def __init__(self, consumer: Any, ledger: OffsetLedger[TopicPartition]) -> None:
        self._consumer = consumer
        self._ledger = ledger

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = sorted(assigned)
        self._ledger.assign(assigned)
        logger.info("assigned %s", _names(assigned))

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = sorted(revoked)
        offsets = self._ledger.revoke(revoked)
        if offsets:
            try:
                self._consumer.commit_async(_commit_request(offsets))
            except Exception:
                logger.warning("could not commit revoked partitions", exc_info=True)
        logger.info("revoked %s", _names(revoked))

    def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        lost = sorted(lost)
        # The group has moved on: another member owns these now, and a commit would be refused.
        self._ledger.revoke(lost)
        logger.warning("lost %s", _names(lost))


#: Says which members the broker counts in a group: ``(state, member ids)``, as the admin API's
#: DescribeGroups answers.
DescribeGroup = Callable[[str], tuple[str, frozenset[str]]]


class NotAMember(Exception):
    """The broker's group goes on without this consumer, which has not noticed."""


class Membership:
    """A watchdog for a consumer that has dropped out of its group without knowing it.

    kafka-python has been seen (rarely, under load) to stop heartbeating from a consumer that
    goes on polling: the broker expels it after the session timeout and hands its partitions
    to the others, while the consumer waits for records that never come and never rejoins.
    Every ``interval`` seconds the worker compares its own member id with the members the
    broker describes; when the group is stable without it twice in a row, :meth:`check`
    raises :class:`NotAMember`, and the worker replaces its consumer with a new one, which
    joins afresh. Twice, because a member id changes while a rebalance is under way.
    """

    def __init__(self, group: str, describe: DescribeGroup, interval: float) -> None:
        self._group = group
        self._describe = describe
        self._interval = interval
        self._due = time.monotonic() + interval
        self._misses = 0

    def check(self, consumer: Any) -> None:
        if self._interval <= 0 or time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self._interval
        member = getattr(consumer.group_metadata(), "member_id", None) or ""
        try:
            state, members = self._describe(self._group)
        except (KafkaError, OSError) as exc:
            logger.info("could not describe group %s: %s", self._group, exc)
            return
        if state != "Stable" or member in members:
            self._misses = 0
            return
        self._misses += 1
        if self._misses >= 2:
            raise NotAMember(
                f"the group {self._group} is stable without this worker "
                f"(member {member or 'none'}; members: {', '.join(sorted(members)) or 'none'})"
            )


def describe_with(admin: Any) -> DescribeGroup:
    """A :data:`DescribeGroup` over a ``KafkaAdminClient``."""

    def describe(group: str) -> tuple[str, frozenset[str]]:
        described = admin.describe_groups([group]).get(group) or {}
        members = frozenset(
            str(member.get("member_id")) for member in described.get("members") or []
        )
        return str(described.get("group_state", "")), members

    return describe


class BrokerGroups:
    """Describes groups through an admin client made at the first question, so that a broker
    that cannot be reached then only costs that one check (:class:`Membership` takes the
    ``KafkaError`` as no evidence), never the worker."""

    def __init__(self, bootstrap_servers: str, client_id: str) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._client_id = client_id
        self._describe: DescribeGroup | None = None
        self._admin: Any = None

    def describe(self, group: str) -> tuple[str, frozenset[str]]:
        if self._describe is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=bootstrap_list(self._bootstrap_servers),
                client_id=self._client_id,
                # The question is asked on the consuming loop: keep a silent broker short.
                bootstrap_timeout_ms=_ADMIN_TIMEOUT_MS,
                request_timeout_ms=_ADMIN_TIMEOUT_MS,
            )
            self._describe = describe_with(self._admin)
        return self._describe(group)

    def close(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception:
                logger.warning("closing the admin client failed", exc_info=True)


class Worker:
    """Consume job messages in a consumer group and run them on ``threads`` threads.

    - The polling thread only polls, hands messages to the threads and commits; it keeps the
      consumer in its group however long jobs take. When the threads are full it pauses every
      partition (it still polls, to stay in the group) and resumes once a thread frees up.
    - Offsets are committed per partition up to the first message not finished yet (see
      :class:`~imgproc_worker.ledger.OffsetLedger`): a message is finished when its job's
      output and database row are written, or when it is parked on the dead-letter topic.
      Commits go out every ``poll_seconds`` at most, and when partitions are revoked.
    - On stop (SIGTERM), polling ends, the jobs running finish and are committed, jobs not
      started are left to the next owner, and the consumer leaves the group.

    Partitions are assigned by the cooperative sticky assignor: a worker that joins or leaves
    moves only the partitions that must move, and the others keep their jobs running.
    """

    def __init__(
        self,
        handler: MessageHandler,
        options: ConsumerOptions,
        worker_id: str,
        *,
        before_connect: Callable[[], object] | None = None,
        describe_group: DescribeGroup | None = None,
    ) -> None:
        if options.threads < 1:
            raise ValueError("a worker needs at least one thread")
        self._handler = handler
        self._options = options
        self._worker_id = worker_id
        self._before_connect = before_connect
        self._describe_group = describe_group
        self._ledger: OffsetLedger[TopicPartition] = OffsetLedger()
        self._stopping = threading.Event()
        self._fatal: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then wind down as described above. Raises after a
        clean wind-down when a job thread met an unexpected error (a defect)."""
        consumer = self._connect(stop)
        if consumer is None:
            return
        executor = ThreadPoolExecutor(self._options.threads, thread_name_prefix="imgproc-job")
        groups = BrokerGroups(
            self._options.bootstrap_servers, f"imgproc-worker-{self._worker_id}-watchdog"
        )
        try:
            describe = self._describe_group or groups.describe
            while True:
                membership = Membership(
                    self._options.group, describe, self._options.membership_check_seconds
                )
                try:
                    self._consume(consumer, executor, stop, membership)
                    break
                except NotAMember as exc:
                    logger.warning("%s; joining again with a new consumer", exc)
                    self._abandon(consumer)
                    consumer = None
                    consumer = self._connect(stop)
                    if consumer is None:
                        break
        finally:
            self._stopping.set()
            executor.shutdown(wait=True)
            if consumer is not None:
                self._commit(consumer)
                try:
                    consumer.close(autocommit=False)
                except Exception:
                    logger.warning("closing the consumer failed", exc_info=True)
            groups.close()
            logger.info("worker %s stopped", self._worker_id)
        if self._fatal is not None:
            raise RuntimeError("the worker stopped after an unexpected error") from self._fatal

    def _abandon(self, consumer: Any) -> None:
        """Forget a consumer the group left behind: its partitions are someone else's now (a
        commit would be refused; jobs of them still running are redone by their new owner)."""
        lost = sorted(consumer.assignment())
        self._ledger.revoke(lost)
        if lost:
            logger.warning("lost %s", _names(lost))
        try:
            consumer.close(autocommit=False)
        except Exception:
            logger.warning("closing the consumer failed", exc_info=True)

    # -- connecting ------------------------------------------------------------------------

    def _connect(self, stop: threading.Event) -> Any:
        failures = 0
        while not stop.is_set():
            try:
                if self._before_connect is not None:
                    self._before_connect()
                consumer = self._new_consumer()
            except (DependencyUnavailable, KafkaError) as exc:
                failures += 1
                delay = min(
                    _CONNECT_BACKOFF_MAX_SECONDS, _CONNECT_BACKOFF_SECONDS * 2.0 ** (failures - 1)
                )
                logger.warning("cannot reach Kafka (%s); trying again in %.1f s", exc, delay)
                stop.wait(delay)
                continue
            logger.info(
                "worker %s consuming %s in group %s with %d thread(s)",
                self._worker_id,
                self._options.topic,
                self._options.group,
                self._options.threads,
            )
            return consumer
        return None

    def _new_consumer(self) -> Any:
        options = self._options
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_list(options.bootstrap_servers),
            client_id=f"imgproc-worker-{self._worker_id}",
            group_id=options.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=options.capacity,
            max_poll_interval_ms=options.max_poll_interval_ms,
            session_timeout_ms=options.session_timeout_ms,
            heartbeat_interval_ms=options.heartbeat_interval_ms,
            partition_assignment_strategy=(CooperativeStickyAssignor,),
            bootstrap_timeout_ms=int(options.connect_timeout_seconds * 1000),
            reconnect_backoff_max_ms=2000,
            allow_auto_create_topics=False,
        )
        try:
            self._await_topic_metadata(consumer)
        except BaseException:
            consumer.close(autocommit=False)
            raise
        consumer.subscribe([options.topic], listener=_Rebalance(consumer, self._ledger))
        return consumer

    def _await_topic_metadata(self, consumer: Any) -> None:
        """Wait until the consumer knows the topic's partitions before it joins the group.

        A member that joins without them can be handed an assignment computed without its
        topic, after which kafka-python's poll waits for the coordinator with no time limit:
        the worker falls silent and out of the group. Knowing the partitions first avoids it.
        """
        topic = self._options.topic
        deadline = time.monotonic() + self._options.connect_timeout_seconds
        while not consumer.partitions_for_topic(topic):
            if time.monotonic() >= deadline:
                raise DependencyUnavailable(
                    f"the topic {topic} has no partitions the broker will tell of", "kafka"
                )
            time.sleep(0.1)

    # -- consuming -------------------------------------------------------------------------

    def _consume(
        self,
        consumer: Any,
        executor: ThreadPoolExecutor,
        stop: threading.Event,
        membership: Membership,
    ) -> None:
        poll_ms = int(self._options.poll_seconds * 1000)
        while not stop.is_set() and not self._stopping.is_set():
            self._commit(consumer)
            membership.check(consumer)
            free = self._options.capacity - self._ledger.in_hand()
            self._throttle(consumer, full=free <= 0)
            try:
                batch = consumer.poll(timeout_ms=poll_ms, max_records=max(1, free))
            except KafkaError as exc:
                logger.warning("polling failed: %s", exc)
                stop.wait(self._options.poll_seconds)
                continue
            for partition, records in batch.items():
                for record in records:
                    self._dispatch(executor, partition, record)

    def _throttle(self, consumer: Any, *, full: bool) -> None:
        if full:
            assigned = consumer.assignment()
            if assigned and consumer.paused() != assigned:
                consumer.pause(*assigned)
        else:
            paused = consumer.paused()
            if paused:
                consumer.resume(*paused)

    def _dispatch(
        self, executor: ThreadPoolExecutor, partition: TopicPartition, record: Any
    ) -> None:
        if not self._ledger.take(partition, record.offset):
            return
        delivery = Delivery(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
        )
        executor.submit(self._run_one, partition, delivery)

    def _run_one(self, partition: TopicPartition, delivery: Delivery) -> None:
        def keep_going() -> bool:
            return not self._stopping.is_set() and self._ledger.owns(partition)

        if not keep_going():
            return
        try:
            finished = self._handler(delivery, keep_going)
        except BaseException as exc:
            logger.critical(
                "unexpected error on %s[%d]@%d; stopping the worker",
                delivery.topic,
                delivery.partition,
                delivery.offset,
                exc_info=exc,
            )
            self._fatal = exc
            self._stopping.set()
            return
        if finished:
            self._ledger.finish(partition, delivery.offset)

    def _commit(self, consumer: Any) -> None:
        offsets = self._ledger.committable()
        if not offsets:
            return
        try:
            consumer.commit(_commit_request(offsets), timeout_ms=_COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            # Kept in the ledger: the next round commits them, or the partition's next owner
            # redoes those jobs. Refusals during a rebalance are part of the protocol.
            level = logging.INFO if isinstance(exc, RebalanceInProgressError) else logging.WARNING
            logger.log(level, "committing %s failed: %s", _names(offsets), exc)
            return
        self._ledger.committed(offsets)
        logger.debug("committed %s", offsets)


def _commit_request(offsets: dict[TopicPartition, int]) -> dict[TopicPartition, Any]:
    return {partition: OffsetAndMetadata(offset, "", -1) for partition, offset in offsets.items()}


def _names(partitions: Iterable[TopicPartition]) -> str:
    names = [f"{partition.topic}[{partition.partition}]" for partition in partitions]
    return ", ".join(names) or "nothing"
