"""The :class:`~imgproc_core.ports.codec.ImageCodec` port on Pillow."""

from __future__ import annotations

import math
from typing import Final

from PIL import Image

from imgproc_core.adapters.pillow.colour import geometry_mode, to_srgb
from imgproc_core.adapters.pillow.decoding import (
    Source,
    check_integrity,
    decoding,
    open_source,
    verify_png,
)
from imgproc_core.adapters.pillow.encoding import DEFAULT_FRAME_MS, Animation, check_side, encode
from imgproc_core.adapters.pillow.geometry import (
    Box,
    Plan,
    Size,
    crop_and_resize,
    rotate_and_flip,
    upright,
)
from imgproc_core.adapters.pillow.operations import (
    Overlay,
    apply_filters,
    image_overlay,
    text_overlay,
)
from imgproc_core.domain.errors import OutputTooLarge, WatermarkNotFound
from imgproc_core.domain.formats import ANIMATED_FORMATS, MEDIA_TYPES
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation, Watermark, output_size
from imgproc_core.ports.codec import EncodedImage, ImageInfo

_WATERMARK: Final = "watermark image"
#: Pillow's modes with an alpha channel.
_ALPHA_MODES: Final = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class PillowImageCodec:
    """Probe and transform images with Pillow, behind the service's guards.

    Each call opens its own decoder and keeps no state between calls, so one instance can be
    shared by threads. Operations run in the domain's fixed order (auto-orient, crop, resize,
    rotate, flip/mirror, filters, watermark, encode); internally, crop and resize are one
    resampling pass made before the EXIF orientation is applied, on the stored pixels, which is
    the same picture at a fraction of the cost (see ``geometry``).

    A source counts as ``width * height * frames`` pixels against ``limits.max_pixels``, and so
    does an animated output: an animation is decoded frame by frame and kept whole for the
    encoder.
    """

    def probe(self, data: bytes, limits: Limits) -> ImageInfo:
        source = open_source(data, limits)
        check_integrity(source, data)
        width, height = source.upright_size
        return ImageInfo(
            format=source.format,
            mimetype=MEDIA_TYPES[source.format],
            width=width,
            height=height,
            frames=source.frames,
            transparent=source.image.mode in _ALPHA_MODES or "transparency" in source.image.info,
        )

    def transform(
        self,
        data: bytes,
        transformation: Transformation,
        limits: Limits,
        watermark: bytes | None = None,
    ) -> EncodedImage:
        source = open_source(data, limits)
        # Idempotent on a resolved transformation; fills the format and quality otherwise.
        resolved = transformation.resolved(source.format)
        fmt = resolved.output_format
        size = output_size(*source.upright_size, resolved, limits)
        check_side(fmt, size)
        if source.format == "png":
            # Probe refuses a PNG whose chunks fail their CRC; so does transform.
            verify_png(data)
        animated = source.frames > 1 and fmt in ANIMATED_FORMATS
        if animated:
            _check_animation_size(size, source.frames, limits)
        overlay = _overlay(resolved.watermark, watermark, size, limits)
        plan = Plan.of(*source.upright_size, resolved)
        try:
            if animated:
                frames, animation = _render_animation(source, plan, resolved, overlay)
            else:
                frames, animation = [_render_still(source, plan, resolved, overlay)], None
            encoded = encode(frames, fmt, resolved.quality, animation)
        except MemoryError as exc:
            raise OutputTooLarge(
                f"a {size[0]}x{size[1]} output does not fit in memory", "resize"
            ) from exc
        return EncodedImage(
            data=encoded,
            format=fmt,
            mimetype=MEDIA_TYPES[fmt],
            width=size[0],
            height=size[1],
            frames=len(frames),
        )


def _check_animation_size(size: Size, frames: int, limits: Limits) -> None:
    # Every frame of an animation is held in memory until the encoder has them all: the pixel
    # limit applies to the output as a whole, as it does to the source.
    pixels = size[0] * size[1] * frames
    if pixels > limits.max_pixels:
        raise OutputTooLarge(
            f"{frames} frames of {size[0]}x{size[1]} are {pixels} pixels; "
            f"an animation is limited to {limits.max_pixels}",
            "resize",
        )


