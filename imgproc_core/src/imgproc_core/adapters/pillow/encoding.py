"""Write the output formats, with nothing but the pixels (and the animation's timing).

No metadata reaches an output: every frame's ``info`` (where Pillow's encoders look for EXIF, XMP,
comments, text chunks and the ICC profile when they are not given one) is emptied first, and
``exif=b""`` is passed to the encoders that take it. Colours are already sRGB (see ``colour``).

Encoder settings, chosen for a service that encodes on demand:

- JPEG: ``optimize`` off (Huffman optimisation more than doubles the encode for about 1 % of
  size), baseline, 4:2:0 chroma (libjpeg's default).
- PNG: zlib level 6 (Pillow's default): level 1 halves the time but derived images are written
  once and served many times.
- WebP: ``method=2``, about 14x a JPEG encode at 800x600. Method 4 (libwebp's default) takes
  twice as long for files 3-5 % smaller at the same PSNR; methods 0 and 1 save a fifth of the
  time but are up to 10 % larger on some pictures.
- AVIF: ``speed=9``, about 23x a JPEG encode at 800x600. Speed 8 takes 3.5-4x as long for files
  2.5-3.5 % smaller (0.1-0.3 dB PSNR better); speed 6 (Pillow's default) 8-10x as long for
  5-8 % smaller; speed 10 gives the same output as 9 with this libaom. (docs/benchmarks.md has
  the measurements.)
- GIF: an adaptive palette per frame by fast octree quantisation (median cut is ~60x slower for
  a small gain on a format kept for compatibility), one palette entry for full transparency.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image

from imgproc_core.adapters.pillow.colour import ALPHA_MODES, drop_opaque_alpha, flatten
from imgproc_core.domain.errors import CorruptImage, OutputTooLarge

#: The largest side each format can store.
MAX_SIDE: Final[dict[str, int]] = {
    "jpeg": 65_500,
    "png": 2**31 - 1,
    "webp": 16_383,
    "avif": 65_536,
    "gif": 65_535,
}

WEBP_METHOD: Final = 2
AVIF_SPEED: Final = 9
PNG_COMPRESS_LEVEL: Final = 6
_GIF_COLOURS: Final = 255
_GIF_TRANSPARENT_INDEX: Final = 255
#: GIF transparency is all or nothing: pixels under half opacity become transparent.
_GIF_ALPHA_THRESHOLD: Final = 128
#: Frames without a duration are shown for 100 ms, as browsers do.
DEFAULT_FRAME_MS: Final = 100


@dataclass(frozen=True, slots=True)
class Animation:
    """Timing of an animated output: one duration (ms) per frame, and the loop count (0 =
    forever, None = play once, as a GIF without a loop extension)."""

    durations: Sequence[int]
    loop: int | None


def check_side(fmt: str, size: tuple[int, int]) -> None:
    limit = MAX_SIDE[fmt]
    if max(size) > limit:
        raise OutputTooLarge(
            f"{fmt} stores at most {limit} px a side; the output would be {size[0]}x{size[1]}"
        )


def encode(
    frames: Sequence[Image.Image],
    fmt: str,
    quality: int | None,
    animation: Animation | None = None,
) -> bytes:
    """Encode ``frames`` (L, LA, RGB or RGBA; several only with ``animation``) as ``fmt``."""
    prepared = [_for_format(frame, fmt) for frame in frames]
    options = _options(fmt, quality)
    if animation is not None and len(prepared) > 1:
        options.update(_animation_options(fmt, prepared, animation))
    buffer = io.BytesIO()
    try:
        prepared[0].save(buffer, _PILLOW_NAMES[fmt], **options)
    except MemoryError as exc:
        raise OutputTooLarge(f"the {fmt} output does not fit in memory") from exc
    except (OSError, ValueError) as exc:
        # The pixels and sizes are valid by now, so this is the encoder refusing its input.
        raise CorruptImage(f"the image could not be encoded as {fmt}: {exc}") from exc
    return buffer.getvalue()


_PILLOW_NAMES: Final[dict[str, str]] = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "avif": "AVIF",
    "gif": "GIF",
}


def _options(fmt: str, quality: int | None) -> dict[str, Any]:
    if fmt == "jpeg":
        return {"quality": quality, "optimize": False, "progressive": False, "exif": b""}
    if fmt == "png":
        return {"compress_level": PNG_COMPRESS_LEVEL, "optimize": False, "exif": b""}
    if fmt == "webp":
        return {"quality": quality, "method": WEBP_METHOD, "exif": b"", "xmp": b""}
    if fmt == "avif":
        return {"quality": quality, "speed": AVIF_SPEED, "exif": b"", "xmp": b""}
    return {}


def _animation_options(
    fmt: str, frames: Sequence[Image.Image], animation: Animation
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "save_all": True,
        "append_images": list(frames[1:]),
        "duration": list(animation.durations),
    }
    if fmt == "gif":
        if animation.loop is not None:
            options["loop"] = animation.loop
        # Frames are whole pictures: each replaces the last, so transparent pixels must not let
        # the previous frame show through.
        if any("transparency" in frame.info for frame in frames):
            options["disposal"] = 2
    else:
        # WebP always stores a loop count: "once" is 1.
        options["loop"] = 1 if animation.loop is None else animation.loop
        if any(frame.mode in ALPHA_MODES for frame in frames):
            # libwebp crops each frame to what changed; when that leaves only opaque pixels it
            # drops the file's alpha flag, and decoders then paint the transparent canvas black.
            # Whole frames (every frame a key frame) keep the flag.
            options.update(kmin=0, kmax=1)
    return options


def _for_format(image: Image.Image, fmt: str) -> Image.Image:
    """``image`` in a mode ``fmt`` stores, its ``info`` emptied of everything but GIF
    transparency. The caller hands over images it owns (never a decoder's shared frame)."""
    if fmt == "jpeg":
        image = flatten(image)
    elif fmt == "gif":
        image = drop_opaque_alpha(image)
        transparent = _transparent_pixels(image)
        image = _palette(image, transparent)
        image.info = {}
        if transparent is not None:
            image.paste(_GIF_TRANSPARENT_INDEX, (0, 0, *image.size), transparent)
            image.info["transparency"] = _GIF_TRANSPARENT_INDEX
        return image
    else:
        image = drop_opaque_alpha(image)
        if fmt in {"webp", "avif"} and image.mode == "LA":
            image = image.convert("RGBA")
        elif fmt == "webp" and image.mode == "L":
            image = image.convert("RGB")
    image.info = {}
    return image


def _transparent_pixels(image: Image.Image) -> Image.Image | None:
    """A mask of the pixels a GIF must leave transparent, or None when there are none."""
    if image.mode not in ALPHA_MODES:
        return None
    mask = image.getchannel("A").point(lambda value: 255 if value < _GIF_ALPHA_THRESHOLD else 0)
    return mask if mask.getbbox() is not None else None


def _palette(image: Image.Image, transparent: Image.Image | None) -> Image.Image:
    if image.mode == "L" and transparent is None:
        return image
    # Index 255 stays free for transparency: at most 255 colours.
    return image.convert("RGB").quantize(_GIF_COLOURS, method=Image.Quantize.FASTOCTREE)
