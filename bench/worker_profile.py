"""Where ``imgproc worker --processes 1`` spends CPU per job outside its render process:
``python -m bench.worker_profile [--jobs N] [--seconds S]``.

The workers scenario's set-up (a fresh database and topics, the 12 MP jobs seeded through the
use cases and relayed, blobs in a local folder), then one ``imgproc worker --processes 1`` with
py-spy (``uv tool run py-spy``, not part of the project's environment) sampling its main
process, without stopping it, for ``S`` seconds of its steady state. Only the thread holding
the interpreter lock is sampled: each sample is put in one step of a job by the frames it
holds, and ms per job = samples / rate / jobs READY during the sampling. Beside it, from
``/proc``: the CPU time of the main process and of the render process over the same span, per
job, the total the samples should add up to (they count more on a machine busier than its
cores, where the thread holding the lock may be waiting for a core).

Not part of the suite: a tool for finding the cost, not a figure to track.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Final

from bench import inputs
from bench.processes import CLOCK_TICKS, tree_cpu_seconds
from bench.production import services
from bench.scenarios.workers import worker_on_full_topic

RATE: Final = 200

#: A sample's step: the first rule whose frames all appear in the stack (leaf last) decides.
#: Frames are py-spy's ``function (file)``; a rule names a function and a part of its path.
STEPS: Final[list[tuple[str, list[tuple[str, str]]]]] = [
    ("database: start (read, mark PROCESSING)", [("_start", "use_cases/transforms.py")]),
    ("database: finish (mark READY)", [("_finish", "use_cases/transforms.py")]),
    ("database: give back", [("_give_back", "use_cases/transforms.py")]),
    ("source download (storage get)", [("_render", "use_cases/transforms.py"), ("get", "")]),
    ("pipe to the render process", [("_render", "use_cases/transforms.py")]),
    ("upload (storage put)", [("__call__", "use_cases/transforms.py"), ("put", "")]),
    ("job use case, rest", [("__call__", "use_cases/transforms.py")]),
    ("job metrics", [("", "metrics")]),
    ("message handler, rest (decode, log)", [("__call__", "imgproc_worker/handling.py")]),
    ("Kafka commit", [("", "imgproc_worker/consumer.py"), ("commit", "")]),
    ("Kafka poll (polling thread)", [("", "imgproc_worker/consumer.py"), ("poll", "")]),
    ("job threads: taking records", [("_job_thread", "imgproc_worker/consumer.py")]),
    ("consumer loop, rest", [("", "imgproc_worker/consumer.py")]),
    ("Kafka client network thread", [("", "kafka/")]),
    ("logging", [("", "logging/")]),
]


def _holds(frame: str, function: str, where: str) -> bool:
    """``frame`` (``Class.function (path:line)``) is ``function``'s, in a file ``where`` names."""
    name, _, place = frame.partition(" (")
    named = not function or name == function or name.endswith("." + function)
    return named and where in place


def _step(frames: list[str]) -> str:
    for name, rule in STEPS:
        if all(any(_holds(frame, *wanted) for frame in frames) for wanted in rule):
            return name
    return "other"


def _main_cpu_seconds(pid: int) -> float:
    """User and system time of ``pid`` itself (all its threads, not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_profile", description=__doc__)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    found = services()
    photo = inputs.photo_12mp()
    log = inputs.ROOT / "var" / "bench" / "worker-profile.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    raw = Path(tempfile.mkdtemp(prefix="imgproc-bench-profile-")) / "worker.txt"
    with worker_on_full_topic(found, photo.path, args.jobs, 1, log) as worker:
        pid = worker.process.pid
        time.sleep(1.0)
        ready_before, main_before = worker.ready(), _main_cpu_seconds(pid)
        tree_before, began = tree_cpu_seconds([pid]), time.monotonic()
        uv = subprocess.run(
            [str(inputs.ROOT / "scripts" / "bootstrap-uv.sh")],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        subprocess.run(
            [
                *(uv, "tool", "run", "py-spy", "record", "--format", "raw"),
                # The thread holding the GIL only: py-spy counts threads waiting in a pipe or
                # a socket as running here (several times the process's CPU time).
                *("--gil", "--nonblocking"),
                *("--rate", str(RATE), "--duration", f"{args.seconds:g}"),
                *("--pid", str(pid), "--output", str(raw)),
            ],
            check=True,
            capture_output=True,
        )
        seconds = time.monotonic() - began
        jobs = worker.ready() - ready_before
        main_cpu = _main_cpu_seconds(pid) - main_before
        tree_cpu = tree_cpu_seconds([pid]) - tree_before
        if worker.ready() >= args.jobs:
            print("warning: the backlog ran out during the sampling; give more --jobs")
    steps: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack_text, _, samples = line.rpartition(" ")
        if stack_text:
            steps[_step(stack_text.split(";"))] += int(samples)
    print(
        f"{jobs} jobs in {seconds:.1f} s ({jobs / seconds:.1f} jobs/s); main process "
        f"{main_cpu / jobs * 1000:.1f} ms CPU per job, render process "
        f"{(tree_cpu - main_cpu) / jobs * 1000:.1f} ms, tree {tree_cpu / seconds:.2f} cores"
    )
    print(f"py-spy samples of the main process's running threads, ms per job ({RATE} Hz):")
    for name, samples in steps.most_common():
        print(f"  {samples / RATE / jobs * 1000:6.2f}  {name}")
    print(f"  {sum(steps.values()) / RATE / jobs * 1000:6.2f}  in all (raw stacks: {raw})")


if __name__ == "__main__":
    main()
