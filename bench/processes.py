"""Contestants: jobs in processes of their own, timed in alternation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from bench.inputs import ROOT

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")

#: Every contestant works on one core: libvips and any BLAS stay single-threaded.
SINGLE_THREADED = {"VIPS_CONCURRENCY": "1", "OMP_NUM_THREADS": "1"}


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    env.update(SINGLE_THREADED)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@dataclass(frozen=True, slots=True)
class Timing:
    wall: float
    cpu: float


@dataclass
class Contestant:
    """``job`` on ``source`` in its own Python process, ready to be told to run.

    ``module`` is the program the process runs: :mod:`bench.contestant`, or another that
    speaks the same protocol.
    """

    label: str
    job: str
    source: Path
    tune: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    module: str = "bench.contestant"
    _process: subprocess.Popen[str] | None = None

    def start(self) -> Self:
        command = [sys.executable, "-m", self.module, self.job, str(self.source)]
        if self.tune:
            command.append("--tune")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_environment(self.env),
            cwd=ROOT,
        )
        ready = self._read()
        if ready != "ready":
            self.close()
            raise RuntimeError(f"{self.label}: the contestant did not start ({ready!r})")
        return self

    def run(self, count: int) -> Timing:
        self.send(count)
        return self.receive()

    def send(self, count: int) -> None:
        """Start a batch of ``count`` jobs; :meth:`receive` waits for its timing. Sending to
        several contestants first runs their batches at once."""
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(f"run {count}\n")
        self._process.stdin.flush()

    def receive(self) -> Timing:
        answer = self.answer()
        return Timing(answer["wall"], answer["cpu"])

    def ask(self, count: int) -> dict[str, float]:
        """Run ``count`` jobs; the contestant's whole answer (per job: wall, cpu, ...)."""
        self.send(count)
        return self.answer()

    def answer(self) -> dict[str, float]:
        """The whole answer to the batch sent last."""
        return json.loads(self._read())  # type: ignore[no-any-return]

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _read(self) -> str:
        assert self._process is not None
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise RuntimeError(f"{self.label}: the contestant exited ({code})")
        return line.strip()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def alternate(
    contestants: Sequence[Contestant], rounds: int, jobs_per_round: int
) -> dict[str, list[Timing]]:
    """Run each contestant's batch in turn (A, B, A, B, ...); one timing per round each."""
    results: dict[str, list[Timing]] = {contestant.label: [] for contestant in contestants}
    for _ in range(rounds):
        for contestant in contestants:
            results[contestant.label].append(contestant.run(jobs_per_round))
    return results


def peak_memory(job: str, source: Path, *, tune: bool) -> dict[str, int]:
    """One job in a fresh process: how much its resident size grew (kB)."""
    command = [sys.executable, "-m", "bench.contestant", job, str(source), "--peak"]
    if tune:
        command.append("--tune")
    result = subprocess.run(
        command, env=child_environment(), cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _descendants(roots: Sequence[int]) -> list[int]:
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


def tree_cpu_seconds(roots: Sequence[int]) -> float:
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


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent on anything but idling and waiting for I/O."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


@dataclass(frozen=True)
class Throughput:
    """One measurement of a set-up making ``jobs`` jobs in ``seconds``: the CPU time of its
    process tree and of the whole machine over the same span."""

    setup: str
    jobs: int
    seconds: float
    cpu_seconds: float
    machine_cpu_seconds: float
    #: Which measurement of the run this was (0 first).
    order: int = 0
    #: What else the set-up measured (start-up, the group forming...), in seconds or counts.
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds

    @property
    def cores(self) -> float:
        """Cores the set-up's processes used, on average."""
        return self.cpu_seconds / self.seconds

    @property
    def jobs_per_core_second(self) -> float:
        return self.jobs / max(1e-9, self.cpu_seconds)

    @property
    def machine_cores(self) -> float:
        """Cores the whole machine kept busy meanwhile (this set-up, the services, the rest)."""
        return self.machine_cpu_seconds / self.seconds

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "jobs_per_second": self.jobs_per_second,
            "cores": self.cores,
            "jobs_per_core_second": self.jobs_per_core_second,
            "machine_cores": self.machine_cores,
        }
