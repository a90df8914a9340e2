"""Target 7: throughput with two worker processes against one, on the production profile.

Each measurement gets a fresh PostgreSQL database (migrated) and fresh Kafka topics of six
partitions, from the project's service scripts; blobs go to a local folder in a temporary
directory. Seeding goes through the use cases, as ``POST /images`` and
``POST /images/{id}/transform`` would: one user, a few uploads of a 2 MP photograph, and ten
transformations of each (800x600, WebP and JPEG at five qualities each: every job renders,
none is a duplicate). ``imgproc relay`` then moves the jobs from the outbox to the topic and
is stopped once the outbox is empty, so the workers start on a full topic and nothing else of
the service runs beside them.

Then either one ``imgproc worker --processes 1`` or two of them start, in one consumer group,
and the database is polled (every 50 ms) until it shows every derived image READY. Two
throughputs come out of each measurement:

- **steady state**, the target's figure: jobs per second from the moment the group is formed
  (the broker describes it as stable, with every worker holding partitions) until the last
  job is READY, counting only the jobs READY after that moment. This is what a running
  group of workers does with the jobs that reach it;
- **from the start**: jobs per second from the workers' start, so start-up (imports, the
  render process, connecting) and the group's first assignments are included. With two
  workers the group forms in two steps (the first worker to join takes every partition, the
  cooperative rebalance then hands half of them to the second), during which one works alone.

One and two alternate (1, 2, then 2, 1, ...), each on its own stack.

Jobs are keyed by their source image, and Kafka puts each key on a partition by its hash: the
sources are chosen so that every partition holds the same number of jobs, so that each of two
workers (three partitions each) has half of the work. With random ids, the halves differ by
about a tenth at this size, and the ratio would measure that rather than the workers.

The machine is shared, so the scenario also reads the CPU time of the worker processes and of
their render processes (``/proc``) at the moment the last job is READY: cores obtained = CPU
seconds / wall seconds, and the second row compares jobs per CPU-second, two workers against
one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import msgspec
from kafka import KafkaAdminClient
from sqlalchemy import text

from bench import inputs
from bench.machine import Unavailable
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

SIZES: Final = (1, 2)
PARTITIONS: Final = 6
#: Transformations per source image: one size in two formats at five qualities each.
QUALITIES: Final = (76, 79, 82, 85, 88)


def transformations(width: int, height: int) -> list[dict[str, Any]]:
    return [
        {"resize": {"width": width, "height": height}, "format": fmt, "quality": quality}
        for fmt in ("webp", "jpeg")
        for quality in QUALITIES
    ]


TRANSFORMATIONS: Final = transformations(800, 600)
POLL_SECONDS: Final = 0.05
#: A measurement that has not finished by then failed (a deadline, not a figure).
DEADLINE_SECONDS: Final = 600.0
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


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
def _process(stack: Stack, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
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


def _group_formed(admin: Any, group: str, members: int) -> bool:
    """The broker describes ``group`` as stable, with ``members`` members holding partitions."""
    described = admin.describe_groups([group]).get(group, {})
    found = described.get("members") or []
    if described.get("group_state") != "Stable" or len(found) != members:
        return False
    return all(
        (member.get("member_assignment") or {}).get("assigned_partitions") for member in found
    )


def _wait(check: Any, what: str, processes: list[subprocess.Popen[bytes]], log: Path) -> float:
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


def _descendants(roots: list[int]) -> list[int]:
    """``roots`` and every live process below them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _cpu_seconds(roots: list[int]) -> float:
    """User and system time of ``roots`` and their processes, live or already reaped."""
    ticks = 0
    for pid in _descendants(roots):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, and the children's cutime, cstime once waited for.
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def _machine_busy_seconds() -> float:
    """CPU time the whole machine has spent on anything but idling and waiting for I/O."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


@dataclass(frozen=True)
class Measurement:
    workers: int
    jobs: int
    seconds: float
    #: From the workers' start to the first job READY: start-up and joining the group.
    first_ready_seconds: float
    #: From the workers' start to the group formed (every worker holding partitions), and the
    #: jobs READY by then.
    formed_seconds: float
    ready_when_formed: int
    cpu_seconds: float
    #: CPU time of everything on the machine meanwhile (the services, the rest of its work).
    machine_cpu_seconds: float
    uploads: int
    #: Which measurement of the run this was (0 first).
    order: int = 0

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def after_first_per_second(self) -> float:
        """Jobs per second from the first READY to the last."""
        return (self.jobs - 1) / max(1e-9, self.seconds - self.first_ready_seconds)

    @property
    def steady_per_second(self) -> float:
        """Jobs per second from the group formed to the last READY."""
        return (self.jobs - self.ready_when_formed) / max(1e-9, self.seconds - self.formed_seconds)

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds


def measure(
    found: Services,
    photo: Path,
    jobs: int,
    workers: int,
    log: Path,
    bodies: list[dict[str, Any]] = TRANSFORMATIONS,
) -> Measurement:
    with ExitStack() as stack:
        production = stack.enter_context(fresh_stack(found, PARTITIONS))
        uploads = seed(production, photo, jobs, bodies)
        engine = create_engine_from_url(production.settings.database_url)
        stack.callback(engine.dispose)

        def count(sql: str) -> int:
            with engine.connect() as connection:
                return int(connection.execute(text(sql)).scalar_one())

        outbox = "SELECT count(*) FROM job_queue"
        ready = "SELECT count(*) FROM images WHERE source_id IS NOT NULL AND status = 'READY'"
        if count(outbox) != jobs:
            raise RuntimeError(f"seeding left {count(outbox)} jobs in the outbox, not {jobs}")
        with _process(production, log, "relay") as relay:
            _wait(lambda: count(outbox) == 0, "relaying", [relay], log)
        machine_before = _machine_busy_seconds()
        began = time.monotonic()
        started = [
            stack.enter_context(_process(production, log, "worker", "--processes", "1"))
            for _ in range(workers)
        ]
        pids = [process.pid for process in started]
        admin = KafkaAdminClient(bootstrap_servers=found.kafka_bootstrap)
        stack.callback(admin.close)
        group = production.settings.kafka_group
        formed = _wait(lambda: _group_formed(admin, group, workers), "the group", started, log)
        ready_when_formed = count(ready)
        first = _wait(lambda: count(ready) > 0, "the first job", started, log)
        done = _wait(lambda: count(ready) == jobs, "the jobs", started, log)
        cpu = _cpu_seconds(pids)
        machine = _machine_busy_seconds() - machine_before
    return Measurement(
        workers,
        jobs,
        done - began,
        first - began,
        formed - began,
        ready_when_formed,
        cpu,
        machine,
        uploads,
    )


def workers(run: Run, budget: Budget) -> None:
    try:
        found = services()
    except Unavailable as exc:
        for name in ("Two worker processes vs one", "Two worker processes vs one, per core"):
            run.rows.append(Row("workers", name, "", unavailable=str(exc)))
        return
    photo = inputs.photo_2mp()
    log = inputs.ROOT / "var" / "bench" / "workers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    jobs = budget.worker_batch
    series: dict[int, list[Measurement]] = {size: [] for size in SIZES}
    order = 0
    for round_number in range(budget.worker_rounds):
        for size in SIZES if round_number % 2 == 0 else tuple(reversed(SIZES)):
            measured = measure(found, photo.path, jobs, size, log)
            series[size].append(replace(measured, order=order))
            order += 1
    rates = {size: [m.jobs_per_second for m in series[size]] for size in SIZES}
    steady = {size: [m.steady_per_second for m in series[size]] for size in SIZES}
    cores = {size: [m.cores for m in series[size]] for size in SIZES}
    run.details["workers"] = {
        "batch": jobs,
        "jobs_per_second": {str(size): values for size, values in rates.items()},
        "steady_jobs_per_second": {str(size): values for size, values in steady.items()},
        "cores_used": {str(size): values for size, values in cores.items()},
        "measurements": {
            str(size): [m.__dict__ for m in measurements] for size, measurements in series.items()
        },
        "how": (
            "imgproc worker --processes 1, one or two of them, on PostgreSQL and Kafka "
            f"({PARTITIONS} partitions, the same number of jobs on each), blobs in a local folder "
            f"in a temporary directory; {photo.width}x{photo.height} JPEG to 800x600 WebP and "
            "JPEG"
        ),
    }

    def label(size: int) -> str:
        return f"{size} worker{'s' if size > 1 else ''}"

    run.rows.append(
        Row(
            scenario="workers",
            name="Two worker processes vs one",
            meaning="jobs/s with 2 `imgproc worker` processes / jobs/s with 1 (production profile, "
            "steady state: from the group formed, every worker holding partitions, until every "
            "job is READY)",
            ratio=Summary.of(ratios(steady[2], steady[1])),
            target=1.8,
            sides={label(size): Summary.of(steady[size]) for size in SIZES},
            unit="jobs/s",
        )
    )
    run.rows.append(
        Row(
            scenario="workers",
            name="Two worker processes vs one, from their start",
            meaning="the same, from the workers' start: start-up and the group's first "
            "assignments included",
            ratio=Summary.of(ratios(rates[2], rates[1])),
            sides={label(size): Summary.of(rates[size]) for size in SIZES},
            unit="jobs/s",
            note="the workers got a median of "
            + ", ".join(
                f"{Summary.of(cores[size]).median:.2f} cores with {size}" for size in SIZES
            ),
        )
    )
    # Throughput per CPU-second: what two workers would give with two idle cores for them;
    # near 1 when any shortfall above comes from the cores the machine left free.
    run.rows.append(
        Row(
            scenario="workers",
            name="Two worker processes vs one, per core obtained",
            meaning="(jobs/s / cores the workers used) with 2 workers / the same with 1",
            ratio=Summary.of(
                ratios(
                    [rate / used for rate, used in zip(rates[2], cores[2], strict=True)],
                    [rate / used for rate, used in zip(rates[1], cores[1], strict=True)],
                )
            ),
            unit="",
        )
    )
