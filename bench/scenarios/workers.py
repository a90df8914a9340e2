"""Target 7: throughput with two worker processes against one, on the same batch of jobs.

Measured on the codec process pool (:class:`ProcessPoolImageCodec`, as the container builds it:
``tune_allocator`` in every process), which is what renders jobs in the embedded profile and
inside each ``imgproc worker`` of the production profile. A batch of identical jobs (12 MP JPEG
to 800x600 JPEG) is handed to a pool of one process and to a pool of two, alternately, from as
many threads as the pool has processes; throughput is jobs per second of the batch.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from bench import inputs
from bench.jobs import QUALITY, resize_to
from bench.results import Row, Run
from bench.scenarios import Budget
from bench.stats import Summary, ratios
from imgproc_core.adapters.pillow.allocator import tune_allocator
from imgproc_core.adapters.process_pool import ProcessPoolImageCodec
from imgproc_core.domain.limits import Limits

SIZES = (1, 2)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pids: tuple[int, ...]) -> float:
    """User plus system time of the pool's processes so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def _batch(pool: ProcessPoolImageCodec, data: bytes, jobs: int) -> tuple[float, float]:
    """Jobs per second, and the CPU cores the pool's processes actually got meanwhile."""
    transformation = resize_to("jpeg", QUALITY).resolved("jpeg")
    limits = Limits()
    pids = pool.pids
    with ThreadPoolExecutor(pool.size) as threads:
        cpu = _cpu_seconds(pids)
        began = time.perf_counter()
        results = list(
            threads.map(lambda _: pool.transform(data, transformation, limits), range(jobs))
        )
        elapsed = time.perf_counter() - began
        cpu = _cpu_seconds(pids) - cpu
    assert all(result.width == 800 for result in results)
    return jobs / elapsed, cpu / elapsed


def workers(run: Run, budget: Budget) -> None:
    data = inputs.photo_12mp().read()
    rates: dict[int, list[float]] = {size: [] for size in SIZES}
    cores: dict[int, list[float]] = {size: [] for size in SIZES}
    with ExitStack() as stack:
        pools = {
            size: stack.enter_context(
                ProcessPoolImageCodec(size, 120.0, initializer=tune_allocator, start_eagerly=True)
            )
            for size in SIZES
        }
        for size in SIZES:
            _batch(pools[size], data, 2 * size)
        for _ in range(budget.worker_rounds):
            for size in SIZES:
                rate, used = _batch(pools[size], data, budget.worker_batch)
                rates[size].append(rate)
                cores[size].append(used)
    run.details["workers"] = {
        "batch": budget.worker_batch,
        "jobs_per_second": {str(size): series for size, series in rates.items()},
        "cores_used": {str(size): series for size, series in cores.items()},
        "how": "codec process pool (ProcessPoolImageCodec), 12 MP JPEG to 800x600 JPEG q85",
    }
    run.rows.append(
        Row(
            scenario="workers",
            name="Two worker processes vs one",
            meaning="jobs/s with 2 processes / jobs/s with 1 (codec process pool)",
            ratio=Summary.of(ratios(rates[2], rates[1])),
            target=1.8,
            sides={
                f"{size} process{'es' if size > 1 else ''}": Summary.of(rates[size])
                for size in SIZES
            },
            unit="jobs/s",
            note="the pool's processes got a median of "
            + ", ".join(
                f"{Summary.of(cores[size]).median:.2f} cores with {size}" for size in SIZES
            ),
        )
    )
    # Throughput per CPU-second: what two processes would give if the machine had two idle
    # cores for them; near 1 when any shortfall above comes from the cores, not the pool.
    run.rows.append(
        Row(
            scenario="workers",
            name="Two worker processes vs one, per core obtained",
            meaning="(jobs/s / cores used) with 2 processes / the same with 1",
            ratio=Summary.of(
                ratios(
                    [rate / used for rate, used in zip(rates[2], cores[2], strict=True)],
                    [rate / used for rate, used in zip(rates[1], cores[1], strict=True)],
                )
            ),
            unit="",
        )
    )
