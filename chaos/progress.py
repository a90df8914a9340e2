"""How far a round has come, as the database tells it, shared by the threads of a round: the
senders (who keep a bounded backlog), the fault schedule (which waits for its marks) and the
watcher that reads the counts."""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    """Jobs requested and ended (READY or FAILED) so far; every wait has a deadline."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._changed = threading.Condition()
        self.started = time.monotonic()
        self.requested = 0
        self.ended = 0
        self.pending = 0
        #: When a job last ended (or the round started): a round with no job ending for a
        #: while has stalled.
        self.last_ended_at = self.started

    def counted(self, ended: int, pending: int) -> None:
        with self._changed:
            if ended != self.ended:
                self.last_ended_at = time.monotonic()
            self.ended, self.pending = ended, pending
            self._changed.notify_all()

    def requested_one(self) -> None:
        with self._changed:
            self.requested += 1
            self._changed.notify_all()

    def stalled_for(self) -> float:
        return time.monotonic() - self.last_ended_at

    def wait_until_ended(self, target: int, stall_seconds: float) -> bool:
        """Wait until ``target`` jobs have ended; False once none has ended for
        ``stall_seconds``."""
        with self._changed:
            while self.ended < target:
                if self.stalled_for() > stall_seconds:
                    return False
                self._changed.wait(timeout=1.0)
        return True

    def wait_for_room(self, n: int, backlog: int, stall_seconds: float) -> bool:
        """Wait until the ``n``-th request would leave at most ``backlog`` jobs unfinished;
        False once no job has ended for ``stall_seconds``."""
        with self._changed:
            while n - self.ended >= backlog:
                if self.stalled_for() > stall_seconds:
                    return False
                self._changed.wait(timeout=1.0)
        return True

    def note(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"chaos: {self._label} +{elapsed:6.1f} s: {message}", file=sys.stderr, flush=True)
