"""Crop, resize, auto-orient, rotate and flip: planned once, applied in as few passes as possible.

Crop and resize are one resampling step: the crop (and, for ``cover``, the centred window that fills
the box) becomes the ``box`` argument of ``Image.resize``, so no intermediate crop is copied. The
step runs on the pixels as stored, before the EXIF orientation is applied: the box is mapped into
stored coordinates and the (much smaller) result is turned upright afterwards. Sizes come from
:func:`imgproc_core.domain.transformations.resized_size`, the same function that plans the output
size at request time, so the output always has exactly the planned size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from PIL import Image

from imgproc_core.domain.transformations import Transformation, resized_size

Box = tuple[float, float, float, float]
Size = tuple[int, int]

#: Downscaling first by whole-pixel averaging to within 3x of the target, then with Lanczos, is
#: indistinguishable from Lanczos alone (Pillow's own measurement) and much cheaper for big
#: reductions.
REDUCING_GAP: Final = 3.0
RESAMPLE: Final = Image.Resampling.LANCZOS

#: JPEG draft scales (1/n), largest first, with the reduction from region to target each needs.
_DRAFT_SCALES: Final = ((8, 16.0), (4, 4.0), (2, 2.0))

#: The transpose that turns stored pixels upright, per EXIF orientation (as ``exif_transpose``).
_UPRIGHT: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

#: ``rotate`` is clockwise; Pillow's ROTATE_n turn counter-clockwise.
_CLOCKWISE: Final[dict[int, Image.Transpose]] = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True, slots=True)
class Plan:
    """What crop and resize do to an upright ``width`` x ``height`` source.

    ``region`` is the part of the upright source that ends up in the output; ``size`` the upright
    size it is scaled to. ``resample`` is False when the region is copied as it is (crop alone).
    """

    region: Box
    size: Size
    resample: bool

    @classmethod
    def of(cls, width: int, height: int, transformation: Transformation) -> Plan:
        """Plan for a validated transformation (``output_size`` has accepted the crop)."""
        left, top, right, bottom = 0.0, 0.0, float(width), float(height)
        crop = transformation.crop
        if crop is not None:
            left, top = float(crop.x), float(crop.y)
            right, bottom = left + crop.width, top + crop.height
        region_width, region_height = right - left, bottom - top
        resize = transformation.resize
        if resize is None:
            return cls((left, top, right, bottom), (int(region_width), int(region_height)), False)
        size = resized_size(int(region_width), int(region_height), resize)
        if resize.fit == "cover" and resize.width is not None and resize.height is not None:
            # Fill the box, then cut the overflow evenly on both sides.
            scale = max(size[0] / region_width, size[1] / region_height)
            visible_width, visible_height = size[0] / scale, size[1] / scale
            # Clamped: rounding must not push the window a hair outside the region.
            left, top = (
                max(left, left + (region_width - visible_width) / 2),
                max(top, top + (region_height - visible_height) / 2),
            )
            right = min(right, left + visible_width)
            bottom = min(bottom, top + visible_height)
        return cls((left, top, right, bottom), size, True)

    def stored(self, orientation: int, stored_size: Size) -> tuple[Box, Size]:
        """The region and target size in stored coordinates, for an image of ``stored_size``."""
        box = stored_box(self.region, orientation, stored_size)
        width, height = self.size
        return box, ((height, width) if orientation in {5, 6, 7, 8} else (width, height))

    def draft_request(self, orientation: int, stored_size: Size) -> Size | None:
        """The size to ask JPEG draft mode for, or None when a full decode is needed.

        libjpeg decodes at 1/2, 1/4 or 1/8 scale for a fraction of a full decode's cost. At 1/2
        and 1/4 its scaled inverse DCT drops the blocks' high frequencies, a proper low-pass
        filter, so the region may come out as small as the target and Lanczos does the rest
        (a 12 MP photograph for an 800x600 output decodes at 1000x750). At 1/8 only the blocks'
        averages remain, a box filter that aliases fine detail: that scale is used only when
        the region still keeps twice the target size, so Lanczos filters it again.
        """
        if not self.resample:
            return None
        (left, top, right, bottom), (target_width, target_height) = self.stored(
            orientation, stored_size
        )
        reduction = min((right - left) / target_width, (bottom - top) / target_height)
        scale = next((scale for scale, needed in _DRAFT_SCALES if reduction >= needed), 1)
        if scale == 1:
            return None
        width, height = stored_size
        # Pillow picks the largest scale whose output is at least the request; floor division
        # makes that exactly ``scale`` (libjpeg rounds the decoded size up).
        return max(1, width // scale), max(1, height // scale)


def stored_box(box: Box, orientation: int, stored_size: Size) -> Box:
    """Map a box of the upright image into the stored image's coordinates.

    Each orientation's transpose is inverted point by point; the box's corners map to corners.
    """
    width, height = stored_size
    left, top, right, bottom = box

    def to_stored(u: float, v: float) -> tuple[float, float]:
        if orientation == 2:
            return width - u, v
        if orientation == 3:
            return width - u, height - v
        if orientation == 4:
            return u, height - v
        if orientation == 5:
            return v, u
        if orientation == 6:
            return v, height - u
        if orientation == 7:
            return width - v, height - u
        if orientation == 8:
            return width - v, u
        return u, v

    x0, y0 = to_stored(left, top)
    x1, y1 = to_stored(right, bottom)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def crop_and_resize(image: Image.Image, box: Box, size: Size, resample: bool) -> Image.Image:
    """Cut ``box`` out of ``image`` and scale it to ``size`` in one pass."""
    if not resample or (_is_whole(box) and size == (box[2] - box[0], box[3] - box[1])):
        int_box = (round(box[0]), round(box[1]), round(box[2]), round(box[3]))
        if int_box == (0, 0, *image.size):
            return image
        return image.crop(int_box)
    return image.resize(size, RESAMPLE, box=box, reducing_gap=REDUCING_GAP)


def _is_whole(box: Box) -> bool:
    return all(float(value).is_integer() for value in box)


def upright(image: Image.Image, orientation: int) -> Image.Image:
    method = _UPRIGHT.get(orientation)
    return image if method is None else image.transpose(method)


def rotate_and_flip(image: Image.Image, transformation: Transformation) -> Image.Image:
    """Rotate clockwise by a multiple of 90 degrees, then flip (top-bottom) and mirror."""
    method = _CLOCKWISE.get(transformation.rotate % 360)
    if method is not None:
        image = image.transpose(method)
    if transformation.flip:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if transformation.mirror:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image
