"""The worker's bookkeeping against a scripted consumer: whatever the rebalances do and
whenever the listener runs, no offset is committed before its job has finished, and a stopping
worker commits what it finished.

Each scenario below was also run once against the loop this module replaced (listener-driven
bookkeeping, records dropped when the ledger refused them, one final commit attempt); the
docstrings say what that loop did with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import pytest

from imgproc_worker import ConsumerOptions, Delivery, Worker
from tests.support.scripted_consumer import TOPIC, ScriptedConsumer, Step, tp
from tests.support.waiting import wait_until

#: A deadline for a state the worker must reach, not a timing assertion.
DEADLINE_SECONDS = 20.0
#: How often a test looks at the worker's state: often, as the worker polls every 5 ms here.
CHECK_SECONDS = 0.001


@dataclass
class Jobs:
    """The message handler: records each run; a job ``held`` waits until :meth:`release`, or
    until the worker tells it to stop (then it is abandoned, as a real job waiting to retry
    would be)."""

    held: Callable[[Delivery], bool] = lambda delivery: False
    started: list[tuple[int, int]] = field(default_factory=list)
    finished: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def __call__(self, delivery: Delivery, keep_going: Callable[[], bool]) -> bool:
        job = (delivery.partition, delivery.offset)
        with self._lock:
            self.started.append(job)
        if self.held(delivery):
            while not self._released.wait(0.001):
                if not keep_going():
                    return False
        with self._lock:
            self.finished.add(job)
        return True

    def started_on(self, partition: int) -> list[int]:
        with self._lock:
            return [offset for number, offset in self.started if number == partition]

    def finished_on(self, partition: int) -> set[int]:
        with self._lock:
            return {offset for number, offset in self.finished if number == partition}


def options(threads: int = 2, prefetch: int = 8) -> ConsumerOptions:
    return ConsumerOptions(
        bootstrap_servers="127.0.0.1:1",
        topic=TOPIC,
        group="scripted",
        threads=threads,
        prefetch=prefetch,
        poll_seconds=0.005,
        membership_check_seconds=0,
        final_commit_seconds=5.0,
    )


@contextmanager
def running(
    consumer: ScriptedConsumer, jobs: Jobs, worker_options: ConsumerOptions | None = None
) -> Iterator[threading.Event]:
    """The worker on a thread; stopped (as SIGTERM would) when the block ends."""
    worker = Worker(
        jobs,  # type: ignore[arg-type]
        worker_options or options(),
        "scripted",
        consumer_factory=lambda: consumer,
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="scripted-worker")
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(DEADLINE_SECONDS)
    assert not thread.is_alive(), "the worker did not stop"
    assert not errors, errors
    assert consumer.closed


def assert_nothing_committed_unfinished(consumer: ScriptedConsumer, jobs: Jobs) -> None:
    """The invariant: below each committed offset, every job has finished (a next owner
    starts at the committed offset, so a job below it that never finished is lost)."""
    for partition, committed in consumer.committed.items():
        lost = sorted(set(range(committed)) - jobs.finished_on(partition.partition))
        assert not lost, f"{partition} committed at {committed}, never finished: {lost}"


def _started_0_to_3(jobs: Jobs) -> Callable[[], bool]:
    return lambda: set(jobs.started_on(0)) >= {0, 1, 2, 3}


def _position(consumer: ScriptedConsumer) -> Callable[[], int]:
    return lambda: consumer.positions.get(tp(0), 0)


def test_records_of_a_partition_the_listener_has_not_announced_yet_are_taken() -> None:
    """kafka-python replaces the assignment before it calls the listener, on its network
    thread: a poll may return records of a new partition before ``on_partitions_assigned``
    has run. The old loop dropped them without a word (the ledger did not know the partition)
    and, once the listener had run, took the later ones and committed past the dropped ones:
    the records of partition 1 that came before the listener (offset 0 here) were lost."""
    jobs = Jobs()
    consumer = ScriptedConsumer(records={0: 4, 1: 8}, assigned={0})
    consumer.script = [
        Step("partition 1 assigned", lambda: len(jobs.started_on(0)) >= 1,
             lambda c: c.cooperative([0, 1], notify=False)),
        Step("listener told late", lambda: consumer.positions.get(tp(1), 0) >= 1,
             lambda c: c.notify(assigned=[1])),
    ]  # fmt: skip
    with running(consumer, jobs, options(threads=1, prefetch=3)):
        wait_until(
            lambda: consumer.committed.get(tp(1)) == 8,
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never committed partition 1",
        )

    assert jobs.finished_on(1) == set(range(8))
    assert_nothing_committed_unfinished(consumer, jobs)


def test_a_partition_revoked_and_assigned_back_while_a_batch_is_held_is_read_again() -> None:
    """A cooperative rebalance revokes partition 0 and the next assigns it back, both while
    the polling thread holds a batch of it (offsets 4-7 or later; 0-3 are still running), and the
    partition restarts from its committed offset, 0. The old loop took the stale batch into the
    fresh tenure, then refused 0-3 when they came again ("seen already"), and committed 12
    once 4-11 were done: when the worker stopped with 0-3 still running, they were lost."""
    jobs = Jobs(held=lambda delivery: delivery.offset < 4)
    consumer = ScriptedConsumer(records={0: 12}, assigned={0}, batch_limit=4)
    running_0_to_3, position = _started_0_to_3(jobs), _position(consumer)

    def revoke_and_assign_back(c: ScriptedConsumer) -> None:
        c.cooperative([])
        c.cooperative([0])

    consumer.script = [
        Step("revoked and assigned back", lambda: running_0_to_3() and position() >= 8,
             revoke_and_assign_back, after_fetch=True),
    ]  # fmt: skip
    with running(consumer, jobs, options(threads=6, prefetch=2)):
        wait_until(
            lambda: jobs.finished_on(0) >= set(range(4, 12)),
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never finished 4-11",
        )
        # The stale batch was not taken: 0-3 were delivered again, and started again.
        wait_until(
            lambda: jobs.started_on(0).count(0) == 2,
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never started offset 0 again",
        )

    assert consumer.played == ["revoked and assigned back"]
    assert consumer.committed.get(tp(0), 0) == 0
    assert_nothing_committed_unfinished(consumer, jobs)


def test_a_partition_kept_across_an_eager_rebalance_is_sought_back() -> None:
    """Under the eager protocol the listener hears that everything is revoked, but a partition
    assigned back keeps its fetch position (8 here, with 0-3 still running). The old loop
    started a fresh tenure at 8, committed 12 once 4-11 were done, and lost 0-3 when the worker
    stopped with them still running. Now the partition is sought back to 0, the first offset
    of the old tenure not finished."""
    jobs = Jobs(held=lambda delivery: delivery.offset < 4)
    consumer = ScriptedConsumer(records={0: 12}, assigned={0}, batch_limit=4)
    running_0_to_3, position = _started_0_to_3(jobs), _position(consumer)
    consumer.script = [
        Step("eager rebalance", lambda: running_0_to_3() and position() >= 8,
             lambda c: c.eager_keep(), after_fetch=True),
    ]  # fmt: skip
    with running(consumer, jobs, options(threads=6, prefetch=2)):
        wait_until(
            lambda: jobs.finished_on(0) >= set(range(4, 12)),
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never finished 4-11",
        )
        wait_until(
            lambda: jobs.started_on(0).count(0) == 2,
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never started offset 0 again",
        )

    assert consumer.committed.get(tp(0), 0) == 0
    assert_nothing_committed_unfinished(consumer, jobs)


def test_records_fetched_ahead_go_with_their_partition_and_come_back_to_its_next_owner() -> None:
    """The backlog is full (partitions paused) when partition 0 is revoked: its records not
    started are dropped, never committed, and its running job is abandoned; when the partition
    comes back it starts from the committed offset and every job runs. The old loop passed
    this one as well: its queued jobs checked ownership before running."""
    jobs = Jobs(held=lambda delivery: delivery.partition == 0 and delivery.offset == 0)
    consumer = ScriptedConsumer(records={0: 6, 1: 6}, assigned={0, 1})
    consumer.script = [
        Step("backlog full", lambda: consumer.paused() == {tp(0), tp(1)} and len(jobs.started) >= 1,
             lambda c: c.cooperative([1])),
        Step("assigned back", lambda: consumer.committed.get(tp(1)) == 6,
             lambda c: c.cooperative([0, 1])),
    ]  # fmt: skip
    with running(consumer, jobs, options(threads=1, prefetch=3)):
        wait_until(
            lambda: "assigned back" in consumer.played,
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never assigned partition 0 back",
        )
        jobs.release()
        wait_until(
            lambda: consumer.committed.get(tp(0)) == 6,
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never committed partition 0",
        )

    assert jobs.finished_on(0) == set(range(6))
    assert jobs.started_on(0).count(0) == 2
    assert_nothing_committed_unfinished(consumer, jobs)


def test_a_stopping_worker_commits_after_the_rebalance_that_refused_it() -> None:
    """Commits are refused while a rebalance is under way, and the worker is stopped then.
    The old loop tried its final commit once, was refused, and left: the next owner ran the
    six finished jobs again. Now it polls on until the rebalance is over and commits."""
    jobs = Jobs()
    consumer = ScriptedConsumer(records={0: 6}, assigned={0}, refuse_commits=10**9)
    with running(consumer, jobs) as stop:
        wait_until(
            lambda: jobs.finished_on(0) == set(range(6)),
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never finished every job",
        )
        refused = consumer.refused
        consumer.script = [
            Step("rebalance over", lambda: consumer.refused >= refused + 2,
                 lambda c: setattr(c, "refuse_commits", c.refused)),
        ]  # fmt: skip
        stop.set()

    assert consumer.committed == {tp(0): 6}
    assert_nothing_committed_unfinished(consumer, jobs)


def test_records_that_arrive_after_their_partition_was_revoked_are_not_taken() -> None:
    """The listener runs while the polling thread holds a batch of a partition just revoked:
    nothing of it is taken or committed, and its next owner reads it from the start."""
    jobs = Jobs()
    consumer = ScriptedConsumer(records={0: 4, 1: 4}, assigned={0, 1})
    consumer.script = [
        Step("partition 0 revoked", lambda: True, lambda c: c.cooperative([1]), after_fetch=True),
    ]
    with running(consumer, jobs):
        wait_until(
            lambda: consumer.committed.get(tp(1)) == 4,
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never committed partition 1",
        )

    assert jobs.finished_on(0) == set()
    assert tp(0) not in consumer.committed


@pytest.mark.parametrize("threads", [1, 3])
def test_every_record_runs_once_and_is_committed_when_nothing_moves(threads: int) -> None:
    jobs = Jobs()
    consumer = ScriptedConsumer(records={0: 30, 1: 25, 2: 0}, assigned={0, 1, 2})
    with running(consumer, jobs, options(threads=threads, prefetch=4)):
        wait_until(
            lambda: consumer.committed.get(tp(0)) == 30 and consumer.committed.get(tp(1)) == 25,
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never committed everything",
        )

    assert sorted(jobs.started) == sorted(jobs.finished)
    assert len(jobs.started) == 55


def test_a_free_thread_takes_the_next_job_from_the_backlog_without_waiting_for_a_poll() -> None:
    """Polls take their whole timeout here when they have nothing to return; the jobs still
    run one after another from what one poll fetched ahead."""
    jobs = Jobs()
    consumer = ScriptedConsumer(records={0: 20}, assigned={0}, idle_poll_ms=1_000)
    slow_polls = replace(options(threads=1, prefetch=19), poll_seconds=1.0)
    with running(consumer, jobs, slow_polls):
        wait_until(
            lambda: len(jobs.finished) == 20,
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never finished every job",
        )
        polls = consumer.polls

    assert polls <= 3


def test_the_listener_touches_nothing_and_the_consumer_is_used_on_one_thread() -> None:
    """The scripted consumer calls the listener on a thread of its own and fails any call
    made off the polling thread: a rebalance in the middle of the work passes."""
    jobs = Jobs()
    consumer = ScriptedConsumer(records={0: 10, 1: 10}, assigned={0, 1}, batch_limit=3)
    consumer.script = [
        Step("moved", lambda: len(jobs.finished) >= 3, lambda c: c.cooperative([1])),
        Step("back", lambda: len(jobs.finished) >= 8, lambda c: c.cooperative([0, 1])),
    ]
    with running(consumer, jobs):
        wait_until(
            lambda: consumer.committed.get(tp(0)) == 10 and consumer.committed.get(tp(1)) == 10,
            timeout=DEADLINE_SECONDS,
            interval=CHECK_SECONDS,
            message="never committed everything",
        )

    assert consumer.played == ["moved", "back"]
    assert_nothing_committed_unfinished(consumer, jobs)
