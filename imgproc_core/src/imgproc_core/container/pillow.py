"""Pillow's composition root: the codec that probes uploads, and what transform jobs run on.With
``IMGPROC_WORKER_PROCESSES`` at 0, jobs run here too, in the calling thread, which nothing can
stop (:mod:`imgproc_core.container.process_pool` runs them in processes). Needs the ``pillow``
extra.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.pillow.allocator import tune_allocator
from imgproc_core.ports import Clock
from imgproc_core.settings import Settings


class PillowImaging(containers.DeclarativeContainer):
    """Jobs run on the in-process codec (``worker_processes`` is 0)."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    codec = providers.Singleton(PillowImageCodec)
    job_codec = codec
    #: Called once at a process's start-up, before it decodes its first image.
    tune_allocator = providers.Callable(tune_allocator)
