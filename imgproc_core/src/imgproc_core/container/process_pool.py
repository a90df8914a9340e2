"""The process pool's composition root: transform jobs rendered in ``IMGPROC_WORKER_PROCESSES``
worker processes, each job under ``IMGPROC_JOB_TIME_LIMIT_SECONDS``, while uploads are still
probed by Pillow in the calling process. Needs the ``process-pool`` extra."""

from __future__ import annotations

from collections.abc import Iterator

from dependency_injector import containers, providers

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.pillow.allocator import tune_allocator
from imgproc_core.adapters.process_pool import ProcessPoolImageCodec
from imgproc_core.ports import Clock
from imgproc_core.settings import Settings


def open_pool(settings: Settings) -> Iterator[ProcessPoolImageCodec]:
    """The pool, closed (its processes stopped) with the container's resources. The processes
    start at first use, and tune their own allocator."""
    pool = ProcessPoolImageCodec(
        settings.worker_processes, settings.job_time_limit_seconds, initializer=tune_allocator
    )
    try:
        yield pool
    finally:
        pool.close()


class PooledPillowImaging(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    codec = providers.Singleton(PillowImageCodec)
    job_codec = providers.Resource(open_pool, settings)
    #: Called once at a process's start-up: uploads decode images here.
    tune_allocator = providers.Callable(tune_allocator)
