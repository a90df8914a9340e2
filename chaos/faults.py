"""The faults of a round, each started when a given share of the round's jobs has ended, so that
every one strikes while jobs are in every stage (waiting in the outbox, on the topic, rendering).

In order: a worker SIGKILLed and a replacement started; the relay SIGKILLed and started again;
the broker SIGKILLed (``scripts/services/kafka.sh kill9``) and started again; a new worker
started and, while it joins the group, another SIGTERMed. Two workers run between faults.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from chaos.progress import Progress
from tests.e2e.production.deployment import (
    Deployment,
    RunningProcess,
    ServiceScript,
    WorkerProcess,
)


@dataclass
class FaultRecord:
    """One fault as it happened: when (seconds into the round, jobs ended by then), to whom."""

    name: str
    at_share: float
    started_at: float | None = None
    ended_jobs: int | None = None
    seconds: float | None = None
    detail: str = ""

    @property
    def injected(self) -> bool:
        return self.started_at is not None


@dataclass
class Cast:
    """The processes a round runs, as the faults change them."""

    deployed: Deployment
    relay: RunningProcess
    workers: list[WorkerProcess]
    kafka: ServiceScript
    #: Processes sent SIGTERM in the middle of the round, with when (monotonic).
    terminated: dict[str, float] = field(default_factory=dict)
    #: Of those, how long each took to exit once it had.
    exited: dict[str, float] = field(default_factory=dict)

    def worker_started(self) -> WorkerProcess:
        started = self.deployed.start_worker()
        self.workers.append(started)
        return started

    def oldest_running_worker(self) -> WorkerProcess:
        return next(worker for worker in self.workers if worker.running)


def kill_a_worker(cast: Cast) -> str:
    victim = cast.oldest_running_worker()
    held, done = sorted(victim.partitions()), len(victim.handled())
    victim.kill()
    replacement = cast.worker_started()
    return (
        f"SIGKILL {victim.name} (held partitions {held}, had finished {done} messages); "
        f"started {replacement.name}"
    )


def kill_the_relay(cast: Cast) -> str:
    victim = cast.relay
    victim.kill()
    cast.relay = cast.deployed.start_relay()
    return f"SIGKILL {victim.name}; started {cast.relay.name}"


def kill_the_broker(cast: Cast) -> str:
    started = time.monotonic()
    cast.kafka.kill9()
    killed = time.monotonic()
    cast.kafka.start()
    return (
        f"kafka.sh kill9 ({killed - started:.1f} s), kafka.sh start: the broker answered "
        f"again {time.monotonic() - killed:.1f} s after the kill"
    )


def terminate_a_worker_while_another_joins(cast: Cast) -> str:
    victim = cast.oldest_running_worker()
    newcomer = cast.worker_started()
    held = sorted(victim.partitions())
    victim.process.send_signal(signal.SIGTERM)
    cast.terminated[victim.name] = time.monotonic()
    return f"started {newcomer.name}; SIGTERM {victim.name} (held partitions {held})"


Fault = Callable[[Cast], str]

#: (share of the round's jobs ended, name, what to do).
SCHEDULE: Final[tuple[tuple[float, str, Fault], ...]] = (
    (0.10, "worker SIGKILL + replacement", kill_a_worker),
    (0.30, "relay SIGKILL + restart", kill_the_relay),
    (0.50, "broker kill9 + start", kill_the_broker),
    (0.70, "worker SIGTERM while one joins", terminate_a_worker_while_another_joins),
)


def run_schedule(
    cast: Cast, progress: Progress, jobs: int, records: list[FaultRecord], stall_seconds: float
) -> None:
    """Inject each fault of :data:`SCHEDULE` once its share of ``jobs`` has ended (filling
    ``records`` as it goes); gives up on the rest when no job ends for ``stall_seconds``."""
    for share, name, fault in SCHEDULE:
        record = FaultRecord(name, share)
        records.append(record)
        target = max(1, round(jobs * share))
        if not progress.wait_until_ended(target, stall_seconds):
            record.detail = f"not injected: jobs stopped ending at {progress.ended} of {target}"
            continue
        began = time.monotonic()
        record.started_at = began - progress.started
        record.ended_jobs = progress.ended
        record.detail = fault(cast)
        record.seconds = time.monotonic() - began
        progress.note(f"{name} at {record.ended_jobs}/{jobs} ended: {record.detail}")
