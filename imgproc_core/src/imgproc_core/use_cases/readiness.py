"""Readiness: can the service do its work right now? Each dependency gets one cheap question."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from imgproc_core.ports import BlobStorage, UnitOfWorkFactory, UrlCache

__all__ = ["PROBE_KEY", "CheckReadiness", "Dependency", "ReadinessQuery"]

#: A key that never holds a blob nor a cache entry; asking for it touches the dependency and
#: nothing else.
PROBE_KEY: Final = "readiness-probe/none"


class Dependency(StrEnum):
    #: The database, which also holds the job queue (the queue table, or the outbox).
    DATABASE = "database"
    STORAGE = "storage"
    #: The URL cache.
    CACHE = "cache"


@dataclass(frozen=True, slots=True)
class ReadinessQuery:
    dependency: Dependency


class CheckReadiness:
    """Ask one dependency its question; returns when it answers, raises what it raised
    otherwise.

    - the database: how many jobs are queued, one indexed query that reads the job queue too;
    - the storage: whether :data:`PROBE_KEY` exists (a stat, or a HEAD request to the bucket);
    - the cache: a read of :data:`PROBE_KEY`.

    One dependency a call, so that a shell can ask them all at once, each within its own time
    limit, and decide which ones it needs.
    """

    def __init__(
        self, uow_factory: UnitOfWorkFactory, storage: BlobStorage, cache: UrlCache
    ) -> None:
        self._uow_factory = uow_factory
        self._storage = storage
        self._cache = cache

    def __call__(self, query: ReadinessQuery) -> None:
        if query.dependency is Dependency.DATABASE:
            with self._uow_factory() as uow:
                uow.jobs.pending_count()
        elif query.dependency is Dependency.STORAGE:
            self._storage.exists(PROBE_KEY)
        else:
            self._cache.get(PROBE_KEY)
