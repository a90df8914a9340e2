"""Properties of the canonical transformation id and of the planned output size."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from imgproc_core.domain.errors import OutputTooLarge
from imgproc_core.domain.formats import DEFAULT_QUALITY, INPUT_FORMATS, output_format_for
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import (
    Resize,
    Transformation,
    derived_image_id,
    output_size,
    parse_transformation,
)

SOURCE_FORMATS = sorted(INPUT_FORMATS)
FILTER_KEYS = ("grayscale", "sepia", "blur", "sharpen")

sizes = st.integers(min_value=1, max_value=5000)
amounts = st.one_of(st.just(0.0), st.floats(min_value=0.25, max_value=10, allow_nan=False))

resize_specs = st.one_of(
    st.fixed_dictionaries({"width": sizes}, optional={"fit": st.sampled_from(["contain"])}),
    st.fixed_dictionaries({"height": sizes}),
    st.fixed_dictionaries(
        {"width": sizes, "height": sizes},
        optional={"fit": st.sampled_from(["contain", "cover", "fill"])},
    ),
)


@st.composite
def flat_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A flat request body with some of its fields set (possibly to their defaults)."""
    candidates: dict[str, st.SearchStrategy[Any]] = {
        "resize": resize_specs,
        "crop": st.fixed_dictionaries(
            {"width": sizes, "height": sizes},
            optional={"x": st.integers(0, 100), "y": st.integers(0, 100)},
        ),
        "rotate": st.sampled_from([-270, -180, -90, 0, 90, 180, 270, 360, 450]),
        "flip": st.booleans(),
        "mirror": st.booleans(),
        "grayscale": st.booleans(),
        "sepia": st.booleans(),
        "blur": amounts,
        "sharpen": amounts,
        "watermark": st.one_of(
            st.fixed_dictionaries(
                {"text": st.text("abc ()", min_size=1, max_size=8)},
                optional={"opacity": st.sampled_from([0.25, 0.5, 1.0])},
            ),
            st.fixed_dictionaries(
                {"image_id": st.sampled_from(["a1", "b2"])},
                optional={"position": st.sampled_from(["top-left", "center", "bottom-right"])},
            ),
        ),
        "format": st.sampled_from(["jpeg", "jpg", "png", "webp", "avif", "gif"]),
        "quality": st.integers(1, 100),
    }
    chosen = draw(st.sets(st.sampled_from(sorted(candidates)), min_size=1))
    return {name: draw(candidates[name]) for name in sorted(chosen)}


