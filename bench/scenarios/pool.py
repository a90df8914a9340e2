"""The codec's process pool: pebble's ``ProcessPool`` against the hand-written pool it replaced.

The hand-written supervision was to give way to a well-kept library (pebble) unless a
benchmark showed the library costing more than 5 % of job throughput. This scenario is that
benchmark, kept so that the figure can be measured again: each pool runs in a process of its
own (:mod:`bench.pool_contestant`), with 1 and with 2 worker processes, on the engine
scenario's job (the 12 MP JPEG to an 800x600 JPEG at quality 85, with the service's allocator
settings in every worker), called from as many threads as the pool has processes. The two
alternate in short batches (hand-written, pebble, hand-written, ...), and only one side works
at a time.

Two figures per pool size: jobs per second, and jobs per CPU-second of the whole process tree
(the calling process with the pool's threads, the workers): the one that turns into
throughput where every core is busy, and the one a shared machine disturbs least.

The hand-written pool is no longer in the package: its source is read from the last commit
that had it (:data:`LEGACY_COMMIT`, with ``git show``) into ``var/bench/legacy-pool/`` and
imported from there as ``legacy_process_pool``. A clone without that history (a shallow one)
reports the rows as unavailable.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Final

from bench import inputs
from bench.inputs import ROOT
from bench.machine import Unavailable
from bench.processes import Contestant, Timing
from bench.results import Row, Run
from bench.scenarios import Budget
from bench.stats import Summary, ratios

#: The last commit with the hand-written pool (ProcessPoolImageCodec on its own supervision).
LEGACY_COMMIT: Final = "0826fc38c4cd50443b5138f8208c7d2c6c91982f"
LEGACY_SOURCE: Final = "imgproc_core/src/imgproc_core/adapters/process_pool"
LEGACY_FILES: Final = ("__init__.py", "child.py", "messages.py", "pool.py")
LEGACY_PACKAGE: Final = "legacy_process_pool"
SIZES: Final = (1, 2)
#: Jobs per process in one batch (full run, quick run): short batches, so that the two sides
#: alternate every second or so and the load of a shared machine falls on both alike.
JOBS_PER_PROCESS: Final = (8, 4)
#: Rounds per round of the run's budget.
ROUNDS_PER_BUDGET_ROUND: Final = 3
#: The ratio below which pebble's pool would cost more than 5 % of job throughput.
THRESHOLD: Final = 0.95


def legacy_pool_path() -> Path:
    """A folder holding the hand-written pool as the package ``legacy_process_pool``."""
    folder = ROOT / "var" / "bench" / "legacy-pool" / LEGACY_COMMIT[:12]
    package = folder / LEGACY_PACKAGE
    if all((package / name).is_file() for name in LEGACY_FILES):
        return folder
    package.mkdir(parents=True, exist_ok=True)
    for name in LEGACY_FILES:
        try:
            source = subprocess.run(
                ["git", "show", f"{LEGACY_COMMIT}:{LEGACY_SOURCE}/{name}"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Unavailable(
                f"the hand-written pool ({LEGACY_COMMIT[:12]}) is not in this clone's history"
            ) from exc
        module = source.replace("imgproc_core.adapters.process_pool", LEGACY_PACKAGE)
        (package / name).write_text(module)
    return folder


class PoolContestant(Contestant):
    """A contestant that also keeps the parent's share of each batch's CPU time."""

    def __init__(self, label: str, job: str, source: Path, env: dict[str, str]) -> None:
        super().__init__(label, job, source, tune=True, env=env, module="bench.pool_contestant")
        self.parent_cpu: list[float] = []

    def run(self, count: int) -> Timing:
        answer = self.ask(count)
        self.parent_cpu.append(answer["parent_cpu"])
        return Timing(answer["wall"], answer["cpu"])


def _per_second(seconds: list[float]) -> Summary:
    return Summary.of([1 / value for value in seconds])


def _ms(values: list[float]) -> float:
    return Summary.of([value * 1000 for value in values]).median


def _processes(size: int) -> str:
    return f"{size} process{'es' * (size > 1)}"


def pool_throughput(run: Run, budget: Budget) -> None:
    """pebble's pool / the hand-written pool, with 1 and 2 processes: jobs per second (held to
    the 5 % line), and jobs per CPU-second beside it."""
    photo = inputs.photo_12mp()
    job = "12 MP JPEG to 800x600 JPEG q85, as many caller threads as processes"
    try:
        legacy = legacy_pool_path()
    except Unavailable as exc:
        for size in SIZES:
            for unit in ("jobs/s", "jobs/CPU-s"):
                name = f"Codec pool, pebble vs hand-written, {_processes(size)}, {unit}"
                run.rows.append(Row("pool", name, job, unavailable=str(exc)))
        return
    env = {"PYTHONPATH": os.pathsep.join([str(legacy), str(ROOT)])}
    per_process = JOBS_PER_PROCESS[1] if budget.quick else JOBS_PER_PROCESS[0]
    details: dict[str, dict[str, float]] = {}
    for size in SIZES:
        hand = PoolContestant("hand-written", f"hand-written:{size}", photo.path, env)
        pebble = PoolContestant("pebble", f"pebble:{size}", photo.path, env)
        with hand, pebble:
            timings: dict[str, list[Timing]] = {"hand-written": [], "pebble": []}
            for _ in range(budget.rounds * ROUNDS_PER_BUDGET_ROUND):
                for contestant in (hand, pebble):
                    timings[contestant.label].append(contestant.run(per_process * size))
        wall = {label: [t.wall for t in series] for label, series in timings.items()}
        cpu = {label: [t.cpu for t in series] for label, series in timings.items()}
        parent = {"hand-written": _ms(hand.parent_cpu), "pebble": _ms(pebble.parent_cpu)}
        details[str(size)] = {
            "hand-written CPU ms/job": _ms(cpu["hand-written"]),
            "pebble CPU ms/job": _ms(cpu["pebble"]),
            "hand-written parent CPU ms/job": parent["hand-written"],
            "pebble parent CPU ms/job": parent["pebble"],
            "jobs per batch": per_process * size,
        }
        cpu_note = (
            f"CPU per job, whole process tree: hand-written {_ms(cpu['hand-written']):.1f} ms, "
            f"pebble {_ms(cpu['pebble']):.1f} ms; of which in the calling process "
            f"{parent['hand-written']:.2f} ms and {parent['pebble']:.2f} ms"
        )
        run.rows.append(
            Row(
                scenario="pool",
                name=f"Codec pool, pebble vs hand-written, {_processes(size)}, jobs/s",
                meaning=f"pebble jobs/s / hand-written jobs/s ({job})",
                ratio=Summary.of(ratios(wall["hand-written"], wall["pebble"])),
                cpu_ratio=Summary.of(ratios(cpu["hand-written"], cpu["pebble"])),
                target=THRESHOLD,
                sides={
                    "hand-written": _per_second(wall["hand-written"]),
                    "pebble": _per_second(wall["pebble"]),
                },
                unit="jobs/s",
            )
        )
        run.rows.append(
            Row(
                scenario="pool",
                name=f"Codec pool, pebble vs hand-written, {_processes(size)}, jobs/CPU-s",
                meaning="pebble jobs per CPU-second / hand-written jobs per CPU-second (same "
                "batches; CPU of the whole process tree)",
                ratio=Summary.of(ratios(cpu["hand-written"], cpu["pebble"])),
                sides={
                    "hand-written": _per_second(cpu["hand-written"]),
                    "pebble": _per_second(cpu["pebble"]),
                },
                unit="jobs/CPU-s",
                note=cpu_note,
            )
        )
    run.details["pool"] = details
