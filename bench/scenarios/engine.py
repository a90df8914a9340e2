"""The transform engine, one core: against a naive Pillow script, libvips, and itself tuned.

Every contestant is a process of its own (:mod:`bench.contestant`), alternating batches of
jobs on the same input. The engine runs as the service runs it: with the allocator settings of
:func:`~imgproc_core.adapters.pillow.allocator.tune_allocator`; the naive script and libvips run
as they come.
"""

from __future__ import annotations

from contextlib import ExitStack

from bench import inputs
from bench.machine import Unavailable, pyvips_version
from bench.processes import Contestant, Timing, alternate, peak_memory
from bench.results import Row, Run
from bench.scenarios import Budget
from bench.stats import Summary, ratios


def _ms(timings: list[Timing]) -> Summary:
    return Summary.of([timing.wall * 1000 for timing in timings])


def _ratio_row(
    scenario: str,
    name: str,
    meaning: str,
    slower: tuple[str, list[Timing]],
    faster: tuple[str, list[Timing]],
    target: float | None = None,
) -> Row:
    """``slower`` time over ``faster`` time, round by round: how many times faster."""
    return Row(
        scenario=scenario,
        name=name,
        meaning=meaning,
        ratio=Summary.of(ratios([t.wall for t in slower[1]], [t.wall for t in faster[1]])),
        cpu_ratio=Summary.of(ratios([t.cpu for t in slower[1]], [t.cpu for t in faster[1]])),
        target=target,
        sides={faster[0]: _ms(faster[1]), slower[0]: _ms(slower[1])},
        unit="ms/job",
    )


def resize_12mp(run: Run, budget: Budget) -> None:
    """Targets 1 and 2: 12 MP JPEG to 800x600 JPEG q85."""
    photo = inputs.photo_12mp()
    contestants = [
        Contestant("engine", "engine-resize", photo.path, tune=True),
        Contestant("naive Pillow", "naive-resize", photo.path),
    ]
    vips_missing: str | None = None
    try:
        vips = pyvips_version()
        contestants.append(Contestant(f"libvips {vips}", "vips-resize", photo.path))
    except Unavailable as exc:
        vips_missing = str(exc)
    with ExitStack() as stack:
        for contestant in contestants:
            stack.enter_context(contestant)
        timings = alternate(contestants, budget.rounds, budget.jobs)
    engine = ("engine", timings["engine"])
    run.rows.append(
        _ratio_row(
            "resize",
            "Engine vs naive Pillow",
            "naive time / engine time per job (12 MP JPEG to 800x600 JPEG q85)",
            ("naive Pillow", timings["naive Pillow"]),
            engine,
            target=4.0,
        )
    )
    if vips_missing is None:
        label = contestants[2].label
        row = _ratio_row(
            "resize",
            "Engine vs libvips thumbnail",
            "libvips time / engine time per job (thumbnail_buffer, VIPS_CONCURRENCY=1)",
            (label, timings[label]),
            engine,
            target=1.15,
        )
    else:
        row = Row(
            "resize",
            "Engine vs libvips thumbnail",
            "libvips time / engine time per job",
            target=1.15,
            unavailable=vips_missing,
        )
    run.rows.append(row)


def peak_memory_50mp(run: Run, budget: Budget) -> None:
    """Target 4: the memory one job needs on a 50 MP JPEG, in fresh processes."""
    photo = inputs.photo_50mp()
    engine: list[float] = []
    naive: list[float] = []
    for _ in range(budget.memory_rounds):
        engine.append(peak_memory("engine-resize", photo.path, tune=True)["peak_kb"] / 1024)
        naive.append(peak_memory("naive-resize", photo.path, tune=False)["peak_kb"] / 1024)
    run.rows.append(
        Row(
            scenario="memory",
            name="Peak memory, engine vs naive",
            meaning="engine peak / naive peak (growth of the resident size during one "
            "50 MP to 800x600 job, fresh process each)",
            ratio=Summary.of(ratios(engine, naive)),
            target=0.35,
            direction="<=",
            sides={"engine": Summary.of(engine), "naive Pillow": Summary.of(naive)},
            unit="MiB",
        )
    )


def allocator(run: Run, budget: Budget) -> None:
    """Target 5: the same jobs with and without the service's allocator settings."""
    photo, large = inputs.photo_12mp(), inputs.photo_50mp()
    cases = [
        ("12 MP resize to 800x600", "engine-resize", photo),
        ("50 MP resize to 800x600", "engine-resize", large),
        ("12 MP full decode", "full-decode", photo),
        ("12 MP flip (full size, JPEG out)", "engine-flip", photo),
    ]
    for title, job, source in cases:
        tuned = Contestant("tuned", job, source.path, tune=True)
        default = Contestant("glibc defaults", job, source.path)
        with tuned, default:
            jobs = max(1, budget.jobs // 2) if source is large else budget.jobs
            timings = alternate([tuned, default], budget.rounds, jobs)
        run.rows.append(
            _ratio_row(
                "allocator",
                f"Allocator settings: {title}",
                "time with glibc defaults / time with tune_allocator()",
                ("glibc defaults", timings["glibc defaults"]),
                ("tuned", timings["tuned"]),
            )
        )
