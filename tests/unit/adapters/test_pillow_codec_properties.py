"""Properties of PillowImageCodec's geometry, checked on generated images with Hypothesis."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.pillow.geometry import stored_box
from imgproc_core.domain.errors import OutputTooLarge
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Fit, Resize, Transformation, output_size

CODEC = PillowImageCodec()
#: Small enough that some requests (up to 1000 px a side) are refused.
LIMITS = Limits(max_output_side=700)

FITS: list[Fit] = ["contain", "cover", "fill"]
sides = st.integers(min_value=1, max_value=600)
targets = st.integers(min_value=1, max_value=1000)


@st.composite
def resizes(draw: st.DrawFn) -> Resize:
    shape = draw(st.sampled_from(["both", "width", "height"]))
    if shape == "width":
        return Resize(width=draw(targets))
    if shape == "height":
        return Resize(height=draw(targets))
    fit: Fit = draw(st.sampled_from(FITS))
    return Resize(width=draw(targets), height=draw(targets), fit=fit)


def encoded(fmt: str, width: int, height: int) -> bytes:
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    width=sides,
    height=sides,
    resize=resizes(),
    source_format=st.sampled_from(["JPEG", "PNG"]),
    rotate=st.sampled_from([0, 90]),
)
@example(width=600, height=400, resize=Resize(width=50), source_format="JPEG", rotate=0)
@example(
    width=599,
    height=1,
    resize=Resize(width=7, height=700, fit="cover"),
    source_format="JPEG",
    rotate=90,
)
@example(
    width=1,
    height=600,
    resize=Resize(width=700, height=3, fit="cover"),
    source_format="PNG",
    rotate=0,
)
def test_the_output_has_the_planned_size_within_the_limits(
    width: int, height: int, resize: Resize, source_format: str, rotate: int
) -> None:
    # JPEG sources go through draft mode when the output is small; PNG sources never do.
    data = encoded(source_format, width, height)
    transformation = Transformation(resize=resize, rotate=rotate, format="png").resolved("png")
    try:
        planned = output_size(width, height, transformation, LIMITS)
    except OutputTooLarge:
        with pytest.raises(OutputTooLarge):
            CODEC.transform(data, transformation, LIMITS)
        return

    out = CODEC.transform(data, transformation, LIMITS)

    image = Image.open(io.BytesIO(out.data))
    assert image.size == (out.width, out.height) == planned
    assert max(image.size) <= LIMITS.max_output_side


_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@settings(max_examples=60, deadline=None)
@given(
    orientation=st.integers(min_value=1, max_value=8),
    width=st.integers(min_value=1, max_value=12),
    height=st.integers(min_value=1, max_value=12),
    data=st.data(),
)
def test_a_box_mapped_to_stored_pixels_crops_the_same_picture(
    orientation: int, width: int, height: int, data: st.DataObject
) -> None:
    """Cropping the stored pixels at the mapped box and turning the result upright is the same
    as cropping the upright picture: the shortcut the codec takes to transpose small images."""
    stored = Image.effect_noise((width, height), 64).convert("L")
    method = _UPRIGHT.get(orientation)
    upright = stored.transpose(method) if method is not None else stored
    left = data.draw(st.integers(0, upright.width - 1))
    top = data.draw(st.integers(0, upright.height - 1))
    right = data.draw(st.integers(left + 1, upright.width))
    bottom = data.draw(st.integers(top + 1, upright.height))

    box = stored_box((left, top, right, bottom), orientation, stored.size)
    cropped = stored.crop((round(box[0]), round(box[1]), round(box[2]), round(box[3])))
    turned = cropped.transpose(method) if method is not None else cropped

    expected = upright.crop((left, top, right, bottom))
    assert turned.size == expected.size
    assert ImageChops.difference(turned, expected).getbbox() is None
