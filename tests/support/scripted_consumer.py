"""A stand-in for kafka-python's ``KafkaConsumer`` that plays a script of rebalances, for the
worker's bookkeeping tests.

It keeps what the worker relies on from the real consumer, as read in kafka-python 3.0's
source (see the field notes in docs/architecture.md): records come in offset order per
partition and the position moves over the records ``poll()`` returned; a paused partition
returns nothing; ``seek`` sets the next offset; a cooperative rebalance replaces the
assignment first, then calls the listener (revoked, then assigned), and a new partition starts
from the committed offset; under the eager protocol the listener is told everything is
revoked but a partition assigned back keeps its position.

A script is a list of :class:`Step`: each waits for its condition (checked at every poll),
then acts, either before the poll gathers its records or after (``after_fetch``), which plays
a listener that runs on the network thread while the polling thread still holds the batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import RebalanceInProgressError
from kafka.structs import TopicPartition

TOPIC = "jobs"


def tp(number: int) -> TopicPartition:
    return TopicPartition(TOPIC, number)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Step:
    name: str
    when: Callable[[], bool]
    act: Callable[[ScriptedConsumer], None]
    #: Act after the poll has gathered its records, before it returns them.
    after_fetch: bool = False


@dataclass
class Metadata:
    member_id: str


@dataclass
class ScriptedConsumer:
    """Partitions of :data:`TOPIC` holding ``records[n]`` messages each, numbered from 0."""

    records: dict[int, int]
    assigned: set[int]
    script: list[Step] = field(default_factory=list)
    listener: Any = None
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    paused_partitions: set[TopicPartition] = field(default_factory=set)
    #: The most records one poll returns (a fetch's size), whatever ``max_records`` says.
    batch_limit: int = 500
    #: Commits to refuse with ``RebalanceInProgressError`` before accepting any.
    refuse_commits: int = 0
    refused: int = 0
    played: list[str] = field(default_factory=list)
    polls: int = 0
    closed: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._assignment = {tp(number) for number in self.assigned}
        self._started = False

    # -- what the worker calls --------------------------------------------------------------

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.records) if topic == TOPIC else set()

    def subscribe(self, topics: list[str], listener: Any) -> None:
        assert topics == [TOPIC]
        self.listener = listener

    def assignment(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._assignment)

    def paused(self) -> set[TopicPartition]:
        with self._lock:
            return set(self.paused_partitions)

    def pause(self, *partitions: TopicPartition) -> None:
        with self._lock:
            self.paused_partitions.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        with self._lock:
            self.paused_partitions.difference_update(partitions)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        with self._lock:
            assert partition in self._assignment, f"seek on {partition}, not assigned"
            self.positions[partition] = offset

    def commit(self, offsets: dict[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        with self._lock:
            if self.refused < self.refuse_commits:
                self.refused += 1
                raise RebalanceInProgressError("the group is rebalancing")
            for partition, meta in offsets.items():
                self.committed[partition] = meta.offset

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.records.get(partition.partition)

    def group_metadata(self) -> Metadata:
        return Metadata("scripted-member")

    def close(self, autocommit: bool = True) -> None:
        self.closed = True

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list[Any]]:
        self.polls += 1
        if not self._started:
            # The first join: the listener hears of the first assignment too.
            self._started = True
            self._notify(revoked=set(), assigned=self.assignment())
        self._play(after_fetch=False)
        batch = self._fetch(min(max_records or 500, self.batch_limit))
        self._play(after_fetch=True)
        if not batch:
            time.sleep(min(timeout_ms, 2) / 1000)
        return batch

    # -- what a script does -----------------------------------------------------------------

    def cooperative(self, numbers: Iterable[int], *, notify: bool = True) -> None:
        """A cooperative rebalance to ``numbers``: the assignment first, then (unless
        ``notify`` is False, for a listener that runs later) the listener."""
        new = {tp(number) for number in numbers}
        with self._lock:
            old = set(self._assignment)
            self._assignment = new
            for partition in old - new:
                self.positions.pop(partition, None)
                self.paused_partitions.discard(partition)
            for partition in new - old:
                self.positions.pop(partition, None)
        if notify:
            self._notify(revoked=old - new, assigned=new - old)

    def eager_keep(self) -> None:
        """An eager rebalance that hands every partition back to this member: the listener is
        told all were revoked, then assigned; positions and paused flags stay."""
        everything = self.assignment()
        self._notify(revoked=everything, assigned=everything)

    def notify(self, *, revoked: Iterable[int] = (), assigned: Iterable[int] = ()) -> None:
        """Run the listener late, for a rebalance already applied."""
        self._notify(
            revoked={tp(number) for number in revoked},
            assigned={tp(number) for number in assigned},
        )

    # -- inside -----------------------------------------------------------------------------

    def _notify(self, *, revoked: set[TopicPartition], assigned: set[TopicPartition]) -> None:
        if self.listener is None:
            return
        if revoked:
            self.listener.on_partitions_revoked(sorted(revoked))
        if assigned:
            self.listener.on_partitions_assigned(sorted(assigned))

    def _play(self, *, after_fetch: bool) -> None:
        while self.script and self.script[0].after_fetch is after_fetch and self.script[0].when():
            step = self.script.pop(0)
            step.act(self)
            self.played.append(step.name)

    def _fetch(self, max_records: int) -> dict[TopicPartition, list[Record]]:
        batch: dict[TopicPartition, list[Record]] = {}
        with self._lock:
            for partition in sorted(self._assignment - self.paused_partitions):
                start = self.positions.get(partition, self.committed.get(partition, 0))
                end = min(self.records[partition.partition], start + max_records)
                if end > start:
                    batch[partition] = [
                        Record(TOPIC, partition.partition, offset, b"key", b"%d" % offset)
                        for offset in range(start, end)
                    ]
                    max_records -= end - start
                self.positions[partition] = end
                if max_records <= 0:
                    break
        return batch
