"""``python -m bench [--quick] [--only NAME,...] [--report-only]``."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Final

# Pillow before anything that might load pyvips.
import PIL.Image  # noqa: F401

from bench import machine
from bench.results import RESULTS_DIR, Row, Run
from bench.scenarios import Budget, engine

Scenario = Callable[[Run, Budget], None]

SCENARIOS: Final[dict[str, Scenario]] = {
    "resize": engine.resize_12mp,
    "memory": engine.peak_memory_50mp,
    "allocator": engine.allocator,
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (under 2 minutes)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios, of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--report-only",
        type=Path,
        nargs="?",
        const=RESULTS_DIR / "latest.json",
        help="rewrite docs/benchmarks.md and its plots from a saved run",
    )
    args = parser.parse_args()
    if args.report_only is not None:
        from bench import report

        report.write(Run.load(args.report_only))
        return 0
    chosen = [name for name in args.only.split(",") if name] or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    budget = Budget.short() if args.quick else Budget.full()
    run = Run(quick=args.quick, machine=machine.describe())
    failed = False
    for name in chosen:
        began = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            SCENARIOS[name](run, budget)
        except Exception as exc:
            failed = True
            traceback.print_exc()
            run.rows.append(Row(name, name, "", unavailable=f"the scenario failed: {exc}"))
        print(f"bench: {name} took {time.monotonic() - began:.0f} s", file=sys.stderr)
        for row in run.rows:
            if row.scenario == name:
                _print_row(row)
    run.finished = time.time()
    run.machine["load_average_end"] = machine.describe()["load_average"]
    path = run.save()
    print(f"bench: results in {path}", file=sys.stderr)
    if not args.only:
        from bench import report

        report.write(run)
    return 1 if failed else 0


def _print_row(row: Row) -> None:
    if row.unavailable:
        print(f"  {row.name}: unavailable ({row.unavailable})")
        return
    if row.ratio is None:
        return
    target = f" target {row.direction} {row.target}" if row.target is not None else ""
    print(f"  {row.name}: {row.ratio.text()}{target} [{row.status}]")
    for side, summary in row.sides.items():
        print(f"      {side}: {summary.median:.1f} {row.unit}")


if __name__ == "__main__":
    sys.exit(main())
