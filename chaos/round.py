"""One round: the production profile on the development services, jobs through the API, the
faults of :mod:`chaos.faults` meanwhile, a drain, and the checks of :mod:`chaos.checks`.

Each round has a fresh database, bucket, topics and consumer group, and its own processes: one
``imgproc serve`` (production settings: PostgreSQL, the storage emulator, Kafka through the
outbox, Redis), one ``imgproc relay`` and two ``imgproc worker`` with one render process each.
A user registers, uploads the sources (copies of some until every partition of the job topic
has one) and asks for one distinct transformation per job from a few threads at once, keeping
at most a backlog of unfinished jobs, so that requests keep arriving throughout the round.

The drain begins once every job has been requested and every fault injected, and ends when no
derived image is PENDING or PROCESSING; it gives up when no job has ended for
``stall_seconds`` (or at ``drain_deadline_seconds``), and what is left then is lost.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from chaos import checks, workload
from chaos.faults import SCHEDULE, Cast, FaultRecord, run_schedule
from chaos.progress import Progress
from imgproc_core.container import Container
from tests.e2e.conftest import Api
from tests.e2e.production.deployment import (
    Deployment,
    ServiceScript,
    WorkerProcess,
    partition_of,
    production_deployment,
    restarted_at_exit,
    transform_burst,
)
from tests.support.kafka import kafka_bootstrap

#: How often the watcher reads the counts from the database.
_WATCH_SECONDS = 0.2


@dataclass(frozen=True)
class RoundPlan:
    jobs: int = 1000
    partitions: int = 6
    #: Render processes per worker.
    worker_processes: int = 1
    #: Threads sending transform requests at once.
    senders: int = 4
    #: Most jobs requested and not ended yet; 0: a quarter of the jobs, at least 50.
    backlog: int = 0
    #: The outbox lease: rows a killed relay had claimed are sent again after this long.
    lease_seconds: float = 5.0
    #: A round in which no job ends for this long has stalled: what is unfinished is lost.
    #: Above the longest quiet spell the faults cause (a killed worker's session timeout,
    #: 10 s, plus a rebalance; the relay's backoff while the broker is away).
    stall_seconds: float = 90.0
    drain_deadline_seconds: float = 900.0

    @property
    def most_unfinished(self) -> int:
        return self.backlog or max(50, self.jobs // 4)


@dataclass
class ProcessRecord:
    name: str
    #: How it ended: ``SIGKILL`` (a fault), ``SIGTERM`` (a fault), ``stopped`` (end of round).
    ended_by: str
    exit_status: int | None
    #: For a worker SIGTERMed mid-round: how long it took to exit.
    seconds_to_exit: float | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    refused_commits: int = 0
    last_refused_commit: str = ""


@dataclass
class RoundResult:
    number: int
    plan: dict[str, Any]
    requested: int = 0
    refused_requests: dict[str, int] = field(default_factory=dict)
    ready: int = 0
    failed: dict[str, list[str]] = field(default_factory=dict)
    lost: list[checks.LostJob] = field(default_factory=list)
    differing: list[checks.Difference] = field(default_factory=list)
    drain_seconds: float | None = None
    drained: bool = False
    round_seconds: float = 0.0
    faults: list[FaultRecord] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    redelivery: checks.Redelivery | None = None
    stray_objects: list[str] = field(default_factory=list)
    dead_letters: int = 0
    log_folder: str = ""
    #: Set when the harness itself could not finish the round (a process did not start...).
    aborted: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def failed_count(self) -> int:
        return sum(len(ids) for ids in self.failed.values())

    @property
    def clean(self) -> bool:
        return (
            not self.aborted
            and not self.lost
            and not self.failed
            and not self.differing
            and not self.refused_requests
            and not self.notes
        )


def run_round(number: int, plan: RoundPlan, folder: Path) -> RoundResult:
    """Run round ``number`` in ``folder`` (its processes' logs stay there)."""
    result = RoundResult(number, plan.__dict__.copy(), log_folder=str(folder / "processes"))
    progress = Progress(f"round {number}")
    kafka = ServiceScript("kafka")
    if kafka.run("bootstrap") != kafka_bootstrap():
        raise RuntimeError(
            "chaos: the broker of IMGPROC_TEST_KAFKA_BOOTSTRAP is not the one "
            "scripts/services/kafka.sh controls (IMGPROC_DEV_KAFKA_PORT): run under "
            "scripts/with-services.sh with the same environment"
        )
    sources = workload.sources()
    folder.mkdir(parents=True, exist_ok=True)
    with (
        production_deployment(
            folder,
            plan.partitions,
            environment="production",
            jwt_secret=secrets.token_hex(32),
            worker_processes=plan.worker_processes,
            job_lease_seconds=plan.lease_seconds,
        ) as (stack, deployed),
        restarted_at_exit(kafka),
    ):
        container = stack.container()
        api_process = deployed.start_api()
        cast = Cast(
            deployed,
            deployed.start_relay(),
            [deployed.start_worker() for _ in range(2)],
            kafka,
        )
        deployed.wait_until_healthy(api_process)
        deployed.wait_until_relaying(cast.relay)
        deployed.wait_until_sharing(cast.workers)
        with api_process.api() as api:
            user = api.register()
            uploaded = _upload(api, user, sources, plan.partitions)
        requests = _requests(sources, uploaded, plan.jobs)
        progress.started = time.monotonic()
        progress.last_ended_at = progress.started
        progress.note(
            f"{len(requests)} jobs over {sum(map(len, uploaded))} uploads of "
            f"{len(sources)} sources; faults at {', '.join(_marks())}"
        )
        answers = _send_and_strike(
            plan, api_process.base_url, user, requests, cast, progress, result, container
        )
        chaos_over = time.monotonic()
        result.requested = sum(answer.status_code == 200 for answer in answers)
        result.refused_requests = dict(
            Counter(
                f"{answer.status_code} {answer.text[:120]}"
                for answer in answers
                if answer.status_code != 200
            )
        )
        entries = [answer.json()["id"] for answer in answers if answer.status_code == 200]
        progress.note(f"all {len(entries)} jobs requested and faults injected; draining")
        result.drained = _drain(container, len(entries), plan, progress, cast, chaos_over)
        result.drain_seconds = (time.monotonic() - chaos_over) if result.drained else None
        result.round_seconds = time.monotonic() - progress.started

        # The round ends with the group formed again (a worker SIGTERMed before it got as far
        # as its signal handler would die of it); then everything stops, and commits, before
        # the topic and the group are read.
        try:
            deployed.wait_until_sharing([w for w in cast.workers if w.running])
        except pytest.fail.Exception as exc:
            result.notes.append(f"the workers did not share the partitions at the end: {exc}")
        deployed.stop_all()
        result.processes = _process_records(deployed, cast)
        checks.settle(result, stack, container, entries, deployed, progress)
    return result


def _marks() -> list[str]:
    return [f"{share:.0%}" for share, _, _ in SCHEDULE]


def _upload(
    api: Api, user: dict[str, str], sources: Sequence[workload.Source], partitions: int
) -> list[list[str]]:
    """Each source once, then copies of the small ones in turn until every partition of the
    job topic has a source keyed to it; the ids uploaded, per source."""
    uploaded: list[list[str]] = [[api.upload(source.path, user)["id"]] for source in sources]
    covered = {partition_of(ids[0], partitions) for ids in uploaded}
    small = [n for n, source in enumerate(sources) if not source.large]
    for attempt in range(partitions * 12):
        if len(covered) == partitions:
            return uploaded
        n = small[attempt % len(small)]
        copy = api.upload(sources[n].path, user)["id"]
        uploaded[n].append(copy)
        covered.add(partition_of(copy, partitions))
    raise RuntimeError(f"chaos: {partitions * 12} extra uploads left a partition without a job")


def _requests(
    sources: Sequence[workload.Source], uploaded: Sequence[Sequence[str]], jobs: int
) -> list[tuple[str, dict[str, Any]]]:
    """(source id, transformation) of each job; a source's jobs go to its copies in turn."""
    turns = [0] * len(sources)
    requests = []
    for n, chosen in enumerate(workload.assign(sources, jobs)):
        copies = uploaded[chosen]
        requests.append(
            (copies[turns[chosen] % len(copies)], workload.transformation(n, sources[chosen]))
        )
        turns[chosen] += 1
    return requests


def _send_and_strike(
    plan: RoundPlan,
    base_url: str,
    user: dict[str, str],
    requests: list[tuple[str, dict[str, Any]]],
    cast: Cast,
    progress: Progress,
    result: RoundResult,
    container: Container,
) -> list[httpx.Response]:
    """Send every request (a bounded backlog ahead of the jobs that ended) while the fault
    schedule runs, watching the counts meanwhile; the answers, in the order of ``requests``."""
    answers: list[httpx.Response] = []
    errors: list[BaseException] = []

    def pace(n: int) -> None:
        if not progress.wait_for_room(n, plan.most_unfinished, plan.stall_seconds):
            progress.note(f"request {n} sent although no job ended for {plan.stall_seconds} s")
        progress.requested_one()

    def send() -> None:
        try:
            answers.extend(
                transform_burst(
                    [base_url], user, requests, threads=plan.senders, between=pace
                ).answers
            )
        except BaseException as exc:
            errors.append(exc)

    def strike() -> None:
        try:
            run_schedule(cast, progress, len(requests), result.faults, plan.stall_seconds)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=send, name="chaos-senders"),
        threading.Thread(target=strike, name="chaos-faults"),
    ]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        _watch(container, progress, cast)
        if errors:
            break
        time.sleep(_WATCH_SECONDS)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return answers


