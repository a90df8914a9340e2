"""Image formats the service reads and writes, with their media types and file extensions."""

from __future__ import annotations

from typing import Final, Literal

InputFormat = Literal["jpeg", "png", "webp", "gif", "avif", "tiff", "bmp", "heic"]
OutputFormat = Literal["jpeg", "png", "webp", "avif", "gif"]

INPUT_FORMATS: Final[frozenset[str]] = frozenset(
    {"jpeg", "png", "webp", "gif", "avif", "tiff", "bmp", "heic"}
)
OUTPUT_FORMATS: Final[frozenset[str]] = frozenset({"jpeg", "png", "webp", "avif", "gif"})
LOSSY_FORMATS: Final[frozenset[str]] = frozenset({"jpeg", "webp", "avif"})
ANIMATED_FORMATS: Final[frozenset[str]] = frozenset({"gif", "webp"})

MEDIA_TYPES: Final[dict[str, str]] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "gif": "image/gif",
    "avif": "image/avif",
    "tiff": "image/tiff",
    "bmp": "image/bmp",
    "heic": "image/heic",
}

EXTENSIONS: Final[dict[str, str]] = {
    "jpeg": "jpg",
    "png": "png",
    "webp": "webp",
    "gif": "gif",
    "avif": "avif",
    "tiff": "tiff",
    "bmp": "bmp",
    "heic": "heic",
}

#: The quality a lossy encoder uses when the request names none. Part of the canonical form, so
#: ``{"format": "jpeg"}`` and ``{"format": "jpeg", "quality": 85}`` are the same derivative.
DEFAULT_QUALITY: Final[dict[str, int]] = {"jpeg": 85, "webp": 80, "avif": 60}


#: What a derivative of a source in a format the service does not write is made in, when the
#: request names no format: a photograph's (HEIC, from phones) stays a lossy photograph.
_UNWRITABLE_SOURCES: Final[dict[str, str]] = {"heic": "jpeg"}


def output_format_for(source_format: str) -> str:
    """The format a derivative keeps when the request names none: the source's, if writable;
    JPEG for a HEIC photograph; else PNG (TIFF, BMP)."""
    if source_format in OUTPUT_FORMATS:
        return source_format
    return _UNWRITABLE_SOURCES.get(source_format, "png")
