"""The jobs the benchmark times, each built once per process from its input bytes.

A job is a function of no arguments that does the whole of one piece of work (decode, resize,
encode, or whatever it names) and returns the bytes it produced. Jobs run in their own
processes (:mod:`bench.contestant`), so that each side of a comparison has its own allocator,
its own libraries and its own settings.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Final

# Pillow before pyvips, always: importing pyvips first makes Pillow bind the system's older
# libjpeg.
from PIL import Image

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Resize, Transformation

Job = Callable[[], bytes]
JobFactory = Callable[[bytes], Job]

#: The output every resize job makes: 800x600, JPEG quality 85 (4:2:0, baseline).
WIDTH: Final = 800
HEIGHT: Final = 600
QUALITY: Final = 85


def engine_job(transformation: Transformation) -> JobFactory:
    def factory(data: bytes) -> Job:
        codec = PillowImageCodec()
        limits = Limits()
        source_format = codec.probe(data, limits).format
        resolved = transformation.resolved(source_format)
        return lambda: codec.transform(data, resolved, limits).data

    return factory


def resize_to(fmt: str, quality: int | None = None) -> Transformation:
    return Transformation(resize=Resize(width=WIDTH, height=HEIGHT), format=fmt, quality=quality)  # type: ignore[arg-type]


def naive_resize(data: bytes) -> Job:
    """What a first script does: open, Lanczos to the size, save."""

    def job() -> bytes:
        image = Image.open(io.BytesIO(data))
        resized = image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        resized.save(out, "JPEG", quality=QUALITY)
        return out.getvalue()

    return job


def vips_resize(data: bytes) -> Job:
    """libvips's thumbnail: shrink-on-load, then its own Lanczos; metadata stripped as ours."""
    import pyvips

    def job() -> bytes:
        thumbnail = pyvips.Image.thumbnail_buffer(data, WIDTH, height=HEIGHT)
        return thumbnail.write_to_buffer(".jpg", Q=QUALITY, strip=True)  # type: ignore[no-any-return]

    return job


def full_decode(data: bytes) -> Job:
    def job() -> bytes:
        image = Image.open(io.BytesIO(data))
        image.load()
        return b""

    return job


def pillow_quarter_encode(data: bytes) -> Job:
    """tjbench's model in Pillow: decode at 1/4 scale, encode an 800x600 part of it."""

    def job() -> bytes:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (image.width // 4, image.height // 4))
        image.load()
        out = io.BytesIO()
        image.crop((0, 0, WIDTH, HEIGHT)).save(out, "JPEG", quality=QUALITY)
        return out.getvalue()

    return job


JOBS: Final[dict[str, JobFactory]] = {
    "engine-resize": engine_job(resize_to("jpeg", QUALITY)),
    "engine-resize-webp": engine_job(resize_to("webp")),
    "engine-resize-avif": engine_job(resize_to("avif")),
    "engine-flip": engine_job(Transformation(flip=True, format="jpeg", quality=QUALITY)),
    "naive-resize": naive_resize,
    "vips-resize": vips_resize,
    "full-decode": full_decode,
    "pillow-quarter-encode": pillow_quarter_encode,
}
