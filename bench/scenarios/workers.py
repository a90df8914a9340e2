"""Issue 10's targets for the job pipeline: the engine, one worker, and the embedded profile,
on the engine scenario's job (a 12 MP camera JPEG to 800x600 JPEG), side by side in one run.

Five set-ups are measured in turn, round after round (in the reverse order every other round),
each a throughput in jobs per second with the CPU time of its own process tree and of the whole
machine over the same span:

- **the engine, one core**: the engine scenario's contestant (:mod:`bench.contestant`, the
  ``engine-resize`` job with the service's allocator settings) running a batch alone;
- **the engine, two cores**: two such contestants running a batch each at once, jobs/s
  together, from the moment both are told to the moment both answer;
- **one worker, ``--processes 1``** and **``--processes 2``** on the production profile: a fresh
  PostgreSQL database (migrated) and fresh Kafka topics of six partitions from the project's
  service scripts, blobs in a local folder in a temporary directory. The jobs are seeded through
  the use cases, as ``POST /images`` and ``POST /images/{id}/transform`` would, and
  ``imgproc relay`` moves them to the topic and is stopped once the outbox is empty, so the
  worker starts on a full topic and nothing else of the service runs beside it. One
  ``imgproc worker --processes N`` then starts; the database is polled (every 50 ms) until every
  derived image is READY. Counted in the steady state: from the moment the broker describes the
  group as stable with the worker holding partitions until the last READY, over the jobs READY
  after that moment, and the CPU time of the worker's process tree (the worker and its render
  processes, from ``/proc``) over that span, while the worker always has a backlog;
- **the embedded profile**: ``imgproc serve`` with its default worker threads, SQLite and a
  local folder, end to end through the HTTP API (:mod:`bench.embedded`).

Every job renders: each source image is uploaded several times (a new image each time) and each
upload gets :data:`QUALITIES` transformations, 800x600 JPEG at quality 80 to 89 (the engine's
job is quality 85; encoding is about 1 ms of a 35 ms job, and the ten qualities cost the same
within that). Jobs are keyed by their source image, and Kafka puts each key on a partition by
its hash: the sources are chosen so that every partition holds the same number of jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import msgspec
from kafka import KafkaAdminClient
from kafka.errors import KafkaError
from sqlalchemy import text

from bench import embedded, inputs
from bench.machine import Unavailable
from bench.processes import (
    Contestant,
    Throughput,
    machine_busy_seconds,
    tree_cpu_seconds,
)
from bench.production import Services, Stack, fresh_stack, imgproc_command, services
from bench.results import Row, Run
from bench.scenarios import Budget
from bench.stats import Summary, ratios
from imgproc_core.adapters.sqlalchemy import create_engine_from_url
from imgproc_core.container import build_container
from imgproc_core.domain.transformations import parse_transformation
from imgproc_core.use_cases import (
    RegisterUserCommand,
    RequestTransformCommand,
    UploadImageCommand,
)

PARTITIONS: Final = 6
#: Transformations per uploaded source: 800x600 JPEG at ten qualities around the engine's 85.
QUALITIES: Final = tuple(range(80, 90))
TRANSFORMATIONS: Final = [
    {"resize": {"width": 800, "height": 600}, "format": "jpeg", "quality": quality}
    for quality in QUALITIES
]
POLL_SECONDS: Final = 0.05
#: A measurement that has not finished by then failed (a deadline, not a figure).
DEADLINE_SECONDS: Final = 600.0
#: Engine jobs per batch, per contestant: a few seconds, as long as a worker's steady state.
ENGINE_BATCH: Final = {True: 30, False: 60}

ENGINE_ONE: Final = "engine, one core"
ENGINE_TWO: Final = "engine, two cores"
WORKER_ONE: Final = "worker --processes 1"
WORKER_TWO: Final = "worker --processes 2"
EMBEDDED: Final = "embedded (imgproc serve)"
SETUPS: Final = (ENGINE_ONE, ENGINE_TWO, WORKER_ONE, WORKER_TWO, EMBEDDED)


def _partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as every client)."""
    from kafka.partitioner.default import murmur2

    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def seed(
    stack: Stack, photo: Path, jobs: int, bodies: list[dict[str, Any]] = TRANSFORMATIONS
) -> int:
    """``jobs`` transform jobs in the outbox, the same number on every partition; returns how
    many sources were uploaded to get there."""
    per_partition, rest = divmod(jobs, PARTITIONS)
    sources_per_partition, rest_of_sources = divmod(per_partition, len(bodies))
    if rest or rest_of_sources or sources_per_partition < 1:
        raise ValueError(
            f"jobs must be a multiple of {PARTITIONS * len(bodies)} (one source per "
            "partition and its transformations)"
        )
    parsed = [parse_transformation(body) for body in bodies]
    container = build_container(msgspec.structs.replace(stack.settings, worker_processes=0))
    container.init_resources()
    uploads = 0
    try:
        user = container.register_user()(
            RegisterUserCommand(f"bench-{os.urandom(4).hex()}", "correct horse battery")
        ).user
        data = photo.read_bytes()
        wanted = dict.fromkeys(range(PARTITIONS), sources_per_partition)
        while any(wanted.values()):
            source = container.upload_image()(UploadImageCommand(user.id, photo.name, data))
            uploads += 1
            partition = _partition(source.id.encode(), PARTITIONS)
            if not wanted[partition]:
                continue
            wanted[partition] -= 1
            for transformation in parsed:
                container.request_transform()(
                    RequestTransformCommand(user.id, source.id, transformation)
                )
    finally:
        container.shutdown_resources()
    return uploads


