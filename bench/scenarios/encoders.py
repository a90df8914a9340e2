"""Target 8: what WebP and AVIF cost next to JPEG at the same output size (800x600).

Two views: the encoders alone, every setting in turn on the same picture (with the output's
size and PSNR, to choose the settings), and whole engine jobs (12 MP JPEG in, 800x600 out)
whose only difference is the output format, at the engine's settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack

from bench import inputs
from bench.processes import Contestant, alternate, child_environment
from bench.results import Row, Run
from bench.scenarios import Budget
from bench.scenarios.ceiling import encoder_input
from bench.stats import Summary, ratios
from imgproc_core.adapters.pillow.encoding import AVIF_SPEED, WEBP_METHOD

REFERENCE = "jpeg q85"


def encoders(run: Run, budget: Budget) -> None:
    photo = inputs.photo_12mp()
    picture = encoder_input(photo)
    result = subprocess.run(
        [sys.executable, "-m", "bench.encoders", str(picture), str(budget.encoder_rounds)],
        capture_output=True,
        text=True,
        check=True,
        env=child_environment(),
    )
    report = json.loads(result.stdout)
    reference = report[REFERENCE]
    table = []
    for name, entry in report.items():
        table.append(
            {
                "setting": name,
                "bytes": entry["bytes"],
                "psnr": round(entry["psnr"], 2),
                "ms": Summary.of([s * 1000 for s in entry["wall"]]).as_dict(),
                "vs_jpeg": Summary.of(ratios(entry["wall"], reference["wall"])).as_dict(),
                "cpu_vs_jpeg": Summary.of(ratios(entry["cpu"], reference["cpu"])).as_dict(),
            }
        )
    run.details["encoders"] = {"picture": f"{photo.name} resized to 800x600", "settings": table}
    shipped = {
        "webp": next(name for name in report if name.endswith(f"method {WEBP_METHOD}")),
        "avif": next(name for name in report if name.endswith(f"speed {AVIF_SPEED}")),
    }
    for fmt, name in shipped.items():
        entry = report[name]
        run.rows.append(
            Row(
                scenario="encoders",
                name=f"Encode only: {name} vs {REFERENCE}",
                meaning=f"{fmt} encode time / JPEG encode time, 800x600",
                ratio=Summary.of(ratios(entry["wall"], reference["wall"])),
                cpu_ratio=Summary.of(ratios(entry["cpu"], reference["cpu"])),
                sides={
                    REFERENCE: Summary.of([s * 1000 for s in reference["wall"]]),
                    name: Summary.of([s * 1000 for s in entry["wall"]]),
                },
                unit="ms",
            )
        )
    contestants = [
        Contestant("jpeg", "engine-resize", photo.path, tune=True),
        Contestant("webp", "engine-resize-webp", photo.path, tune=True),
        Contestant("avif", "engine-resize-avif", photo.path, tune=True),
    ]
    with ExitStack() as stack:
        for contestant in contestants:
            stack.enter_context(contestant)
        timings = alternate(contestants, max(3, budget.rounds // 2), max(1, budget.jobs // 2))
    jpeg = timings["jpeg"]
    for fmt in ("webp", "avif"):
        run.rows.append(
            Row(
                scenario="encoders",
                name=f"Whole job: 12 MP to 800x600 {fmt} vs jpeg",
                meaning=f"{fmt} job time / JPEG job time (engine settings)",
                ratio=Summary.of(ratios([t.wall for t in timings[fmt]], [t.wall for t in jpeg])),
                cpu_ratio=Summary.of(ratios([t.cpu for t in timings[fmt]], [t.cpu for t in jpeg])),
                sides={
                    "jpeg": Summary.of([t.wall * 1000 for t in jpeg]),
                    fmt: Summary.of([t.wall * 1000 for t in timings[fmt]]),
                },
                unit="ms/job",
            )
        )
