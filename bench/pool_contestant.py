"""One codec process pool in a process of its own.

``python -m bench.pool_contestant KIND:SIZE INPUT [--tune]``. ``KIND`` is ``pebble`` (the pool
the service ships, :mod:`imgproc_core.adapters.process_pool`, on pebble's ``ProcessPool``) or
``hand-written`` (the pool it replaced, imported as ``legacy_process_pool``, which
:func:`bench.scenarios.pool.legacy_pool_path` puts on ``PYTHONPATH``). The pool has ``SIZE``
worker processes, started before the first measurement, each with the service's allocator
settings when ``--tune`` is given (as the container passes ``initializer=tune_allocator``).

It speaks :mod:`bench.contestant`'s protocol: warms up, says ``ready``, then answers ``run N``
with one JSON line, per job over N jobs: ``wall`` seconds, ``cpu`` seconds of the whole
process tree (this process with the pool's threads, the fork server, the workers) and
``parent_cpu``, this process's share: what supervision costs beside the codec's work. The
jobs are called from ``SIZE`` threads, one per worker process, as the service's job threads
call the pool. CPU time is read from ``/proc/PID/task/TID/schedstat`` (nanoseconds), the
processes below this one from each thread's ``children`` list.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.contestant import answer_runs
from bench.jobs import QUALITY, resize_to
from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.domain.limits import Limits

KINDS = ("pebble", "hand-written")


def _pool_class(kind: str) -> Any:
    if kind == "pebble":
        from imgproc_core.adapters.process_pool import ProcessPoolImageCodec

        return ProcessPoolImageCodec
    from legacy_process_pool import ProcessPoolImageCodec

    return ProcessPoolImageCodec


def _threads_cpu_seconds(pid: int) -> tuple[float, list[int]]:
    """CPU seconds of every thread of ``pid``, and the processes those threads started."""
    nanoseconds, children = 0, []
    for task in Path(f"/proc/{pid}/task").iterdir():
        nanoseconds += int((task / "schedstat").read_text().split()[0])
        children.extend(int(child) for child in (task / "children").read_text().split())
    return nanoseconds / 1e9, children


def tree_cpu_seconds() -> tuple[float, float]:
    """CPU seconds of this process and of every live process below it, and of this one alone."""
    own, pending = _threads_cpu_seconds(os.getpid())
    total = own
    while pending:
        try:
            seconds, children = _threads_cpu_seconds(pending.pop())
        except (OSError, ValueError):
            continue  # gone meanwhile
        total += seconds
        pending.extend(children)
    return total, own


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job", help="KIND:SIZE, KIND one of " + ", ".join(KINDS))
    parser.add_argument("input", type=Path)
    parser.add_argument("--tune", action="store_true")
    args = parser.parse_args()
    kind, _, size_text = args.job.partition(":")
    if kind not in KINDS:
        parser.error(f"unknown pool {kind!r}")
    size = int(size_text)
    initializer = None
    if args.tune:
        from imgproc_core.adapters.pillow.allocator import tune_allocator

        initializer = tune_allocator
    data = args.input.read_bytes()
    limits = Limits()
    transformation = resize_to("jpeg", QUALITY).resolved(
        PillowImageCodec().probe(data, limits).format
    )
    pool = _pool_class(kind)(size, 60.0, initializer=initializer, start_eagerly=True)
    callers = ThreadPoolExecutor(size, thread_name_prefix="caller")

    def batch(count: int) -> None:
        numbers = itertools.count()

        def call_until_done() -> None:
            while next(numbers) < count:
                pool.transform(data, transformation, limits)

        for done in [callers.submit(call_until_done) for _ in range(size)]:
            done.result()

    def measure(count: int) -> dict[str, float]:
        cpu, parent = tree_cpu_seconds()
        wall = time.perf_counter()
        batch(count)
        wall = time.perf_counter() - wall
        cpu_after, parent_after = tree_cpu_seconds()
        return {
            "wall": wall / count,
            "cpu": (cpu_after - cpu) / count,
            "parent_cpu": (parent_after - parent) / count,
        }

    try:
        batch(4 * size)
        answer_runs(measure)
    finally:
        callers.shutdown()
        pool.close()


if __name__ == "__main__":
    main()