@contextmanager
def imgproc_process(stack: Stack, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            imgproc_command(*args),
            env=stack.env(),
            cwd=stack.folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def group_formed(admin: Any, group: str, members: int) -> bool:
    """The broker describes ``group`` as stable, with ``members`` members holding partitions."""
    try:
        described = admin.describe_groups([group]).get(group, {})
    except KafkaError:
        # A fresh broker has no coordinator until its offsets topic exists: not formed yet.
        return False
    found = described.get("members") or []
    if described.get("group_state") != "Stable" or len(found) != members:
        return False
    return all(
        (member.get("member_assignment") or {}).get("assigned_partitions") for member in found
    )


def wait_until(check: Any, what: str, processes: list[subprocess.Popen[bytes]], log: Path) -> float:
    """Poll ``check()`` until true; the time it became true (``time.monotonic()``)."""
    give_up = time.monotonic() + DEADLINE_SECONDS
    while True:
        if check():
            return time.monotonic()
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: a process exited ({process.returncode}); see {log}")
        if time.monotonic() > give_up:
            raise RuntimeError(f"{what}: not done after {DEADLINE_SECONDS:.0f} s; see {log}")
        time.sleep(POLL_SECONDS)


@dataclass(frozen=True)
class RunningWorker:
    """One ``imgproc worker`` started on a full topic, its group formed."""

    process: subprocess.Popen[bytes]
    #: ``time.monotonic()`` at its start, and when the broker described its group as formed.
    began: float
    formed: float
    #: Derived images READY now, of ``jobs``.
    ready: Callable[[], int]
    jobs: int
    uploads: int
    log: Path

    def wait_all_ready(self) -> float:
        return wait_until(lambda: self.ready() == self.jobs, "the jobs", [self.process], self.log)


@contextmanager
def worker_on_full_topic(
    found: Services,
    photo: Path,
    jobs: int,
    processes: int,
    log: Path,
    bodies: list[dict[str, Any]] = TRANSFORMATIONS,
) -> Iterator[RunningWorker]:
    """``jobs`` jobs seeded and relayed to fresh topics, then one ``imgproc worker --processes
    N`` started on them; yields once its group is formed, stops it afterwards."""
    with ExitStack() as stack:
        production = stack.enter_context(fresh_stack(found, PARTITIONS))
        uploads = seed(production, photo, jobs, bodies)
        engine = create_engine_from_url(production.settings.database_url)
        stack.callback(engine.dispose)

        def count(sql: str) -> int:
            with engine.connect() as connection:
                return int(connection.execute(text(sql)).scalar_one())

        outbox = "SELECT count(*) FROM job_queue"
        if count(outbox) != jobs:
            raise RuntimeError(f"seeding left {count(outbox)} jobs in the outbox, not {jobs}")
        with imgproc_process(production, log, "relay") as relay:
            wait_until(lambda: count(outbox) == 0, "relaying", [relay], log)
        began = time.monotonic()
        worker = stack.enter_context(
            imgproc_process(production, log, "worker", "--processes", str(processes))
        )
        admin = KafkaAdminClient(bootstrap_servers=found.kafka_bootstrap)
        stack.callback(admin.close)
        group = production.settings.kafka_group
        formed = wait_until(lambda: group_formed(admin, group, 1), "the group", [worker], log)
        yield RunningWorker(
            worker,
            began,
            formed,
            lambda: count(
                "SELECT count(*) FROM images WHERE source_id IS NOT NULL AND status = 'READY'"
            ),
            jobs,
            uploads,
            log,
        )


def measure_worker(
    found: Services, photo: Path, jobs: int, processes: int, log: Path
) -> Throughput:
    """One ``imgproc worker --processes N`` on a full topic of ``jobs`` jobs, in its steady
    state."""
    with worker_on_full_topic(found, photo, jobs, processes, log) as worker:
        roots = [worker.process.pid]
        cpu_formed, machine_formed = tree_cpu_seconds(roots), machine_busy_seconds()
        ready_when_formed = worker.ready()
        done = worker.wait_all_ready()
        cpu = tree_cpu_seconds(roots) - cpu_formed
        machine = machine_busy_seconds() - machine_formed
    return Throughput(
        f"worker --processes {processes}",
        jobs - ready_when_formed,
        done - worker.formed,
        cpu,
        machine,
        extra={
            "formed_seconds": worker.formed - worker.began,
            "ready_when_formed": ready_when_formed,
            "from_start_jobs_per_second": jobs / (done - worker.began),
            "uploads": worker.uploads,
        },
    )


def measure_engine(contestants: list[Contestant], batch: int) -> Throughput:
    """``batch`` jobs on each of ``contestants`` at once: jobs/s together."""
    machine_before, began = machine_busy_seconds(), time.monotonic()
    for contestant in contestants:
        contestant.send(batch)
    timings = [contestant.receive() for contestant in contestants]
    seconds = time.monotonic() - began
    return Throughput(
        ENGINE_ONE if len(contestants) == 1 else ENGINE_TWO,
        batch * len(contestants),
        seconds,
        sum(timing.cpu * batch for timing in timings),
        machine_busy_seconds() - machine_before,
    )


def workers(run: Run, budget: Budget) -> None:
    try:
        found = services()
    except Unavailable as exc:
        for name, target in _TARGETS.items():
            run.rows.append(Row("workers", name, "", target=target, unavailable=str(exc)))
        return
    photo = inputs.photo_12mp()
    log = inputs.ROOT / "var" / "bench" / "workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    jobs = budget.worker_batch
    batch = ENGINE_BATCH[budget.quick]
    series: dict[str, list[Throughput]] = {setup: [] for setup in SETUPS}
    with ExitStack() as stack:
        engines = [
            stack.enter_context(Contestant(f"engine {n}", "engine-resize", photo.path, tune=True))
            for n in range(2)
        ]
        measures: dict[str, Callable[[], Throughput]] = {
            ENGINE_ONE: lambda: measure_engine(engines[:1], batch),
            ENGINE_TWO: lambda: measure_engine(engines, batch),
            WORKER_ONE: lambda: measure_worker(found, photo.path, jobs, 1, log),
            WORKER_TWO: lambda: measure_worker(found, photo.path, jobs, 2, log),
            EMBEDDED: lambda: embedded.measure(
                photo.path, jobs // len(TRANSFORMATIONS), TRANSFORMATIONS
            ),
        }
        order = 0
        for round_number in range(budget.worker_rounds):
            for setup in SETUPS if round_number % 2 == 0 else tuple(reversed(SETUPS)):
                measured = replace(measures[setup](), setup=setup, order=order)
                series[setup].append(measured)
                order += 1
    run.details["workers"] = {
        "batch": jobs,
        "engine_batch": batch,
        "how": (
            f"{photo.width}x{photo.height} JPEG to 800x600 JPEG q{QUALITIES[0]}-{QUALITIES[-1]}; "
            f"workers on PostgreSQL and Kafka ({PARTITIONS} partitions, the same number of jobs "
            "on each), blobs in a local folder; the embedded profile through its HTTP API"
        ),
        "measurements": [
            m.as_dict()
            for m in sorted(
                (m for measured in series.values() for m in measured), key=lambda m: m.order
            )
        ],
    }
    run.rows += _rows(series)


_TARGETS: Final[dict[str, float | None]] = {
    "One worker vs the engine on one core": 0.85,
    "One worker, cores used": 0.9,
    "Worker --processes 2 vs --processes 1": 1.6,
    "Embedded profile vs the engine on two cores": 0.8,
    "Engine on two cores vs one": None,
}


def _rows(series: dict[str, list[Throughput]]) -> list[Row]:
    def rate(setup: str) -> list[float]:
        return [m.jobs_per_second for m in series[setup]]

    def per_core(setup: str) -> list[float]:
        return [m.jobs_per_core_second for m in series[setup]]

    def median(values: list[float]) -> float:
        return Summary.of(values).median

    def note(*setups: str) -> str:
        return "; ".join(
            f"{setup}: {median(per_core(setup)):.1f} jobs per core-second, "
            f"{median([m.cores for m in series[setup]]):.2f} cores, machine busy "
            f"{median([m.machine_cores for m in series[setup]]):.2f} cores"
            for setup in setups
        )

    def compared(name: str, meaning: str, ours: str, theirs: str) -> Row:
        return Row(
            scenario="workers",
            name=name,
            meaning=meaning,
            ratio=Summary.of(ratios(rate(ours), rate(theirs))),
            cpu_ratio=Summary.of(ratios(per_core(ours), per_core(theirs))),
            target=_TARGETS[name],
            sides={theirs: Summary.of(rate(theirs)), ours: Summary.of(rate(ours))},
            unit="jobs/s",
            note=note(theirs, ours),
        )

    cores = [m.cores for m in series[WORKER_ONE]]
    return [
        compared(
            "One worker vs the engine on one core",
            "jobs/s of one `imgproc worker --processes 1` (production profile, steady state: "
            "from the group formed until every job is READY) / jobs/s of the engine alone in "
            "one process",
            WORKER_ONE,
            ENGINE_ONE,
        ),
        Row(
            scenario="workers",
            name="One worker, cores used",
            meaning="CPU seconds of the process tree of `imgproc worker --processes 1` (the "
            "worker and its render process) / wall seconds, while it has a backlog",
            ratio=Summary.of(cores),
            target=_TARGETS["One worker, cores used"],
            sides={WORKER_ONE: Summary.of(cores)},
            unit="cores",
        ),
        compared(
            "Worker --processes 2 vs --processes 1",
            "jobs/s of one `imgproc worker --processes 2` / the same with `--processes 1`",
            WORKER_TWO,
            WORKER_ONE,
        ),
        compared(
            "Embedded profile vs the engine on two cores",
            "jobs/s of `imgproc serve` (2 worker threads, SQLite, local blobs) through the API, "
            "from the first POST /transform to the last job READY / jobs/s of two engine "
            "processes at once",
            EMBEDDED,
            ENGINE_TWO,
        ),
        compared(
            "Engine on two cores vs one",
            "jobs/s of two engine processes at once / jobs/s of one (what this machine gives "
            "a second process)",
            ENGINE_TWO,
            ENGINE_ONE,
        ),
    ]
