"""The transformation value object: what a user asks of an image, in one canonical form.

A request arrives as JSON in the seed's flat shape or in the roadmap.sh envelope
(``{"transformations": {..., "filters": {...}}}``). :func:`parse_transformation` accepts both and
returns one :class:`Transformation`; :meth:`Transformation.resolved` fills what depends on the
source (output format, default quality); :func:`canonical_form` encodes it with sorted keys and
without defaults, so that equivalent requests give the same bytes and :func:`derived_image_id`
the same id.

Operations always run in one order, whatever the order of the keys:
auto-orient, crop, resize, rotate, flip/mirror, filters, watermark, encode.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

import msgspec

from imgproc_core.domain.errors import CropOutsideImage, InvalidTransformation, OutputTooLarge
from imgproc_core.domain.formats import DEFAULT_QUALITY, LOSSY_FORMATS, output_format_for
from imgproc_core.domain.limits import Limits

OPERATION_ORDER: Final[tuple[str, ...]] = (
    "auto-orient",
    "crop",
    "resize",
    "rotate",
    "flip/mirror",
    "filters",
    "watermark",
    "encode",
)

Fit = Literal["contain", "cover", "fill"]
Position = Literal[
    "top-left",
    "top",
    "top-right",
    "left",
    "center",
    "right",
    "bottom-left",
    "bottom",
    "bottom-right",
]
FormatName = Literal["jpeg", "jpg", "png", "webp", "avif", "gif"]

Dimension = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Quality = Annotated[int, msgspec.Meta(ge=1, le=100)]
BlurRadius = Annotated[float, msgspec.Meta(ge=0, le=100)]
SharpenAmount = Annotated[float, msgspec.Meta(ge=0, le=10)]
Opacity = Annotated[float, msgspec.Meta(ge=0, le=1)]
WatermarkScale = Annotated[float, msgspec.Meta(gt=0, le=1)]
WatermarkText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ImageRef = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Degrees = Annotated[int, msgspec.Meta(ge=-3600, le=3600)]

_FORMAT_ALIASES: Final[dict[str, str]] = {"jpg": "jpeg"}


class _Value(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base of the value objects: immutable, strict about unknown keys, defaults left out."""


class Resize(_Value, frozen=True, kw_only=True):
    """Scale to a box. ``fit``: contain keeps the aspect inside the box (the default), cover fills
    the box and crops the overflow around the centre, fill stretches. One side alone keeps the
    aspect ratio."""

    width: Dimension | None = None
    height: Dimension | None = None
    fit: Fit = "contain"


class Crop(_Value, frozen=True, kw_only=True):
    """A rectangle of the upright source, in pixels from its top-left corner."""

    x: Offset = 0
    y: Offset = 0
    width: Dimension
    height: Dimension


class Watermark(_Value, frozen=True, kw_only=True):
    """A text, or another image of the same user, laid over the output.

    ``scale`` is the watermark's width as a fraction of the output's width (image), or the text
    height as a fraction of the output's shorter side divided by four (text).
    """

    text: WatermarkText | None = None
    image_id: ImageRef | None = None
    position: Position = "bottom-right"
    opacity: Opacity = 0.5
    scale: WatermarkScale = 0.25


class Filters(_Value, frozen=True, kw_only=True):
    """The roadmap.sh ``filters`` object; its keys mean the same as the flat ones."""

    grayscale: bool = False
    sepia: bool = False
    blur: BlurRadius = 0.0
    sharpen: SharpenAmount = 0.0


class TransformationRequest(_Value, frozen=True, kw_only=True):
    """The operations as a request names them, before filters are merged and aliases resolved.

    All optional, at least one required. They always run in one order: auto-orient, crop,
    resize, rotate, flip/mirror, filters, watermark, encode."""

    resize: Resize | None = None
    crop: Crop | None = None
    rotate: Degrees = 0
    flip: bool = False
    mirror: bool = False
    grayscale: bool = False
    sepia: bool = False
    blur: BlurRadius = 0.0
    sharpen: SharpenAmount = 0.0
    filters: Filters | None = None
    watermark: Watermark | None = None
    format: FormatName | None = None
    quality: Quality | None = None


