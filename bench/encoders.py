"""Encoder settings side by side, in one process: ``python -m bench.encoders PICTURE ROUNDS``.

Each round encodes the same 800x600 picture once with every setting, in turn, and answers one
JSON document: per setting, the seconds (wall and CPU) of every round, the output's size and its
PSNR against the picture. JPEG q85 as the engine writes it comes first: it is the reference.
"""

from __future__ import annotations

import functools
import io
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageStat

from imgproc_core.domain.formats import DEFAULT_QUALITY

Setting = tuple[str, dict[str, Any]]

MEASUREMENT_SECONDS = 0.02


def settings() -> list[Setting]:
    webp = DEFAULT_QUALITY["webp"]
    avif = DEFAULT_QUALITY["avif"]
    found: list[Setting] = [
        ("jpeg q85", {"format": "JPEG", "quality": DEFAULT_QUALITY["jpeg"], "optimize": False}),
        ("jpeg q85 optimize", {"format": "JPEG", "quality": 85, "optimize": True}),
    ]
    found += [
        (f"webp q{webp} method {method}", {"format": "WEBP", "quality": webp, "method": method})
        for method in range(7)
    ]
    found += [
        (
            f"avif q{avif} speed {speed}",
            {"format": "AVIF", "quality": avif, "speed": speed, "max_threads": 1},
        )
        for speed in (6, 7, 8, 9, 10)
    ]
    found.append(
        (
            f"avif q{avif} speed 8, all cores",
            {"format": "AVIF", "quality": avif, "speed": 8},
        )
    )
    return found


def psnr(reference: Image.Image, data: bytes) -> float:
    decoded = Image.open(io.BytesIO(data)).convert("RGB")
    difference = ImageChops.difference(reference, decoded)
    mse = sum(ImageStat.Stat(difference).sum2) / (3 * reference.width * reference.height)
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def _encode(picture: Image.Image, options: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    picture.save(out, **options)
    return out.getvalue()


def main() -> None:
    picture = Image.open(Path(sys.argv[1])).convert("RGB")
    picture.load()
    rounds = int(sys.argv[2])
    chosen = settings()
    encoders: list[tuple[str, Callable[[], bytes]]] = []
    for name, options in chosen:
        encoders.append((name, functools.partial(_encode, picture, options)))
    report: dict[str, dict[str, Any]] = {}
    repeats: dict[str, int] = {}
    for name, encode in encoders:
        began = time.perf_counter()
        data = encode()
        # Fast encoders run several times per measurement, so that none lasts under 20 ms.
        repeats[name] = max(1, math.ceil(MEASUREMENT_SECONDS / (time.perf_counter() - began)))
        report[name] = {"bytes": len(data), "psnr": psnr(picture, data), "wall": [], "cpu": []}
    for _ in range(rounds):
        for name, encode in encoders:
            count = repeats[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(count):
                encode()
            report[name]["wall"].append((time.perf_counter() - wall) / count)
            report[name]["cpu"].append((time.process_time() - cpu) / count)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
