"""The Kafka side of the worker: a consumer in a group, feeding job threads from a backlog of
fetched records and committing, per partition, only what is finished.

The rules it keeps, each backed by a test in ``tests/unit/worker/test_consumer.py`` (against
a scripted consumer) and the real-Kafka ones in ``tests/integration/test_kafka_worker.py``:

1. **A record that ``poll()`` returned is never dropped silently.** It goes to the backlog and
   runs, or its partition is sought back to it, or its partition is no longer this worker's
   (then this worker never commits past it, and its next owner reads it from the committed
   offset). A record the worker holds already is the only one skipped, with a warning.
2. **The consumer's own ``assignment()``, read on the polling thread, is the truth.** The
   rebalance listener runs on kafka-python's network thread, after the assignment has
   changed, at moments the polling thread does not see; it only notes which partitions it
   was told were revoked or lost. The polling thread compares ``assignment()`` and those
   notes with the ledger before it takes any record of a poll, and again before the next.
3. **A partition this worker (again) owns starts from its committed offset or the ledger's
   low watermark, never past abandoned work.** A new partition starts where kafka-python
   puts it, at the committed offset. A partition told revoked but still (or again) in the
   assignment (the eager protocol keeps its old fetch position; a revocation and a
   reassignment may also both fall between two looks) begins a new tenure: its backlog is
   dropped and it is sought back to the first offset of the old tenure not finished.
4. **Commits, seeks, pauses and resumes happen on the polling thread only.** The listener
   does nothing that blocks or that kafka-python refuses on its network thread: it takes a
   lock for a moment and records a set.
5. **Records fetched ahead and not started are dropped with their partition.** At a
   revocation the backlog loses that partition's records, the ledger its tenure; they are
   not committed, so the next owner receives them again. Jobs of it still running finish,
   and are recorded nowhere.
6. **A slot that frees starts the next job at once.** Job threads take records from the
   backlog, not from the consumer; the polling thread keeps the backlog topped up, and
   pauses every partition (still polling, to stay in the group and take part in
   rebalances) only while the backlog is full.
7. **A partition paused in the middle of a fetch is not left behind.** kafka-python 3.0.12
   parks the rest of a paused partition's fetch and, once another partition's records were
   consumed, never hands it back nor fetches that partition again:
   :func:`release_parked_records` runs before every poll (tested on a real broker in
   ``tests/integration/test_kafka_consumer.py``).
8. **A refused commit is tried again, the last one too.** Commits refused mid-rebalance stay
   in the ledger and go out on the next pass; a stopping worker keeps polling (paused) to let
   the rebalance end, and commits again, for up to ``final_commit_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import CommitFailedError, KafkaError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata, TopicPartition

from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.settings import bootstrap_list
from imgproc_core.use_cases import Backoff
from imgproc_worker.handling import Delivery, MessageHandler
from imgproc_worker.ledger import OffsetLedger, Tenure
from imgproc_worker.metrics import NO_CONSUMER_METRICS, ConsumerMetrics, NullConsumerMetrics

__all__ = [
    "ConsumerOptions",
    "DescribeGroup",
    "Membership",
    "NotAMember",
    "Worker",
]

logger = logging.getLogger(__name__)

#: How long the first reconnection waits; it doubles up to 5 s, so that a broker back from an
#: outage is found again within seconds.
_CONNECT_BACKOFF: Final = Backoff(base_seconds=0.5, max_seconds=5.0)
#: A commit that the coordinator does not answer in time is tried again on the next round.
_COMMIT_TIMEOUT_MS: Final = 5_000
#: How long the group watchdog waits for the broker's answer.
_ADMIN_TIMEOUT_MS: Final = 2_000
#: How often the consumer lag of each partition is reported.
_LAG_INTERVAL_SECONDS: Final = 1.0


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    bootstrap_servers: str
    topic: str
    group: str
    #: Job threads. With worker processes behind the codec, more threads than processes, so
    #: that a thread reads its source and writes its result while another one's image is
    #: being rendered.
    threads: int = 1
    #: Records fetched ahead of the threads, waiting in the backlog. They cost nothing but
    #: memory: records not started are never committed, and go to the next owner at a
    #: revocation. None: enough for a paused poll's length at a few hundred jobs a second.
    prefetch: int | None = None
    #: How long one poll waits when there is nothing to fetch or the backlog is full: the
    #: longest a finished job waits for its commit, and a stop request for the loop.
    poll_seconds: float = 0.25
    #: A worker that stops heartbeating (killed) loses its partitions after this long.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    #: The consumer polls on its own thread, whatever the jobs do, so this is a safety net
    #: only; keep it well above the job time limit anyway.
    max_poll_interval_ms: int = 300_000
    connect_timeout_seconds: float = 10.0
    #: How often the worker asks the broker whether it is still a member of its group (see
    #: :class:`Membership`); 0 never does.
    membership_check_seconds: float = 5.0
    #: How long a stopping worker keeps trying to commit what it finished (a rebalance under
    #: way refuses commits until it ends).
    final_commit_seconds: float = 30.0

    @property
    def capacity(self) -> int:
        """Records in hand at most: running, and waiting in the backlog."""
        prefetch = max(32, 8 * self.threads) if self.prefetch is None else self.prefetch
        return self.threads + prefetch


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """The rebalance listener: notes the partitions it is told were revoked or lost, for the
    polling thread to act on (rule 2). Runs on kafka-python's network thread: it takes a lock
    for a moment, nothing more (rule 4)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._noted: set[TopicPartition] = set()

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        pass

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._note(revoked)

    def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        self._note(lost)

    def _note(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            self._noted.update(partitions)

    def take(self) -> set[TopicPartition]:
        """The partitions noted since the last call."""
        with self._lock:
            noted, self._noted = self._noted, set()
            return noted


#: Says which members the broker counts in a group: ``(state, member ids)``, as the admin API's
#: DescribeGroups answers.
DescribeGroup = Callable[[str], tuple[str, frozenset[str]]]


class NotAMember(Exception):
    """The broker's group goes on without this consumer, which has not noticed."""


class Membership:
    """A watchdog for a consumer that has dropped out of its group without knowing it.

    kafka-python has been seen (rarely, under load) to fall out of step with its group in two
    ways. It stops heartbeating from a consumer that goes on polling: the broker expels it
    after the session timeout and hands its partitions to the others, while the consumer
    waits for records that never come and never rejoins. Or it never completes its side of
    a rebalance the broker has finished: its commits are refused as "rebalance in progress"
    for as long as it lives, and the partitions it should hand over wait for it.

    Every ``interval`` seconds the worker compares its own member id with the members the
    broker describes, and asks whether its commits have been refused since the last check;
    when the group is stable without it, or stable while its commits are refused, twice in a
    row, :meth:`check` raises :class:`NotAMember`, and the worker replaces its consumer with
    a new one, which joins afresh. Twice, because a member id changes, and commits are
    refused, while a rebalance is under way.
    """

    def __init__(self, group: str, describe: DescribeGroup, interval: float) -> None:
        self._group = group
        self._describe = describe
        self._interval = interval
        self._due = time.monotonic() + interval
        self._misses = 0

    def check(self, consumer: Any, *, commits_refused: bool = False) -> bool:
        """Check, if the interval has passed since the last check; say whether it did.
        ``commits_refused``: commits were refused as "rebalancing" since the last check, and
        none was accepted."""
        if self._interval <= 0 or time.monotonic() < self._due:
            return False
        self._due = time.monotonic() + self._interval
        member = getattr(consumer.group_metadata(), "member_id", None) or ""
        try:
            state, members = self._describe(self._group)
        except (KafkaError, OSError) as exc:
            logger.info("could not describe group %s: %s", self._group, exc)
            return True
        left_out = member not in members
        # An empty group has settled too: without this worker, which the broker expelled.
        settled = state == "Stable" or (state == "Empty" and left_out)
        if not settled or not (left_out or commits_refused):
            self._misses = 0
            return True
        self._misses += 1
        if self._misses < 2:
            return True
        if left_out:
            raise NotAMember(
                f"the group {self._group} is {state.lower()} without this worker "
                f"(member {member or 'none'}; members: {', '.join(sorted(members)) or 'none'})"
            )
        raise NotAMember(
            f"the group {self._group} is stable, but this worker's consumer is still "
            f"rebalancing: its commits are refused (member {member})"
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


@dataclass(frozen=True, slots=True)
class _Job:
    partition: TopicPartition
    tenure: Tenure
    delivery: Delivery


class _Backlog:
    """Records taken from the consumer and not started yet, in the order fetched; the job
    threads wait on it (rule 6)."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._running = 0
        self._closed = False

    def __len__(self) -> int:
        with self._ready:
            return len(self._jobs)

    @property
    def running(self) -> int:
        with self._ready:
            return self._running

    def put(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        with self._ready:
            self._jobs.extend(jobs)
            self._ready.notify(len(jobs))

    def get(self) -> _Job | None:
        """The next job, counted as running until :meth:`done`; None once closed."""
        with self._ready:
            while not self._jobs and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            self._running += 1
            return self._jobs.popleft()

    def done(self) -> None:
        with self._ready:
            self._running -= 1

    def drop(self, partitions: Iterable[TopicPartition]) -> int:
        """Forget the jobs of ``partitions``; how many there were."""
        dropped = set(partitions)
        with self._ready:
            before = len(self._jobs)
            self._jobs = deque(job for job in self._jobs if job.partition not in dropped)
            return before - len(self._jobs)

    def close(self) -> int:
        """Forget every job not started and release the threads; how many there were."""
        with self._ready:
            dropped = len(self._jobs)
            self._jobs.clear()
            self._closed = True
            self._ready.notify_all()
            return dropped


ConsumerFactory = Callable[[], Any]


class Worker:
    """Consume job messages in a consumer group and run them on ``threads`` threads, by the
    rules in this module's docstring.

    - The polling thread only polls, moves records to the backlog, keeps the ledger in step
      with the assignment, and commits; it keeps the consumer in its group however long jobs
      take.
    - Offsets are committed per partition up to the first message not finished yet (see
      :class:`~imgproc_worker.ledger.OffsetLedger`): a message is finished when its job's
      output and database row are written, or when it is parked on the dead-letter topic.
      Commits go out every ``poll_seconds`` at most.
    - On stop (SIGTERM), polling for new records ends and the backlog is dropped (left to the
      next owner); the jobs running finish, what is finished is committed (rule 8), and the
      consumer leaves the group.

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
        consumer_factory: ConsumerFactory | None = None,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        if options.threads < 1:
            raise ValueError("a worker needs at least one thread")
        self._handler = handler
        self._options = options
        self._worker_id = worker_id
        self._before_connect = before_connect
        self._describe_group = describe_group
        self._consumer_factory = consumer_factory or self._kafka_consumer
        self._metrics: ConsumerMetrics | NullConsumerMetrics = metrics or NO_CONSUMER_METRICS
        self._ledger: OffsetLedger[TopicPartition] = OffsetLedger()
        self._backlog = _Backlog()
        self._revocations = _Revocations()
        #: Commit points of partitions revoked, tried with the next commits until one
        #: succeeds or they are ``final_commit_seconds`` old.
        self._farewell: dict[TopicPartition, tuple[int, float]] = {}
        self._committed_at = 0.0
        #: Since the last membership check: commits refused as "rebalancing", and accepted.
        self._refusals = 0
        self._acceptances = 0
        self._lag_reported_at = 0.0
        self._stopping = threading.Event()
        self._fatal: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then wind down as described above. Raises after a
        clean wind-down when a job thread met an unexpected error (a defect)."""
        consumer = self._connect(stop)
        if consumer is None:
            return
        threads = [
            threading.Thread(target=self._job_thread, name=f"imgproc-job-{number}", daemon=True)
            for number in range(self._options.threads)
        ]
        for thread in threads:
            thread.start()
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
                    self._consume(consumer, stop, membership)
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
            dropped = self._backlog.close()
            if dropped:
                logger.info("left %d job(s) not started to the partitions' next owners", dropped)
            if consumer is not None:
                self._wind_down(consumer, threads)
            for thread in threads:
                thread.join()
            if consumer is not None:
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
        lost = sorted(self._ledger.partitions())
        self._ledger.revoke(lost)
        self._backlog.drop(lost)
        self._farewell.clear()
        for partition in lost:
            self._metrics.partition_forgotten(partition.topic, partition.partition)
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
                delay = _CONNECT_BACKOFF.delay(failures)
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
        consumer = self._consumer_factory()
        try:
            self._await_topic_metadata(consumer)
        except BaseException:
            consumer.close(autocommit=False)
            raise
        self._revocations = _Revocations()
        consumer.subscribe([self._options.topic], listener=self._revocations)
        return consumer

    def _kafka_consumer(self) -> Any:
        options = self._options
        return KafkaConsumer(
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

    def _consume(self, consumer: Any, stop: threading.Event, membership: Membership) -> None:
        poll_ms = int(self._options.poll_seconds * 1000)
        while not stop.is_set() and not self._stopping.is_set():
            self._reconcile(consumer)
            if time.monotonic() - self._committed_at >= self._options.poll_seconds:
                self._commit(consumer)
            refused = self._refusals > 0 and self._acceptances == 0
            if membership.check(consumer, commits_refused=refused):
                self._refusals = self._acceptances = 0
            self._report(consumer)
            room = self._options.capacity - self._ledger.in_hand()
            self._throttle(consumer, full=room <= 0)
            try:
                batch = consumer.poll(timeout_ms=poll_ms, max_records=max(1, room))
            except KafkaError as exc:
                logger.warning("polling failed: %s", exc)
                stop.wait(self._options.poll_seconds)
                continue
            if batch:
                sought = self._reconcile(consumer)
                self._accept(consumer, batch, sought)

    def _throttle(self, consumer: Any, *, full: bool) -> None:
        if full:
            assigned = consumer.assignment()
            if assigned and consumer.paused() != assigned:
                consumer.pause(*assigned)
        else:
            paused = consumer.paused()
            if paused:
                consumer.resume(*paused)
        release_parked_records(consumer)

    def _reconcile(self, consumer: Any) -> set[TopicPartition]:
        """Bring the ledger and the backlog in step with the consumer's assignment and the
        listener's notes (rules 2, 3 and 5); return the partitions sought back."""
        assigned = set(consumer.assignment())
        noted = self._revocations.take()
        held = self._ledger.partitions()
        gone = sorted(held - assigned)
        new = sorted(assigned - held)
        again = sorted(held & assigned & noted)
        now = time.monotonic()
        if gone:
            final = self._ledger.revoke(gone)
            dropped = self._backlog.drop(gone)
            self._farewell.update({partition: (offset, now) for partition, offset in final.items()})
            for partition in gone:
                self._metrics.partition_forgotten(partition.topic, partition.partition)
            logger.info("revoked %s", _names(gone))
            if dropped:
                logger.info("%d job(s) not started are left to the next owner", dropped)
        sought: set[TopicPartition] = set()
        for partition in again:
            low, finished = self._ledger.restart(partition)
            if finished is not None:
                self._farewell[partition] = (finished, now)
            dropped = self._backlog.drop([partition])
            logger.info("revoked %s", _names([partition]))
            if low is not None:
                consumer.seek(partition, low)
                sought.add(partition)
            logger.info(
                "assigned %s (again: reading from offset %s, %d job(s) not started dropped)",
                _names([partition]),
                "unchanged" if low is None else low,
                dropped,
            )
        if new:
            self._ledger.assign(new)
            logger.info("assigned %s", _names(new))
        if gone or new or again:
            self._metrics.rebalanced(len(new) + len(again), len(gone) + len(again))
        return sought

    def _accept(
        self, consumer: Any, batch: dict[TopicPartition, list[Any]], sought: set[TopicPartition]
    ) -> None:
        """Take a poll's records into the ledger and the backlog (rule 1)."""
        assigned = consumer.assignment()
        jobs: list[_Job] = []
        for partition, records in batch.items():
            if partition in sought:
                # Fetched before the seek: they come again, from the offset sought.
                continue
            if partition not in assigned:
                logger.info(
                    "%d record(s) of %s came after it was revoked: left to its next owner",
                    len(records),
                    _names([partition]),
                )
                continue
            for record in records:
                tenure = self._ledger.take(partition, record.offset)
                if tenure is None:
                    logger.warning(
                        "%s@%d is in hand already; not taken twice",
                        _names([partition]),
                        record.offset,
                    )
                    continue
                delivery = Delivery(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                )
                jobs.append(_Job(partition, tenure, delivery))
        self._backlog.put(jobs)

    def _commit(self, consumer: Any) -> bool:
        """Commit what is finished, and what revoked partitions left; True when nothing is
        left to commit."""
        self._committed_at = now = time.monotonic()
        offsets = self._ledger.committable()
        for partition, (point, since) in list(self._farewell.items()):
            if (
                now - since > self._options.final_commit_seconds
                or offsets.get(partition, -1) >= point
            ):
                del self._farewell[partition]
        request = {partition: offset for partition, (offset, _) in self._farewell.items()}
        request.update(offsets)
        if not request:
            return True
        try:
            consumer.commit(_commit_request(request), timeout_ms=_COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            # Kept in the ledger: the next round commits them. Refusals while the group
            # rebalances are part of the protocol.
            rebalancing = isinstance(exc, RebalanceInProgressError | CommitFailedError)
            self._refusals += rebalancing
            level = logging.INFO if rebalancing else logging.WARNING
            logger.log(level, "committing %s failed: %s", _names(request), exc)
            return False
        self._acceptances += 1
        self._ledger.committed(offsets)
        self._farewell.clear()
        logger.debug("committed %s", request)
        return True

    def _report(self, consumer: Any) -> None:
        now = time.monotonic()
        self._metrics.in_flight(self._backlog.running)
        if now - self._lag_reported_at < _LAG_INTERVAL_SECONDS:
            return
        self._lag_reported_at = now
        for partition, start in self._ledger.consumed_from().items():
            try:
                end = consumer.highwater(partition)
            except KafkaError:
                continue
            if end is not None:
                self._metrics.partition_lag(
                    partition.topic, partition.partition, max(0, end - start)
                )

    # -- the job threads -------------------------------------------------------------------

    def _job_thread(self) -> None:
        while (job := self._backlog.get()) is not None:
            try:
                self._run_one(job)
            finally:
                self._backlog.done()

    def _run_one(self, job: _Job) -> None:
        def keep_going() -> bool:
            return not self._stopping.is_set() and self._ledger.owns(job.partition, job.tenure)

        if not keep_going():
            return
        delivery = job.delivery
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
            self._ledger.finish(job.partition, delivery.offset, job.tenure)

    # -- stopping --------------------------------------------------------------------------

    def _wind_down(self, consumer: Any, threads: list[threading.Thread]) -> None:
        """Poll, paused, while the jobs running finish, then commit them (rule 8)."""
        poll_ms = int(self._options.poll_seconds * 1000)

        def paused_poll() -> None:
            try:
                assigned = consumer.assignment()
                if assigned:
                    consumer.pause(*assigned)
                consumer.poll(timeout_ms=poll_ms, max_records=1)
            except KafkaError as exc:
                logger.info("polling while stopping failed: %s", exc)
                time.sleep(self._options.poll_seconds)

        while any(thread.is_alive() for thread in threads):
            self._reconcile(consumer)
            self._commit(consumer)
            paused_poll()
        deadline = time.monotonic() + self._options.final_commit_seconds
        while True:
            self._reconcile(consumer)
            if self._commit(consumer):
                return
            if time.monotonic() >= deadline:
                break
            paused_poll()
        left = self._ledger.committable()
        logger.warning(
            "could not commit %s within %g s of stopping; their next owner runs those jobs again",
            _names(left),
            self._options.final_commit_seconds,
        )


def release_parked_records(consumer: Any) -> None:
    """Work around kafka-python 3.0.12's fetcher, which can leave a partition stuck for good.

    When a partition is paused while a poll has returned only part of a fetch's records, the
    fetcher parks the rest, and excludes the partition from fetching until they are handed
    back. It hands them back only while no other partition's records are in line, which it
    tells by ``_next_partition_records is None``; but once consumed, those records stay in
    line as an empty, falsy object, never None. So after another partition's records were
    consumed, a partition paused in the middle of a fetch is neither returned nor fetched
    again, however long it stays resumed: its jobs wait for ever, while the worker holds the
    partition. (Seen as jobs left PENDING when partitions were paused and rebalanced; the
    test in ``tests/integration/test_kafka_consumer.py`` reproduces it on a real broker.)
    Clearing the spent records, on the polling thread between polls, lets the fetcher hand
    the parked ones back on the next poll.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None:
        return
    spent = getattr(fetcher, "_next_partition_records", None)
    if spent is not None and not spent:
        fetcher._next_partition_records = None


def _commit_request(offsets: dict[TopicPartition, int]) -> dict[TopicPartition, Any]:
    return {partition: OffsetAndMetadata(offset, "", -1) for partition, offset in offsets.items()}


def _names(partitions: Iterable[TopicPartition]) -> str:
    names = [f"{partition.topic}[{partition.partition}]" for partition in sorted(partitions)]
    return ", ".join(names) or "nothing"
