"""An image codec without Pillow, for tests: it reads and writes a synthetic format.

A fake image is ``b"IMGPROC-FAKE\\n"`` followed by a JSON object ``{"format", "width", "height",
"frames"}``; :func:`fake_image_bytes` makes one. :class:`InMemoryImageCodec` applies the same limits
and the same geometry (:func:`~imgproc_core.domain.transformations.output_size`) as the real codec,
and answers a transform with another fake image of the output's format and size.
"""

from __future__ import annotations

from typing import Final

import msgspec

from imgproc_core.domain.errors import (
    CorruptImage,
    DecompressionBomb,
    OutputTooLarge,
    TooManyFrames,
    UnsupportedImageType,
    WatermarkNotFound,
)
from imgproc_core.domain.formats import ANIMATED_FORMATS, INPUT_FORMATS, MEDIA_TYPES
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation, output_size
from imgproc_core.ports.codec import EncodedImage, ImageInfo

MAGIC: Final = b"IMGPROC-FAKE\n"


class _FakeImage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    width: int
    height: int
    frames: int = 1
    transparent: bool = False


def fake_image_bytes(
    format: str, width: int, height: int, frames: int = 1, *, transparent: bool = False
) -> bytes:
    """The bytes of a fake image that :class:`InMemoryImageCodec` reads."""
    return MAGIC + msgspec.json.encode(_FakeImage(format, width, height, frames, transparent))


class InMemoryImageCodec:
    """The :class:`~imgproc_core.ports.codec.ImageCodec` port on fake images.

    Like the real codec, a source (and an animated output) counts as ``width * height * frames``
    pixels against ``limits.max_pixels``, and frames are kept only when the output format
    animates.
    """

    def probe(self, data: bytes, limits: Limits) -> ImageInfo:
        image = _read(data, limits, "image")
        return ImageInfo(
            format=image.format,
            mimetype=MEDIA_TYPES[image.format],
            width=image.width,
            height=image.height,
            frames=image.frames,
            transparent=image.transparent,
        )

    def transform(
        self,
        data: bytes,
        transformation: Transformation,
        limits: Limits,
        watermark: bytes | None = None,
    ) -> EncodedImage:
        source = _read(data, limits, "image")
        resolved = transformation.resolved(source.format)
        fmt = resolved.output_format
        width, height = output_size(source.width, source.height, resolved, limits)
        spec = resolved.watermark
        if spec is not None and spec.image_id is not None:
            if watermark is None:
                raise WatermarkNotFound(
                    "the watermark image was not provided", "watermark.image_id"
                )
            _read(watermark, limits, "watermark image")
        frames = source.frames if fmt in ANIMATED_FORMATS else 1
        if frames > 1 and width * height * frames > limits.max_pixels:
            raise OutputTooLarge(
                f"{frames} frames of {width}x{height} are more pixels than an animation may have",
                "resize",
            )
        return EncodedImage(
            data=fake_image_bytes(fmt, width, height, frames),
            format=fmt,
            mimetype=MEDIA_TYPES[fmt],
            width=width,
            height=height,
            frames=frames,
        )


def _read(data: bytes, limits: Limits, what: str) -> _FakeImage:
    if not data.startswith(MAGIC):
        raise UnsupportedImageType(f"the {what} is not a fake image")
    try:
        image = msgspec.json.decode(data[len(MAGIC) :], type=_FakeImage)
    except msgspec.DecodeError as exc:
        raise CorruptImage(f"the {what} is truncated or corrupt: {exc}") from exc
    if image.format not in INPUT_FORMATS:
        raise UnsupportedImageType(f"the {what} has the unsupported type {image.format!r}")
    if image.width <= 0 or image.height <= 0 or image.frames <= 0:
        raise CorruptImage(f"the {what} claims a size of {image.width}x{image.height}")
    if image.frames > limits.max_frames:
        raise TooManyFrames(
            f"the {what} has {image.frames} frames; at most {limits.max_frames} are accepted"
        )
    pixels = image.width * image.height * image.frames
    if pixels > limits.max_pixels:
        raise DecompressionBomb(
            f"the {what} has {pixels} pixels; at most {limits.max_pixels} are accepted"
        )
    return image
