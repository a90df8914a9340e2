"""The operating system's clock, and the process's garbage collector."""

from __future__ import annotations

import gc
from datetime import UTC, datetime


class SystemClock:
    """Wall-clock time in UTC, timezone-aware."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def freeze_start_up_objects() -> None:
    """Leave the objects made at start-up out of every later garbage collection.

    A server process holds hundreds of thousands of objects made while it starts (modules, the
    app's routes and schemas, SQLAlchemy's metadata), which live as long as the process. The
    collector's full (oldest-generation) pass walks every one of them and finds nothing to free;
    in the HTTP server under load that pass ran several times in ten seconds and held the
    interpreter lock 60-85 ms each time, which was the whole of the slowest percent of
    requests. Frozen, the objects are still freed by reference counting when they are dropped;
    only the cycle detector stops looking at them, and the full pass takes about 2 ms.

    Call it once, after building everything that lives as long as the process.
    """
    gc.collect()
    gc.freeze()
