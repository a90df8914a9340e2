"""The libjpeg-turbo ceiling: what tjbench needs to decode the 12 MP photograph at 1/4 scale
and to encode an 800x600 picture at quality 85, with nothing in between.

No resampling happens in that model, so it bounds from above what any libjpeg-turbo resize can
reach; the engine adds a Lanczos pass from 1000x750 to 800x600. A second row times Pillow doing
exactly tjbench's two steps (1/4-scale decode, encode), which separates what the binding costs
from what the resampling costs.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path

from PIL import Image

from bench import inputs
from bench.jobs import HEIGHT, QUALITY, WIDTH
from bench.machine import Unavailable, debian_package
from bench.processes import Contestant, child_environment
from bench.results import Row, Run
from bench.scenarios import Budget
from bench.stats import Summary, ratios

_OPTIONS = ("-scale", "-benchtime", "-warmup", "-nowrite", "-componly", "-subsamp", "-rgb")
_FRAME_RATE = re.compile(r"^(Decompress|Compress)\s+-->\s+Frame rate:\s+([0-9.]+)\s+fps", re.M)


def _tjbench() -> str:
    debian_package("libjpeg-turbo-progs")
    path = shutil.which("tjbench")
    if path is None:
        raise Unavailable("libjpeg-turbo-progs is installed but tjbench is not on the PATH")
    # Its options have changed across versions (3.x renamed several): check the ones used here.
    usage = subprocess.run([path, "-h"], capture_output=True, text=True).stdout
    missing = [option for option in _OPTIONS if option not in usage]
    if missing:
        raise Unavailable(f"this tjbench lacks {', '.join(missing)}: its model cannot be run")
    return path


def _frame_rate(output: str, step: str) -> float:
    for name, value in _FRAME_RATE.findall(output):
        if name == step:
            return float(value)
    raise RuntimeError(f"tjbench printed no {step} frame rate:\n{output}")


def _seconds_per_frame(command: list[str], step: str) -> float:
    result = subprocess.run(
        command, capture_output=True, text=True, check=True, env=child_environment()
    )
    return 1.0 / _frame_rate(result.stdout, step)


def encoder_input(photo: inputs.Input) -> Path:
    """The 800x600 picture tjbench encodes, as PPM: the engine's own resize, before encoding."""
    path = inputs.CACHE / f"{photo.name}-{WIDTH}x{HEIGHT}-r{inputs.RECIPE}.ppm"
    if not path.is_file():
        image = Image.open(io.BytesIO(photo.read()))
        image.draft("RGB", (image.width // 4, image.height // 4))
        image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS).save(path)
    return path


def ceiling(run: Run, budget: Budget) -> None:
    """Target 3: engine throughput relative to tjbench's decode at 1/4 plus encode."""
    try:
        tjbench = _tjbench()
    except Unavailable as exc:
        run.rows.append(
            Row(
                "ceiling",
                "Engine vs libjpeg-turbo ceiling",
                "",
                target=0.8,
                unavailable=str(exc),
            )
        )
        return
    photo = inputs.photo_12mp()
    ppm = encoder_input(photo)
    timing = ["-benchtime", str(budget.tjbench_seconds), "-warmup", "0.3", "-nowrite", "-rgb"]
    decode = [tjbench, str(photo.path), "-scale", "1/4", *timing]
    encode = [tjbench, str(ppm), str(QUALITY), "-subsamp", "420", "-componly", *timing]
    engine = Contestant("engine", "engine-resize", photo.path, tune=True)
    codec_only = Contestant("Pillow decode 1/4 + encode", "pillow-quarter-encode", photo.path)
    engine_ms: list[float] = []
    codec_ms: list[float] = []
    ceiling_ms: list[float] = []
    with ExitStack() as stack:
        stack.enter_context(engine)
        stack.enter_context(codec_only)
        for _ in range(budget.ceiling_rounds):
            engine_ms.append(engine.run(budget.jobs).wall * 1000)
            ceiling_ms.append(
                (_seconds_per_frame(decode, "Decompress") + _seconds_per_frame(encode, "Compress"))
                * 1000
            )
            codec_ms.append(codec_only.run(budget.jobs).wall * 1000)
    version = run.machine.setdefault("tjbench", debian_package("libjpeg-turbo-progs"))
    ceiling_side = f"tjbench {version}: decode 1/4 + encode"
    run.rows.append(
        Row(
            scenario="ceiling",
            name="Engine vs libjpeg-turbo ceiling",
            meaning="tjbench time / engine time per job (engine throughput as a fraction of "
            "the ceiling)",
            ratio=Summary.of(ratios(ceiling_ms, engine_ms)),
            target=0.8,
            sides={"engine": Summary.of(engine_ms), ceiling_side: Summary.of(ceiling_ms)},
            unit="ms/job",
        )
    )
    run.rows.append(
        Row(
            scenario="ceiling",
            name="Pillow's libjpeg-turbo vs the ceiling (no resize)",
            meaning="tjbench time / time of Pillow doing the same two steps",
            ratio=Summary.of(ratios(ceiling_ms, codec_ms)),
            sides={
                "Pillow decode 1/4 + encode": Summary.of(codec_ms),
                ceiling_side: Summary.of(ceiling_ms),
            },
            unit="ms/job",
        )
    )