class Transformation(_Value, frozen=True, kw_only=True):
    """What to do to an image. Build it with :func:`parse_transformation` or directly.

    ``flip`` turns the image upside down (top-bottom), ``mirror`` left-right. ``rotate`` is in
    degrees clockwise, a multiple of 90. ``blur`` is a Gaussian radius in pixels, ``sharpen`` an
    unsharp-mask strength from 0 to 10. ``quality`` applies to jpeg, webp and avif.
    """

    resize: Resize | None = None
    crop: Crop | None = None
    rotate: Degrees = 0
    flip: bool = False
    mirror: bool = False
    grayscale: bool = False
    sepia: bool = False
    blur: BlurRadius = 0.0
    sharpen: SharpenAmount = 0.0
    watermark: Watermark | None = None
    format: Literal["jpeg", "png", "webp", "avif", "gif"] | None = None
    quality: Quality | None = None

    def __post_init__(self) -> None:
        if self.resize is not None and self.resize.width is None and self.resize.height is None:
            raise InvalidTransformation("resize needs a width, a height or both", "resize")
        if self.rotate % 90:
            raise InvalidTransformation("rotate must be a multiple of 90 degrees", "rotate")
        if self.watermark is not None:
            has_text = self.watermark.text is not None
            has_image = self.watermark.image_id is not None
            if has_text == has_image:
                raise InvalidTransformation(
                    "watermark needs exactly one of text or image_id", "watermark"
                )

    @property
    def is_identity(self) -> bool:
        """True when nothing at all was asked for."""
        return self == Transformation()

    def resolved(self, source_format: str) -> Transformation:
        """The same transformation with what depends on the source made explicit.

        The output format defaults to the source's (PNG for TIFF and BMP), the quality to the
        format's default, and rotations are brought into [0, 360). Quality is dropped for
        lossless formats, where it means nothing.
        """
        output = self.format or output_format_for(source_format)
        quality = self.quality if output in LOSSY_FORMATS else None
        if output in LOSSY_FORMATS and quality is None:
            quality = DEFAULT_QUALITY[output]
        resize = self.resize
        if resize is not None and resize.fit != "contain" and None in (resize.width, resize.height):
            resize = msgspec.structs.replace(resize, fit="contain")
        return msgspec.structs.replace(
            self,
            format=output,
            quality=quality,
            rotate=self.rotate % 360,
            resize=resize,
        )

    @property
    def output_format(self) -> str:
        """The output format; only meaningful on a resolved transformation."""
        if self.format is None:
            raise InvalidTransformation("transformation is not resolved", "format")
        return self.format


def parse_transformation(body: bytes | str | Mapping[str, Any]) -> Transformation:
    """Parse a request body (flat, or the roadmap.sh envelope) into a :class:`Transformation`.

    Raises :class:`InvalidTransformation` naming the field for malformed JSON, unknown fields,
    wrong types, values out of range, conflicting filters, or an empty request.
    """
    raw: Any
    if isinstance(body, bytes | str):
        try:
            raw = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise InvalidTransformation(f"malformed JSON: {exc}") from None
    else:
        raw = dict(body)
    if not isinstance(raw, dict):
        raise InvalidTransformation("the transformation must be a JSON object")
    if set(raw) == {"transformations"}:
        raw = raw["transformations"]
        if not isinstance(raw, dict):
            raise InvalidTransformation("transformations must be a JSON object", "transformations")
    if not raw:
        raise InvalidTransformation("ask for at least one transformation")
    try:
        request = msgspec.convert(raw, TransformationRequest)
    except msgspec.ValidationError as exc:
        raise InvalidTransformation(str(exc), _field_of(str(exc))) from None
    return _from_request(request)


def _from_request(request: TransformationRequest) -> Transformation:
    filters = request.filters or Filters()
    blur = _merge_amount("blur", request.blur, filters.blur)
    sharpen = _merge_amount("sharpen", request.sharpen, filters.sharpen)
    fmt = _FORMAT_ALIASES.get(request.format, request.format) if request.format else None
    return Transformation(
        resize=request.resize,
        crop=request.crop,
        rotate=request.rotate,
        flip=request.flip,
        mirror=request.mirror,
        grayscale=request.grayscale or filters.grayscale,
        sepia=request.sepia or filters.sepia,
        blur=blur,
        sharpen=sharpen,
        watermark=request.watermark,
        format=fmt,  # type: ignore[arg-type]
        quality=request.quality,
    )


