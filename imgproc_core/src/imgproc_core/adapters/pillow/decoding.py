"""Open untrusted bytes with Pillow behind the service's guards.

Every call into a decoder goes through :func:`decoding`, which turns the decoder's own failures into
domain errors. The guards run in the order that keeps hostile input cheap: magic bytes, then the
header (size and frame count, no pixels), then the limits, and only then any decoding.

Pillow's own decompression-bomb check (``Image.MAX_IMAGE_PIXELS``) is left as the application set
it: it is process-wide and not this adapter's to change. Our limit is checked right after
``Image.open``; when Pillow's check fires first (an image above twice its limit, or above its limit
in a process that turns warnings into errors), it is reported as the same
:class:`DecompressionBomb`. Between Pillow's limit and twice it, Pillow only warns, and our own
check (50 MP by default) refuses the image right after.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from imgproc_core.adapters.pillow.jpeg_structure import check_jpeg_structure
from imgproc_core.adapters.pillow.sniff import sniff_format
from imgproc_core.domain.errors import (
    CorruptImage,
    DecompressionBomb,
    TooManyFrames,
    UnsupportedImageType,
)
from imgproc_core.domain.limits import Limits

#: Pillow's names for the allow-listed formats; ``Image.open`` tries only the sniffed one.
PILLOW_FORMATS: Final[dict[str, str]] = {
    "jpeg": "JPEG",
    "png": "PNG",
    "gif": "GIF",
    "webp": "WEBP",
    "avif": "AVIF",
    "tiff": "TIFF",
    "bmp": "BMP",
    "heic": "HEIF",
}

#: Formats whose extra frames are an animation. A multi-page TIFF or an MPO's second picture is
#: not: only their first image is ever used, so they count as one frame.
_ANIMATABLE: Final = frozenset({"gif", "webp", "png", "avif"})

#: What a Pillow decoder raises on malformed input. Besides OSError (truncated data, decoder
#: errors) and SyntaxError (bad headers), plugins let struct, zlib, index, key and type errors
#: out of their parsers (``Image.open`` itself treats several of these as "not this format"), the
#: AVIF binding reports failures as RuntimeError, and a process that turns warnings into errors
#: gets the decoders' complaints ("Corrupt EXIF data", "Truncated File Read") as exceptions.
#: Only calls into a decoder are wrapped with this list, never the adapter's own code.
_DECODER_ERRORS: Final = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
    RuntimeError,
    Warning,
)


#: Orientations 5 to 8 turn the image a quarter, so width and height swap.
_SWAPPING_ORIENTATIONS: Final = frozenset({5, 6, 7, 8})


def _register_heif() -> None:
    """Teach Pillow HEIC and HEIF (pillow-heif's plugin, the ``heif`` extra), once; without
    the extra a HEIC upload is an unsupported type."""
    global _heif_registered
    if _heif_registered:
        return
    try:
        import pillow_heif
    except ImportError:
        raise UnsupportedImageType(
            "HEIC is not accepted here: the service runs without its decoder"
        ) from None
    # No thumbnails: the size is the primary image's, as its header says.
    pillow_heif.register_heif_opener(thumbnails=False)
    _heif_registered = True


_heif_registered = False


@contextmanager
def decoding(what: str) -> Iterator[None]:
    """Run a decoder call; its failures leave as domain errors about ``what``."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecompressionBomb(f"the {what} has too many pixels to decode") from exc
    except MemoryError as exc:
        raise DecompressionBomb(f"the {what} does not fit in memory") from exc
    except UnidentifiedImageError as exc:
        raise CorruptImage(f"the {what} is truncated or corrupt: its header is unreadable") from exc
    except _DECODER_ERRORS as exc:
        raise CorruptImage(f"the {what} is truncated or corrupt: {exc}") from exc


@dataclass(slots=True)
class Source:
    """An opened image: header read, limits checked, no pixels decoded yet."""

    image: ImageFile.ImageFile
    format: str
    frames: int
    orientation: int
    #: Width and height as the pixels are stored, before the EXIF orientation, read from the
    #: header (JPEG draft mode later changes ``image.size``).
    stored_size: tuple[int, int]

    @property
    def upright_size(self) -> tuple[int, int]:
        """Width and height as a person sees the image, after the EXIF orientation."""
        width, height = self.stored_size
        if self.orientation in _SWAPPING_ORIENTATIONS:
            return height, width
        return width, height

    @property
    def swaps_axes(self) -> bool:
        return self.orientation in _SWAPPING_ORIENTATIONS

    @property
    def icc_profile(self) -> bytes | None:
        profile = self.image.info.get("icc_profile")
        return profile if isinstance(profile, bytes) and profile else None


def open_source(data: bytes, limits: Limits, what: str = "image") -> Source:
    """Sniff, open and check ``data`` against ``limits`` without decoding any pixel.

    Raises UnsupportedImageType, DecompressionBomb, TooManyFrames or CorruptImage.
    """
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImageType(
            f"the {what} is not one of the accepted types "
            "(JPEG, PNG, WebP, GIF, AVIF, TIFF, BMP, HEIC)"
        )
    if fmt == "heic":
        _register_heif()
    with decoding(what):
        image = Image.open(io.BytesIO(data), formats=[PILLOW_FORMATS[fmt]])
    width, height = image.size
    _check_pixels(width, height, 1, limits, what)
    frames = count_frames(image, fmt, what)
    if frames > limits.max_frames:
        raise TooManyFrames(
            f"the {what} has {frames} frames; at most {limits.max_frames} are accepted"
        )
    _check_pixels(width, height, frames, limits, what)
    if fmt == "png":
        _widen_grey_colour_key(image, data)
    return Source(
        image=image,
        format=fmt,
        frames=frames,
        orientation=read_orientation(image, fmt),
        stored_size=(width, height),
    )


def count_frames(image: Image.Image, fmt: str, what: str) -> int:
    if fmt not in _ANIMATABLE:
        return 1
    with decoding(what):
        frames = getattr(image, "n_frames", 1)
    return frames if isinstance(frames, int) and frames > 0 else 1


def _check_pixels(width: int, height: int, frames: int, limits: Limits, what: str) -> None:
    # An animation is decoded frame after frame and kept whole for the encoder, so every frame
    # counts: a small file of many large frames is the same bomb as one huge frame.
    pixels = width * height * frames
    if width <= 0 or height <= 0:
        raise CorruptImage(f"the {what} claims a size of {width}x{height}")
    if pixels > limits.max_pixels:
        frames_note = f" in {frames} frames" if frames > 1 else ""
        raise DecompressionBomb(
            f"the {what} is {width}x{height}{frames_note}, {pixels} pixels; "
            f"at most {limits.max_pixels} are accepted"
        )


def _widen_grey_colour_key(image: Image.Image, data: bytes) -> None:
    """Pillow widens 2 and 4-bit grey samples to 8 bits but leaves their tRNS colour key as
    stored, so the key would match the wrong grey; widen it the same way. (1-bit grey opens in
    mode "1", whose key Pillow already widens.)"""
    depth, colour_type = data[24], data[25]  # IHDR is the first chunk, always
    key = image.info.get("transparency")
    if image.mode == "L" and colour_type == 0 and depth in {2, 4} and isinstance(key, int):
        image.info["transparency"] = key * (255 // ((1 << depth) - 1))


#: Broken EXIF is common in real photographs and says nothing about the pixels; an unreadable
#: orientation means "as stored".
_METADATA_ERRORS: Final = (*_DECODER_ERRORS, UnicodeDecodeError, AttributeError)


def read_orientation(image: Image.Image, fmt: str) -> int:
    """The EXIF orientation (1 to 8) known from the header, 1 when absent or broken.

    A PNG's eXIf chunk may follow the pixel data; asking Pillow for it would decode the whole
    image, so only a chunk already read with the header counts. Probe and transform use this same
    answer, so the size a probe reports is the size a transform works with.
    """
    if fmt in {"gif", "bmp"}:
        return 1
    if fmt == "png" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except _METADATA_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def check_integrity(source: Source, data: bytes, what: str = "image") -> None:
    """Detect truncated or corrupt data at a fraction of a full decode.

    JPEG: a walk over its markers from start to end of image (:mod:`.jpeg_structure`), no
    decoding. PNG: every chunk's CRC and the IEND marker, without inflating anything. The other
    formats are decoded (their first frame).
    """
    if source.format == "jpeg":
        check_jpeg_structure(data, what)
        return
    image = source.image
    with decoding(what):
        if source.format == "png":
            verify_png(data, what)
        else:
            image.load()


def verify_png(data: bytes, what: str = "image") -> None:
    """Check a PNG's chunk CRCs on a separate handle (``verify`` leaves its image unusable)."""
    with decoding(what):
        Image.open(io.BytesIO(data), formats=["PNG"]).verify()
