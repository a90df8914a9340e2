"""Filters and watermarks, on images already in L, LA, RGB or RGBA with sRGB colours."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from imgproc_core.adapters.pillow.colour import ALPHA_MODES
from imgproc_core.adapters.pillow.geometry import REDUCING_GAP, RESAMPLE
from imgproc_core.domain.transformations import Transformation, Watermark

#: The classic sepia tone matrix (Microsoft's), as a 12-tuple for ``Image.convert``.
_SEPIA: Final = (
    0.393, 0.769, 0.189, 0.0,
    0.349, 0.686, 0.168, 0.0,
    0.272, 0.534, 0.131, 0.0,
)  # fmt: skip

#: ``sharpen`` runs from 0 to 10; 1 is a gentle 50 % unsharp mask, 10 a heavy 500 %.
_SHARPEN_PERCENT_PER_UNIT: Final = 50
_SHARPEN_RADIUS: Final = 2.0
_SHARPEN_THRESHOLD: Final = 2

#: The gap between a watermark and the output's edge, as a fraction of its shorter side.
_MARGIN: Final = 0.03
_TEXT_FILL: Final = (255, 255, 255, 255)
_TEXT_OUTLINE: Final = (0, 0, 0, 255)

_Font = ImageFont.ImageFont | ImageFont.FreeTypeFont | ImageFont.TransposedFont


def apply_filters(image: Image.Image, transformation: Transformation) -> Image.Image:
    """Grayscale, sepia, blur and sharpen, in that order."""
    if transformation.grayscale:
        image = _grayscale(image)
    if transformation.sepia:
        image = _sepia(image)
    if transformation.blur > 0:
        image = _filter_premultiplied(image, ImageFilter.GaussianBlur(transformation.blur))
    if transformation.sharpen > 0:
        percent = round(transformation.sharpen * _SHARPEN_PERCENT_PER_UNIT)
        mask = ImageFilter.UnsharpMask(_SHARPEN_RADIUS, percent, _SHARPEN_THRESHOLD)
        image = _filter_premultiplied(image, mask)
    return image


def _grayscale(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image.convert("L")
    if image.mode == "RGBA":
        return image.convert("LA")
    return image


def _sepia(image: Image.Image) -> Image.Image:
    alpha = image.getchannel("A") if image.mode in ALPHA_MODES else None
    toned = image.convert("RGB").convert("RGB", _SEPIA)
    if alpha is not None:
        toned.putalpha(alpha)
    return toned


def _filter_premultiplied(image: Image.Image, kernel: ImageFilter.Filter) -> Image.Image:
    # Filtering straight alpha lets the colour of invisible pixels bleed into visible edges;
    # premultiplied alpha weighs every colour by its opacity.
    if image.mode == "RGBA":
        return image.convert("RGBa").filter(kernel).convert("RGBA")
    if image.mode == "LA":
        return image.convert("La").filter(kernel).convert("LA")
    return image.filter(kernel)


@dataclass(frozen=True, slots=True)
class Overlay:
    """A watermark ready to lay over outputs of one size: an RGBA layer and its position."""

    layer: Image.Image
    position: tuple[int, int]
    grey: bool

    def apply(self, image: Image.Image) -> Image.Image:
        """``image`` with the watermark laid over it ("over" compositing)."""
        if not self.grey:
            # A coloured watermark keeps its colour on a grey output.
            image = _promote(image)
        if image.mode in ALPHA_MODES:
            # "Over" onto a transparent image needs real compositing (RGBA only).
            canvas = image.convert("RGBA")
            canvas.alpha_composite(self.layer, dest=self.position)
            return canvas.convert("LA") if image.mode == "LA" else canvas
        # Over an opaque image, "over" is a plain blend through the layer's alpha.
        canvas = image.copy()
        canvas.paste(self.layer, self.position, self.layer)
        return canvas


def _promote(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image.convert("RGB")
    if image.mode == "LA":
        return image.convert("RGBA")
    return image


def text_overlay(text: str, watermark: Watermark, size: tuple[int, int]) -> Overlay:
    """White ``text`` with a dark outline, readable on any picture.

    The text height is ``scale`` times a quarter of the output's shorter side; text that would not
    fit inside the margins is made smaller until it does (or reaches 1 px), so no layer larger
    than the output is ever drawn.
    """
    margin = _margin(size)
    room_width, room_height = max(1, size[0] - 2 * margin), max(1, size[1] - 2 * margin)
    font_size = max(1, round(watermark.scale * min(size) / 4))
    font, bbox = _layout(text, font_size)
    text_width, text_height = _extent(bbox)
    while font_size > 1 and (text_width > room_width or text_height > room_height):
        shrink = min(room_width / text_width, room_height / text_height)
        font_size = max(1, min(font_size - 1, int(font_size * shrink)))
        font, bbox = _layout(text, font_size)
        text_width, text_height = _extent(bbox)
    layer = Image.new("RGBA", (text_width, text_height), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text(
        (-bbox[0], -bbox[1]),
        text,
        font=font,
        fill=_TEXT_FILL,
        stroke_width=_stroke_width(font_size),
        stroke_fill=_TEXT_OUTLINE,
    )
    layer = _fade(layer, watermark.opacity)
    return Overlay(layer, _place(watermark.position, layer.size, size, margin), grey=True)


def image_overlay(mark: Image.Image, watermark: Watermark, size: tuple[int, int]) -> Overlay:
    """``mark`` (upright, RGBA or LA) scaled to ``scale`` of the output's width, kept inside the
    margins."""
    width, height = size
    margin = _margin(size)
    box_width = max(1, min(round(watermark.scale * width), width - 2 * margin))
    box_height = max(1, height - 2 * margin)
    factor = min(box_width / mark.width, box_height / mark.height)
    target = (max(1, round(mark.width * factor)), max(1, round(mark.height * factor)))
    grey = mark.mode in {"L", "LA"}
    layer = mark.convert("RGBA")
    if target != layer.size:
        layer = layer.resize(target, RESAMPLE, reducing_gap=REDUCING_GAP)
    layer = _fade(layer, watermark.opacity)
    return Overlay(layer, _place(watermark.position, layer.size, size, margin), grey=grey)


def _margin(size: tuple[int, int]) -> int:
    return round(_MARGIN * min(size))


def _stroke_width(font_size: int) -> int:
    return 0 if font_size < 12 else max(1, round(font_size / 16))


def _layout(text: str, font_size: int) -> tuple[_Font, tuple[float, float, float, float]]:
    # The default font is loaded per call: a FreeType face is not safe to share between threads.
    font = ImageFont.load_default(size=font_size)
    measure = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    bbox = measure.textbbox((0, 0), text, font=font, stroke_width=_stroke_width(font_size))
    return font, bbox


def _extent(bbox: tuple[float, float, float, float]) -> tuple[int, int]:
    return max(1, math.ceil(bbox[2] - bbox[0])), max(1, math.ceil(bbox[3] - bbox[1]))


def _fade(layer: Image.Image, opacity: float) -> Image.Image:
    if opacity >= 1:
        return layer
    alpha = layer.getchannel("A").point([round(value * opacity) for value in range(256)])
    layer.putalpha(alpha)
    return layer


def _place(
    position: str, layer_size: tuple[int, int], size: tuple[int, int], margin: int
) -> tuple[int, int]:
    """Top-left corner of the layer for one of the nine named positions."""
    (layer_width, layer_height), (width, height) = layer_size, size
    if position.endswith("left"):
        x = margin
    elif position.endswith("right"):
        x = width - layer_width - margin
    else:
        x = (width - layer_width) // 2
    if position.startswith("top"):
        y = margin
    elif position.startswith("bottom"):
        y = height - layer_height - margin
    else:
        y = (height - layer_height) // 2
    return max(0, x), max(0, y)