def shuffled(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with the keys of every object in a random order."""
    if isinstance(value, dict):
        keys = draw(st.permutations(sorted(value)))
        return {key: shuffled(draw, value[key]) for key in keys}
    return value


def with_explicit_defaults(spec: dict[str, Any], source_format: str) -> dict[str, Any]:
    """The same request with every default that a user might spell out, spelled out."""
    out = dict(spec)
    out.setdefault("rotate", 0)
    out.setdefault("flip", False)
    out.setdefault("mirror", False)
    out.setdefault("blur", 0)
    out.setdefault("sharpen", 0)
    output = {"jpg": "jpeg"}.get(out.get("format", ""), out.get("format"))
    output = output or output_format_for(source_format)
    out.setdefault("format", output)
    if output in DEFAULT_QUALITY:
        out.setdefault("quality", DEFAULT_QUALITY[output])
    if "resize" in out and set(out["resize"]) & {"width", "height"} != {"width", "height"}:
        out["resize"] = {**out["resize"], "fit": "contain"}
    elif "resize" in out:
        out["resize"] = {"fit": "contain", **out["resize"]}
    return out


def enveloped(spec: dict[str, Any]) -> dict[str, Any]:
    """The roadmap.sh shape: wrapped in ``transformations``, filters moved into ``filters``."""
    filters = {key: spec[key] for key in FILTER_KEYS if key in spec}
    rest = {key: value for key, value in spec.items() if key not in FILTER_KEYS}
    if filters:
        rest["filters"] = filters
    return {"transformations": rest}


def derived_id(source_id: str, body: dict[str, Any] | str, source_format: str) -> str:
    """The derived id for a request body, given as a mapping or as JSON text."""
    return derived_image_id(source_id, parse_transformation(body).resolved(source_format))


def _reordered(value: Any) -> st.SearchStrategy[Any]:
    @st.composite
    def strategy(draw: st.DrawFn) -> Any:
        return shuffled(draw, value)

    return strategy()


@given(st.data(), flat_specs(), st.sampled_from(SOURCE_FORMATS))
def test_equivalent_requests_give_one_id(
    data: st.DataObject, spec: dict[str, Any], source_format: str
) -> None:
    expected = derived_id("src", spec, source_format)
    variants = {
        "flat": spec,
        "explicit defaults": with_explicit_defaults(spec, source_format),
        "envelope": enveloped(spec),
        "envelope with explicit defaults": enveloped(with_explicit_defaults(spec, source_format)),
    }
    for name, variant in variants.items():
        reordered = data.draw(_reordered(variant), label=name)
        assert reordered == variant
        assert derived_id("src", reordered, source_format) == expected, name
        assert derived_id("src", json.dumps(reordered), source_format) == expected, name


def test_jpg_is_an_alias_of_jpeg() -> None:
    assert derived_id("src", {"format": "jpg"}, "png") == derived_id(
        "src", {"format": "jpeg", "quality": 85}, "png"
    )


def test_negative_zero_amounts_are_no_amounts() -> None:
    assert derived_id("src", '{"rotate": 90, "blur": -0.0, "sharpen": -0.0}', "png") == (
        derived_id("src", {"rotate": 90}, "png")
    )


@given(flat_specs(), flat_specs(), st.sampled_from(SOURCE_FORMATS))
def test_different_requests_give_different_ids(
    first: dict[str, Any], second: dict[str, Any], source_format: str
) -> None:
    a = parse_transformation(first).resolved(source_format)
    b = parse_transformation(second).resolved(source_format)
    assume(a != b)
    assert derived_image_id("src", a) != derived_image_id("src", b)


@given(flat_specs(), st.sampled_from(SOURCE_FORMATS))
def test_other_sources_give_other_ids(spec: dict[str, Any], source_format: str) -> None:
    transformation = parse_transformation(spec).resolved(source_format)
    assert derived_image_id("src-a", transformation) != derived_image_id("src-b", transformation)


# -- output size ---------------------------------------------------------------------------------

LIMITS = Limits(max_output_side=4096)


@given(sizes, sizes, resize_specs)
def test_output_size_follows_the_resize(width: int, height: int, spec: dict[str, Any]) -> None:
    resize = Resize(**spec)
    try:
        out_w, out_h = output_size(width, height, Transformation(resize=resize), LIMITS)
    except OutputTooLarge:
        return
    assert 1 <= out_w <= LIMITS.max_output_side
    assert 1 <= out_h <= LIMITS.max_output_side
    if resize.width is not None and resize.height is not None:
        if resize.fit != "contain":
            assert (out_w, out_h) == (resize.width, resize.height)
            return
        scale = min(resize.width / width, resize.height / height)
        assert out_w <= resize.width
        assert out_h <= resize.height
        assert out_w == resize.width or out_h == resize.height
    elif resize.width is not None:
        scale = resize.width / width
        assert out_w == resize.width
    else:
        assert resize.height is not None
        scale = resize.height / height
        assert out_h == resize.height
    assert _rounded(out_w, width * scale)
    assert _rounded(out_h, height * scale)


def _rounded(side: int, exact: float) -> bool:
    """``side`` is ``exact`` rounded to a whole pixel, at least one."""
    return abs(side - exact) <= 0.5 + 1e-9 or (side == 1 and exact < 1)


@given(sizes, sizes, resize_specs, st.integers(min_value=1, max_value=6000))
def test_output_size_never_passes_the_limit(
    width: int, height: int, spec: dict[str, Any], side: int
) -> None:
    limits = Limits(max_output_side=side)
    transformation = Transformation(resize=Resize(**spec), rotate=90)
    unlimited = output_size(width, height, transformation, Limits(max_output_side=10**9))
    if max(unlimited) > side:
        with pytest.raises(OutputTooLarge) as raised:
            output_size(width, height, transformation, limits)
        assert raised.value.field == "resize"
    else:
        assert output_size(width, height, transformation, limits) == unlimited
        assert max(unlimited) <= side


@given(sizes, sizes)
def test_quarter_turns_swap_the_sides(width: int, height: int) -> None:
    limits = Limits(max_output_side=10_000)
    for degrees in (0, 90, 180, 270):
        out = output_size(width, height, Transformation(rotate=degrees), limits)
        assert out == ((height, width) if degrees % 180 else (width, height))
    assert math.prod(output_size(width, height, Transformation(flip=True), limits)) == (
        width * height
    )
