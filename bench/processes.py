"""Contestants: jobs in processes of their own, timed in alternation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from bench.inputs import ROOT

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
        answer = self.ask(count)
        return Timing(answer["wall"], answer["cpu"])

    def ask(self, count: int) -> dict[str, float]:
        """Run ``count`` jobs; the contestant's whole answer (per job: wall, cpu, ...)."""
        assert self._process is not None
        assert self._process.stdin is not None
        self._process.stdin.write(f"run {count}\n")
        self._process.stdin.flush()
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