def _watch(container: Container, progress: Progress, cast: Cast) -> None:
    """Read the counts once; note the exit of a process SIGTERMed mid-round."""
    with container.unit_of_work() as uow:
        by_status = uow.images.totals().derived_by_status
    ended = by_status[checks.READY] + by_status[checks.FAILED]
    progress.counted(ended, sum(by_status.values()) - ended)
    for name, since in list(cast.terminated.items()):
        worker = next(worker for worker in cast.workers if worker.name == name)
        if not worker.running and name not in cast.exited:
            cast.exited[name] = time.monotonic() - since
            progress.note(
                f"{name} exited {cast.exited[name]:.1f} s after SIGTERM "
                f"(status {worker.process.returncode})"
            )


def _drain(
    container: Container,
    expected: int,
    plan: RoundPlan,
    progress: Progress,
    cast: Cast,
    began: float,
) -> bool:
    """Wait until ``expected`` jobs have ended; False once the round stalls or the deadline
    passes."""
    while True:
        _watch(container, progress, cast)
        if progress.ended >= expected and progress.pending == 0:
            progress.note(f"drained {time.monotonic() - began:.1f} s after the last request")
            return True
        if progress.stalled_for() > plan.stall_seconds:
            progress.note(
                f"no job ended for {plan.stall_seconds:.0f} s: {progress.pending} unfinished"
            )
            return False
        if time.monotonic() - began > plan.drain_deadline_seconds:
            progress.note(f"not drained after {plan.drain_deadline_seconds:.0f} s")
            return False
        time.sleep(_WATCH_SECONDS)


def _process_records(deployed: Deployment, cast: Cast) -> list[ProcessRecord]:
    records = []
    for started in deployed.processes:
        status = started.process.returncode
        if status == -9:
            ended_by = "SIGKILL"
        elif started.name in cast.terminated:
            ended_by = "SIGTERM"
        else:
            ended_by = "stopped"
        record = ProcessRecord(started.name, ended_by, status, cast.exited.get(started.name))
        if isinstance(started, WorkerProcess):
            _describe_worker(started, record)
        records.append(record)
    return records


def _describe_worker(worker: WorkerProcess, record: ProcessRecord) -> None:
    record.outcomes = dict(worker.outcomes())
    refusals = checks.refused_commits(worker.log())
    record.refused_commits = len(refusals)
    record.last_refused_commit = refusals[-1] if refusals else ""