def _render_still(
    source: Source, plan: Plan, transformation: Transformation, overlay: Overlay | None
) -> Image.Image:
    image = source.image
    box, target = plan.stored(source.orientation, source.stored_size)
    if source.format == "jpeg":
        # Cropping and draft mode combine: the crop box is scaled with the decoded image.
        box = _draft(source, box, plan.draft_request(source.orientation, source.stored_size))
    with decoding("image"):
        image.load()
    return _render(image, source, box, target, plan, transformation, overlay)


def _draft(source: Source, box: Box, request: Size | None) -> Box:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when ``request`` allows; ``box`` follows."""
    if request is None:
        return box
    image = source.image
    with decoding("image"):
        drafted = image.draft(image.mode, request)
    if drafted is None:
        return box
    # Pillow reports the original extent in the decoded image's coordinates.
    factor = drafted[1][2] / source.stored_size[0]
    return box[0] * factor, box[1] * factor, box[2] * factor, box[3] * factor


def _render_animation(
    source: Source, plan: Plan, transformation: Transformation, overlay: Overlay | None
) -> tuple[list[Image.Image], Animation]:
    image = source.image
    loop = image.info.get("loop")
    box, target = plan.stored(source.orientation, source.stored_size)
    frames: list[Image.Image] = []
    durations: list[int] = []
    for index in range(source.frames):
        with decoding("image"):
            image.seek(index)
            image.load()
        durations.append(_duration(image.info.get("duration")))
        rendered = _render(image, source, box, target, plan, transformation, overlay)
        # The decoder reuses its frame buffer on the next seek: keep a copy of our own.
        frames.append(image.copy() if rendered is image else rendered)
    return frames, Animation(durations, loop if isinstance(loop, int) else None)


def _duration(value: object) -> int:
    # Kept as stored, zero included (browsers show a 0 ms frame for 100 ms, as they do the
    # source); only a frame without any duration gets the default.
    if isinstance(value, int | float) and value >= 0:
        return round(value)
    return DEFAULT_FRAME_MS


def _render(
    frame: Image.Image,
    source: Source,
    box: Box,
    target: Size,
    plan: Plan,
    transformation: Transformation,
    overlay: Overlay | None,
) -> Image.Image:
    image = geometry_mode(frame)
    image = crop_and_resize(image, box, target, plan.resample)
    image = upright(image, source.orientation)
    image = to_srgb(image, source.icc_profile)
    image = rotate_and_flip(image, transformation)
    image = apply_filters(image, transformation)
    if overlay is not None:
        image = overlay.apply(image)
    return image


def _overlay(
    spec: Watermark | None, data: bytes | None, size: Size, limits: Limits
) -> Overlay | None:
    if spec is None:
        return None
    if spec.text is not None:
        return text_overlay(spec.text, spec, size)
    if data is None:
        raise WatermarkNotFound("the watermark image was not provided", "watermark.image_id")
    return image_overlay(_watermark_image(data, spec, size, limits), spec, size)


def _watermark_image(data: bytes, spec: Watermark, size: Size, limits: Limits) -> Image.Image:
    """The watermark's first frame, upright and in sRGB, decoded with the same guards."""
    source = open_source(data, limits, _WATERMARK)
    if source.format == "png":
        verify_png(data, _WATERMARK)
    image = source.image
    if source.format == "jpeg":
        upright_width = source.upright_size[0]
        needed = 2 * spec.scale * size[0] / upright_width
        if needed <= 0.5:
            stored_width, stored_height = source.stored_size
            request = (
                max(1, math.ceil(stored_width * needed)),
                max(1, math.ceil(stored_height * needed)),
            )
            with decoding(_WATERMARK):
                image.draft(image.mode, request)
    with decoding(_WATERMARK):
        image.load()
    mark = upright(geometry_mode(image), source.orientation)
    return to_srgb(mark, source.icc_profile)
