"""``python -m bench [--quick] [--only NAME,...] [--report-only [RUN] [--update PARTIAL ...]]``."""

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
from bench.scenarios import Budget, api, ceiling, encoders, engine, links, pool, workers

Scenario = Callable[[Run, Budget], None]

_NEWEST_FULL_RUN: Final = Path("newest-full-run")

SCENARIOS: Final[dict[str, Scenario]] = {
    "resize": engine.resize_12mp,
    "ceiling": ceiling.ceiling,
    "memory": engine.peak_memory_50mp,
    "allocator": engine.allocator,
    "encoders": encoders.encoders,
    "api": api.api,
    "links": links.first_get,
    "workers": workers.workers,
    "pool": pool.pool_throughput,
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
        const=_NEWEST_FULL_RUN,
        help="rewrite docs/benchmarks.md and its plots from a saved run (the newest full one)",
    )
    parser.add_argument(
        "--update",
        type=Path,
        nargs="+",
        default=[],
        metavar="PARTIAL",
        help="with --report-only: saved partial runs (--only) whose scenarios replace the run's",
    )
    args = parser.parse_args()
    if args.update and args.report_only is None:
        parser.error("--update goes with --report-only")
    if args.report_only is not None:
        from bench import report

        saved = args.report_only
        if saved == _NEWEST_FULL_RUN:
            runs = sorted(RESULTS_DIR.glob("full-*.json"))
            if not runs:
                parser.error(f"no full run saved in {RESULTS_DIR}")
            saved = runs[-1]
        run = Run.load(saved)
        for later in args.update:
            run = run.updated_by(Run.load(later))
        report.write(run)
        sources = ", ".join(str(path) for path in [saved, *args.update])
        print(f"bench: {report.DOC} rewritten from {sources}", file=sys.stderr)
        return 0
    chosen = [name for name in args.only.split(",") if name] or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    budget = Budget.short() if args.quick else Budget.full()
    run = Run(quick=args.quick, partial=bool(args.only), machine=machine.describe())
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
    if not args.only and not args.quick:
        from bench import report

        report.write(run)
        print(f"bench: {report.DOC} updated", file=sys.stderr)
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
        unit = "ms" if side.endswith(" ms") else row.unit
        print(f"      {side.removesuffix(' ms')}: {summary.median:.1f} {unit}")
    if row.note:
        print(f"      ({row.note})")


if __name__ == "__main__":
    sys.exit(main())
