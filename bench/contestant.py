"""One side of a comparison, in a process of its own: ``python -m bench.contestant JOB INPUT``.

It builds the job, runs it once to warm up, says ``ready``, then answers ``run N`` on its
standard input with one JSON line: the wall-clock and CPU seconds per job over N runs. ``peak``
instead runs the job once and answers how much its peak resident size grew (kB): the memory
that job needed, C allocations included, on top of the process and its input. ``--tune``
applies the service's allocator settings first, as its processes do.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("job")
    parser.add_argument("input", type=Path)
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--peak", action="store_true")
    args = parser.parse_args()
    if args.tune:
        from imgproc_core.adapters.pillow.allocator import tune_allocator

        tune_allocator()
    from bench.jobs import JOBS

    data = args.input.read_bytes()
    job = JOBS[args.job](data)
    if args.peak:
        print(json.dumps(peak_growth(job)), flush=True)
        return
    job()

    def measure(count: int) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            job()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"wall": wall / count, "cpu": cpu / count}

    answer_runs(measure)


def answer_runs(measure: Callable[[int], dict[str, float]]) -> None:
    """Say ``ready``, then answer each ``run N`` on standard input with ``measure(N)``, one JSON
    line, until standard input closes or says something else."""
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[:1] != ["run"]:
            break
        print(json.dumps(measure(int(command[1]))), flush=True)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_growth(job: Callable[[], bytes]) -> dict[str, int]:
    """How far the resident size rose above where it stood when ``job`` started (kB).

    Linux resets the peak (VmHWM) to the current size on writing 5 to clear_refs, so imports and
    the input's own bytes are not counted. ``ru_maxrss`` cannot be reset, and a child process
    may inherit its parent's peak through exec; its growth is reported alongside.
    """
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    start = _status_kb("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    job()
    return {
        "peak_kb": _status_kb("VmHWM") - start,
        "maxrss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before,
        "start_kb": start,
    }


if __name__ == "__main__":
    main()
