"""``imgproc transform SPEC INPUT... --out DIR``: the service's transformations on local files."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from imgproc_cli.batch import BatchTransform, Converted, Failed, Outcome, Source, find_inputs
from imgproc_cli.errors import EXIT_FAILURE, EXIT_USAGE, fail, reported_errors
from imgproc_cli.rendering import examples, human_bytes, plain, print_json, stderr, stdout, table
from imgproc_cli.runtime import load_settings
from imgproc_core.domain.errors import InvalidTransformation
from imgproc_core.domain.transformations import Transformation, parse_transformation

#: The most processes ``--jobs`` may ask for (the limit of IMGPROC_WORKER_PROCESSES).
MAX_JOBS: Final = 256

EPILOG = examples(
    'imgproc transform \'{"resize": {"width": 800}, "format": "webp"}\' photos/ --out web/',
    "imgproc transform spec.json 'scans/**/*.tif' cover.png --out out/ --jobs 4",
    "imgproc transform '{\"grayscale\": true}' a.jpg --out out/ --json | jq .failed",
)


def parse_spec(spec: str) -> Transformation:
    """The transformation a SPEC argument gives: the JSON the API takes, from a file or inline.

    A usage error (exit status 2) when it is neither, is not a valid transformation, or names
    a watermark image: those are the service's stored images, which local files are not.
    """
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise typer.BadParameter(f"cannot read {spec}: {exc}", param_hint="SPEC") from None
    elif spec.lstrip().startswith("{"):
        text = spec
    else:
        raise typer.BadParameter(f"{spec!r} is neither a file nor a JSON object", param_hint="SPEC")
    try:
        transformation = parse_transformation(text)
    except InvalidTransformation as exc:
        where = f" (at {exc.field})" if exc.field else ""
        raise typer.BadParameter(f"{exc.message}{where}", param_hint="SPEC") from None
    watermark = transformation.watermark
    if watermark is not None and watermark.image_id is not None:
        raise typer.BadParameter(
            "watermark.image_id names an image stored in the service; on local files, use a "
            "text watermark",
            param_hint="SPEC",
        )
    return transformation


def transform(
    spec: Annotated[
        str,
        typer.Argument(
            help="The transformation, as the API takes it: a JSON file, or the JSON itself",
            show_default=False,
        ),
    ],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (searched recursively) or glob patterns ('**' too)",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for the outputs, created if need be",
            file_okay=False,
            show_default=False,
        ),
    ],
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            max=MAX_JOBS,
            help="Images transformed at once, one process each",
            show_default="every core",
        ),
    ] = None,
    json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON; no progress bar")
    ] = False,
) -> None:
    """Transform local image files with the service's own pipeline and limits.

    Each output is named after its input, with the output format's extension; inputs whose
    names would collide get a short hash of their path appended (photo-1a2b3c4d.webp). The
    outputs are the same bytes whatever --jobs is. Every input is tried; the summary lists
    those that failed and why, and the exit status is then 1. Limits and the time limit per
    image come from the same settings as the service (IMGPROC_MAX_PIXELS,
    IMGPROC_JOB_TIME_LIMIT_SECONDS...).
    """
    transformation = parse_spec(spec)
    found = find_inputs(inputs, skip=out)
    if not found.sources:
        fail(f"no input files: nothing found at {', '.join(found.missing)}", EXIT_USAGE)
    processes = min(jobs or os.cpu_count() or 1, MAX_JOBS, len(found.sources))
    settings = load_settings(worker_processes=processes)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create the output folder {out}: {exc.strerror or exc}", EXIT_USAGE)

    from imgproc_core.container import build_container

    container = build_container(settings)
    started = time.monotonic()
    with reported_errors():
        try:
            batch = BatchTransform(
                transformation,
                probe=container.codec(),
                codec=container.job_codec(),
                limits=settings.limits,
                out_dir=out,
                jobs=processes,
            )
            outcomes = _run(batch, found.sources, show_progress=not json)
        finally:
            container.shutdown_resources()
    seconds = time.monotonic() - started
    outcomes += [
        Failed(Source(Path(missing), missing), "not_found", "no such file, folder or match")
        for missing in found.missing
    ]
    if json:
        print_json(_document(outcomes, seconds, processes, out))
    else:
        _print_summary(outcomes, seconds, out)
    if any(isinstance(outcome, Failed) for outcome in outcomes):
        raise typer.Exit(EXIT_FAILURE)


def _run(batch: BatchTransform, sources: list[Source], *, show_progress: bool) -> list[Outcome]:
    console = stderr()
    with Progress(
        TextColumn("transforming"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (show_progress and console.is_terminal),
    ) as progress:
        task = progress.add_task("transforming", total=len(sources))
        return batch(sources, lambda _: progress.advance(task))


def _totals(outcomes: list[Outcome]) -> tuple[list[Converted], list[Failed], int, int]:
    converted = [outcome for outcome in outcomes if isinstance(outcome, Converted)]
    failed = [outcome for outcome in outcomes if isinstance(outcome, Failed)]
    bytes_in = sum(outcome.bytes_in for outcome in converted)
    bytes_out = sum(outcome.bytes_out for outcome in converted)
    return converted, failed, bytes_in, bytes_out


def _document(outcomes: list[Outcome], seconds: float, jobs: int, out: Path) -> dict[str, Any]:
    converted, failed, bytes_in, bytes_out = _totals(outcomes)
    return {
        "inputs": len(outcomes),
        "done": len(converted),
        "failed": len(failed),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "seconds": round(seconds, 3),
        "jobs": jobs,
        "out": str(out),
        "outputs": [
            {
                "input": outcome.source.shown,
                "output": str(outcome.output),
                "format": outcome.format,
                "width": outcome.width,
                "height": outcome.height,
                "frames": outcome.frames,
                "bytes_in": outcome.bytes_in,
                "bytes_out": outcome.bytes_out,
            }
            for outcome in converted
        ],
        "failures": [
            {"input": outcome.source.shown, "code": outcome.code, "reason": outcome.reason}
            for outcome in failed
        ],
    }


def _print_summary(outcomes: list[Outcome], seconds: float, out: Path) -> None:
    converted, failed, bytes_in, bytes_out = _totals(outcomes)
    console = stdout()
    if failed:
        failures = table("input", "reason", title=f"{len(failed)} failed")
        for outcome in failed:
            reason = f"{outcome.code}: {outcome.reason}"
            failures.add_row(plain(outcome.source.shown), plain(reason))
        console.print(failures)
    summary = table("", "", show_header=False)
    summary.add_row("done", str(len(converted)))
    summary.add_row("failed", str(len(failed)))
    summary.add_row("bytes in", human_bytes(bytes_in))
    ratio = f" ({bytes_out / bytes_in:.0%} of the input)" if bytes_in else ""
    summary.add_row("bytes out", f"{human_bytes(bytes_out)}{ratio}")
    summary.add_row("time", f"{seconds:.2f} s")
    summary.add_row("output folder", plain(str(out)))
    console.print(summary)