def _merge_amount(name: str, flat: float, nested: float) -> float:
    if flat and nested and flat != nested:
        raise InvalidTransformation(
            f"{name} is given twice with different values ({flat} and filters.{name}={nested})",
            name,
        )
    return flat or nested


_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `([^`]+)`")
_AT_PATH = re.compile(r" - at `\$\.?([^`]*)`")


def _field_of(message: str) -> str | None:
    """The dotted field a msgspec validation message points at, e.g. ``resize.width``."""
    path_match = _AT_PATH.search(message)
    path = path_match.group(1) if path_match else ""
    unknown = _NAMED_FIELD.search(message)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    return path or None


@functools.lru_cache(maxsize=1024)
def canonical_form(transformation: Transformation) -> bytes:
    """Sorted-key JSON without defaults: equal for equivalent transformations.

    Cached: it is asked for on every write of a derived image's row (equal transformations,
    however written, have one canonical form, so sharing an entry is right).

    Defaults are left out by value, not by identity as msgspec's ``omit_defaults`` does for
    floats (a ``0.0`` read from JSON is not the default's object, and would show up), and
    float fields are written as floats without a sign on zero, so ``1``, ``1.0``, ``0`` and
    ``-0.0`` each have one spelling.
    """
    typed = msgspec.convert(msgspec.to_builtins(transformation), Transformation)
    return msgspec.json.encode(_without_defaults(typed), order="sorted")


def _without_defaults(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {
            field.encode_name: _without_defaults(getattr(value, field.name))
            for field in _fields(type(value))
            if field.default is msgspec.NODEFAULT or getattr(value, field.name) != field.default
        }
    if isinstance(value, float):
        return value + 0.0
    return value


@functools.cache
def _fields(struct: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    # msgspec reads the type hints anew on every call.
    return msgspec.structs.fields(struct)


def derived_image_id(source_id: str, transformation: Transformation) -> str:
    """The id of the derivative of ``source_id`` made by ``transformation`` (resolved)."""
    digest = hashlib.sha256(source_id.encode() + b"\x00" + canonical_form(transformation))
    return digest.hexdigest()[:32]


# -- geometry ------------------------------------------------------------------------------------


def resized_size(width: int, height: int, resize: Resize) -> tuple[int, int]:
    """The size ``resize`` gives to a ``width`` x ``height`` image."""
    if resize.width is not None and resize.height is not None:
        if resize.fit == "contain":
            scale = min(resize.width / width, resize.height / height)
            return (
                min(resize.width, max(1, round(width * scale))),
                min(resize.height, max(1, round(height * scale))),
            )
        return resize.width, resize.height
    if resize.width is not None:
        return resize.width, max(1, round(height * resize.width / width))
    assert resize.height is not None
    return max(1, round(width * resize.height / height)), resize.height


def output_size(
    width: int, height: int, transformation: Transformation, limits: Limits
) -> tuple[int, int]:
    """The size of the output for an upright ``width`` x ``height`` source.

    Raises :class:`CropOutsideImage` when the crop leaves the source and :class:`OutputTooLarge`
    when a side of the output would pass ``limits.max_output_side``.
    """
    crop = transformation.crop
    if crop is not None:
        if crop.x + crop.width > width or crop.y + crop.height > height:
            raise CropOutsideImage(
                f"crop {crop.width}x{crop.height}+{crop.x}+{crop.y} leaves the "
                f"{width}x{height} image",
                "crop",
            )
        width, height = crop.width, crop.height
    if transformation.resize is not None:
        width, height = resized_size(width, height, transformation.resize)
    if transformation.rotate % 180:
        width, height = height, width
    side = limits.max_output_side
    if width > side or height > side:
        raise OutputTooLarge(
            f"the output would be {width}x{height}; each side is limited to {side} px",
            "resize" if transformation.resize is not None else None,
        )
    return width, height
