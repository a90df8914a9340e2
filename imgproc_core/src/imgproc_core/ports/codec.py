from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an upload is, read from its bytes. ``width`` and ``height`` are upright (after the
    EXIF orientation), so crops are in the coordinates a person sees."""

    format: str
    mimetype: str
    width: int
    height: int
    frames: int = 1
    #: Whether the image may have transparent pixels (an alpha channel, or a transparent
    #: palette entry or colour key): what ``"format": "auto"`` keeps by choosing PNG over JPEG.
    transparent: bool = False


@dataclass(frozen=True, slots=True)
class EncodedImage:
    data: bytes
    format: str
    mimetype: str
    width: int
    height: int
    frames: int = 1


class ImageCodec(Protocol):
    def probe(self, data: bytes, limits: Limits) -> ImageInfo:
        """Identify and check an image without decoding more than needed.

        Raises UnsupportedImageType (magic bytes not on the allow-list), DecompressionBomb (too
        many pixels, read from the header), TooManyFrames, CorruptImage (truncated or undecodable).
        """
        ...

    def transform(
        self,
        data: bytes,
        transformation: Transformation,
        limits: Limits,
        watermark: bytes | None = None,
    ) -> EncodedImage:
        """Apply a resolved ``transformation`` to ``data``; ``watermark`` holds the bytes of the
        watermark image when the transformation names one. Raises the errors of :meth:`probe`,
        CropOutsideImage and OutputTooLarge; never a decoder's own exception."""
        ...
