"""Which offsets a worker holds, and up to where each partition may be committed."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

__all__ = ["OffsetLedger", "Tenure"]

P = TypeVar("P", bound=Hashable)


class _Partition:
    """One tenure of a partition: from its assignment to its revocation (or restart). Jobs
    carry the tenure they were taken in, so that one finishing after its partition was
    restarted or revoked is told apart from the same offset taken again."""

    __slots__ = ("committed", "finished", "order", "reached")

    def __init__(self) -> None:
        #: Offsets taken and not yet in the finished prefix, in the order taken; ``finished``
        #: says which of them are done.
        self.order: deque[int] = deque()
        self.finished: dict[int, bool] = {}
        #: One past the longest finished prefix, or -1 while nothing is finished.
        self.reached = -1
        #: The offset committed last (the next one to read), or -1 before the first commit.
        self.committed = -1

    def accepts(self, offset: int) -> bool:
        # The consumer hands a partition's offsets in increasing order; anything else is a
        # message seen already.
        return offset >= self.reached and (not self.order or offset > self.order[-1])

    def commit_point(self) -> int | None:
        """The offset to commit now, if it moved past the last commit."""
        while self.order and self.finished[self.order[0]]:
            offset = self.order.popleft()
            del self.finished[offset]
            self.reached = offset + 1
        return self.reached if self.reached > self.committed else None

    def low_watermark(self) -> int | None:
        """The first offset of this tenure not known to be finished: everything before it
        is done. None when nothing was taken."""
        if self.order:
            for offset in self.order:
                if not self.finished[offset]:
                    return offset
            return self.order[-1] + 1
        return self.reached if self.reached >= 0 else None


#: What :meth:`OffsetLedger.take` hands out: the tenure an offset was taken in.
Tenure = _Partition


class OffsetLedger(Generic[P]):
    """Offsets taken from each partition, and which of them are finished.

    Jobs finish out of order (several threads), but a partition's committed offset means "all
    before it is done": it may only move up to the first offset not finished yet. So a worker
    that dies loses no job (everything from that first unfinished offset is delivered again)
    and only redoes jobs finished past it, which is harmless as jobs are idempotent.

    Thread-safe: job threads finish offsets, the polling thread takes and commits them, and the
    consumer's network thread assigns and revokes partitions.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[P, _Partition] = {}

    def assign(self, partitions: Iterable[P]) -> None:
        with self._lock:
            for partition in partitions:
                self._partitions.setdefault(partition, _Partition())

    def revoke(self, partitions: Iterable[P]) -> dict[P, int]:
        """Stop tracking ``partitions``; return the offsets they may still be committed to.

        Jobs of these partitions that finish later are not recorded: the partition's next owner
        takes them again from its committed offset.
        """
        with self._lock:
            offsets: dict[P, int] = {}
            for partition in partitions:
                state = self._partitions.pop(partition, None)
                if state is None:
                    continue
                point = state.commit_point()
                if point is not None:
                    offsets[partition] = point
            return offsets

    def restart(self, partition: P) -> int | None:
        """Begin a new tenure of a partition that stays assigned; return where its records
        must be read again from (:meth:`_Partition.low_watermark` of the old tenure), or None
        when the old tenure took nothing.

        For a partition that was revoked and assigned back between two looks at the
        consumer's assignment: jobs of the old tenure still running may finish, but are
        recorded nowhere, and the records from the low watermark on are delivered again.
        """
        with self._lock:
            old = self._partitions.get(partition)
            self._partitions[partition] = _Partition()
            return None if old is None else old.low_watermark()

    def partitions(self) -> set[P]:
        with self._lock:
            return set(self._partitions)

    def consumed_from(self) -> dict[P, int]:
        """Per partition, the offset from which its work is not known to be done: the last
        commit, else the first offset taken (partitions that took nothing are left out)."""
        with self._lock:
            points: dict[P, int] = {}
            for partition, state in self._partitions.items():
                if state.committed >= 0:
                    points[partition] = state.committed
                elif (low := state.low_watermark()) is not None:
                    points[partition] = low
            return points

    def owns(self, partition: P, tenure: Tenure | None = None) -> bool:
        """Whether ``partition`` is tracked (in ``tenure``, when given)."""
        with self._lock:
            state = self._partitions.get(partition)
            return state is not None and (tenure is None or state is tenure)

    def take(self, partition: P, offset: int) -> Tenure | None:
        """Record ``offset`` as taken and return its tenure; None (and nothing recorded) when
        the partition is not tracked, or the offset was taken already."""
        with self._lock:
            state = self._partitions.get(partition)
            if state is None or not state.accepts(offset):
                return None
            state.order.append(offset)
            state.finished[offset] = False
            return state

    def finish(self, partition: P, offset: int, tenure: Tenure | None = None) -> None:
        """Mark ``offset`` finished, unless its partition is no longer tracked or (when
        ``tenure`` is given) is in another tenure now."""
        with self._lock:
            state = self._partitions.get(partition)
            if state is None or (tenure is not None and state is not tenure):
                return
            if offset in state.finished:
                state.finished[offset] = True

    def in_hand(self) -> int:
        """Offsets taken and not finished, over every partition."""
        with self._lock:
            return sum(
                not done for state in self._partitions.values() for done in state.finished.values()
            )

    def committable(self) -> dict[P, int]:
        """The partitions whose commit point moved since their last commit, and where to."""
        with self._lock:
            offsets: dict[P, int] = {}
            for partition, state in self._partitions.items():
                point = state.commit_point()
                if point is not None:
                    offsets[partition] = point
            return offsets

    def committed(self, offsets: Mapping[P, int]) -> None:
        """Record a successful commit of ``offsets``."""
        with self._lock:
            for partition, offset in offsets.items():
                state = self._partitions.get(partition)
                if state is not None:
                    state.committed = max(state.committed, offset)
