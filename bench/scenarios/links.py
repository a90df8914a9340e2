"""A delivery link's first GET, rendered on the fly, next to the engine's time for the same job.

``imgproc serve`` runs the embedded profile (SQLite, local blobs, its worker threads and render
processes). One 12 MP camera JPEG is uploaded; then, each round, a new link asks for an 800x600
``cover`` crop of it at a quality of its own (so every link is a new derivative), and one GET
of it is timed until the bytes arrive: the job queued, claimed, rendered in a worker process,
written, and the waiting request woken. Alternating with those, the engine (Pillow in this
process, as a render process runs it) renders the same transformation.

The target: the first GET's median no more than the engine's median plus 100 ms, reported as
``first GET / (engine + 100 ms)``, at most 1.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import ExitStack

from bench import inputs
from bench.results import Row, Run
from bench.scenarios import Budget
from bench.scenarios.api import WORKDIR, _request, free_port, imgproc_server, prepare
from bench.stats import Summary
from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import parse_transformation

ALLOWANCE_SECONDS = 0.1
POLLS = "imgproc_link_render_polls_total"


def _polls(base: str) -> float:
    """How many times the server has read a derivative's state for a waiting reader."""
    status, _, answer = _request("GET", f"{base}/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    for line in answer.decode().splitlines():
        if line.startswith(f"{POLLS} "):
            return float(line.split()[1])
    return 0.0


def _spec(quality: int) -> dict[str, object]:
    return {"resize": {"width": 800, "height": 600, "fit": "cover"}, "quality": quality}


def first_get(run: Run, budget: Budget) -> None:
    workdir = WORKDIR.parent / "links"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    photo = inputs.photo_12mp()
    data = photo.read()
    codec, limits = PillowImageCodec(), Limits()
    first_gets: list[float] = []
    engine: list[float] = []
    with ExitStack() as stack:
        server = stack.enter_context(imgproc_server(free_port(), workdir))
        token, image_id = prepare(server, photo.path)
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        polls_before = _polls(server.base)
        for n in range(budget.rounds * budget.jobs):
            # A quality of its own for every round (90 of them), so every link is a new job.
            quality = 99 - n % 90
            body = json.dumps({"transformation": _spec(quality)}).encode()
            status, _, answer = _request(
                "POST", f"{server.base}/api/v1/images/{image_id}/links", body, auth
            )
            if status != 201:
                raise RuntimeError(f"making a link answered {status}: {answer[:200]!r}")
            url = json.loads(answer)["url"]
            started = time.perf_counter()
            status, _, answer = _request("GET", url)
            elapsed = time.perf_counter() - started
            if status != 200:
                raise RuntimeError(f"the link's first GET answered {status}: {answer[:200]!r}")
            first_gets.append(elapsed)
            transformation = parse_transformation(_spec(quality)).resolved("jpeg")
            started = time.perf_counter()
            codec.transform(data, transformation, limits)
            engine.append(time.perf_counter() - started)
        polls = _polls(server.base) - polls_before
    first, rendered = Summary.of(first_gets), Summary.of(engine)
    ratio = [value / (rendered.median + ALLOWANCE_SECONDS) for value in first_gets]
    run.details["links"] = {
        "source": photo.name,
        "first_get_seconds": first_gets,
        "engine_seconds": engine,
        "state_reads": polls,
    }
    run.rows.append(
        Row(
            scenario="links",
            name="First GET of a new link (render on the fly, 12 MP JPEG to 800x600)",
            meaning="first GET seconds / (engine seconds for the job + 100 ms)",
            ratio=Summary.of(ratio),
            target=1.0,
            direction="<=",
            sides={
                "first GET ms": Summary.of([s * 1000 for s in first_gets]),
                "engine ms": Summary.of([s * 1000 for s in engine]),
            },
            unit="ms",
            note=(
                f"first GET p50 {first.median * 1000:.0f} ms, "
                f"engine {rendered.median * 1000:.0f} ms; "
                f"{polls / len(first_gets):.1f} reads of the job's state per first GET"
            ),
        )
    )
