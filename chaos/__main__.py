"""``python -m chaos [--rounds N] [--jobs N] [--out DIR]``: exit status 0 when every round
lost nothing, failed nothing and wrote the bytes of the reference render for every job."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

# Pillow before anything that might load another image library's codecs.
import PIL.Image  # noqa: F401
import pytest

from chaos import report
from chaos.round import RoundPlan, RoundResult, run_round

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "var" / "chaos"


def _revision() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"

    def run(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 (a fixed git command)
            [git, "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    revision = run("rev-parse", "--short=12", "HEAD") or "unknown"
    changed = run("status", "--porcelain", "--untracked-files=no")
    return f"{revision}+changes" if changed else revision


def _machine() -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load} at the start"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds to run (default 3)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs a round (default 1000)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help=f"results folder (default {RESULTS_DIR})"
    )
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=RoundPlan.stall_seconds,
        help="a round in which no job ends for this long has stalled (default %(default)s)",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.jobs < 10:
        parser.error("at least 1 round of at least 10 jobs")
    started = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    folder = args.out / started
    context = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "revision": _revision(),
        "machine": _machine(),
        "jobs": args.jobs,
    }
    plan = RoundPlan(jobs=args.jobs, stall_seconds=args.stall_seconds)
    results: list[RoundResult] = []
    for number in range(1, args.rounds + 1):
        round_folder = folder / f"round-{number:02d}"
        try:
            result = run_round(number, plan, round_folder)
        except (Exception, pytest.fail.Exception) as exc:
            # The harness could not finish the round (a process that never started, say):
            # recorded, and the next round runs.
            traceback.print_exc()
            result = RoundResult(
                number, plan.__dict__.copy(), log_folder=str(round_folder / "processes")
            )
            result.aborted = f"{type(exc).__name__}: {str(exc)[:2000]}"
        results.append(result)
        print(report.row(result), end="", file=sys.stderr)
        report.write(folder, results, context)
    written = report.write(folder, results, context)
    print(report.markdown(results, context))
    print(f"chaos: report in {written} and {written.with_suffix('.json')}", file=sys.stderr)
    return 0 if all(result.clean for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
