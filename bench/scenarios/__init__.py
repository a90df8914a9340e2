"""The scenarios, each a function of the run's :class:`Budget` that adds rows to a Run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Budget:
    """How long a run may take, scenario by scenario."""

    quick: bool
    #: Alternation rounds, and jobs per contestant per round, for the CPU-bound comparisons.
    rounds: int
    jobs: int
    #: Fresh processes per side for peak memory.
    memory_rounds: int
    #: Rounds against tjbench, and how long tjbench measures each time.
    ceiling_rounds: int
    tjbench_seconds: float
    #: Load-generator runs per side, and their length.
    http_rounds: int
    http_seconds: float
    #: Rounds of worker scaling (each one worker, then two, or the other way round, on a fresh
    #: database and topics), and the jobs each measurement renders (a multiple of 60).
    worker_rounds: int
    worker_batch: int
    #: Rounds over every encoder setting.
    encoder_rounds: int

    @classmethod
    def full(cls) -> Budget:
        return cls(
            quick=False,
            rounds=15,
            jobs=4,
            memory_rounds=7,
            ceiling_rounds=9,
            tjbench_seconds=1.0,
            http_rounds=3,
            http_seconds=10.0,
            worker_rounds=4,
            worker_batch=360,
            encoder_rounds=9,
        )

    @classmethod
    def short(cls) -> Budget:
        return cls(
            quick=True,
            rounds=5,
            jobs=3,
            memory_rounds=3,
            ceiling_rounds=3,
            tjbench_seconds=0.5,
            http_rounds=1,
            http_seconds=3.0,
            worker_rounds=1,
            worker_batch=120,
            encoder_rounds=3,
        )
