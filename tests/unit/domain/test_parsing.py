"""Parsing transformation requests and sanitizing filenames: what is refused, and how."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgproc_core.domain.errors import InvalidTransformation
from imgproc_core.domain.images import MAX_FILENAME_CHARS, sanitize_filename
from imgproc_core.domain.transformations import (
    Crop,
    Resize,
    Transformation,
    Watermark,
    parse_transformation,
)


def refused(body: bytes | str | dict[str, Any]) -> InvalidTransformation:
    with pytest.raises(InvalidTransformation) as raised:
        parse_transformation(body)
    return raised.value


# -- what is accepted ----------------------------------------------------------------------------


def test_the_flat_shape_is_read_whole() -> None:
    parsed = parse_transformation(
        b"""{
          "resize": {"width": 800, "height": 600, "fit": "cover"},
          "crop": {"x": 10, "y": 20, "width": 400, "height": 300},
          "rotate": 90, "flip": true, "mirror": false,
          "grayscale": true, "sepia": false, "blur": 1.5, "sharpen": 2,
          "watermark": {"text": "(c) me", "position": "top-left", "opacity": 0.25},
          "format": "webp", "quality": 70
        }"""
    )
    assert parsed == Transformation(
        resize=Resize(width=800, height=600, fit="cover"),
        crop=Crop(x=10, y=20, width=400, height=300),
        rotate=90,
        flip=True,
        grayscale=True,
        blur=1.5,
        sharpen=2.0,
        watermark=Watermark(text="(c) me", position="top-left", opacity=0.25),
        format="webp",
        quality=70,
    )


def test_the_envelope_with_filters_means_the_same_as_the_flat_shape() -> None:
    envelope = parse_transformation(
        '{"transformations": {"rotate": 180, "format": "jpg",'
        ' "filters": {"grayscale": true, "sepia": true, "blur": 2}}}'
    )
    flat = parse_transformation(
        {"rotate": 180, "format": "jpeg", "grayscale": True, "sepia": True, "blur": 2.0}
    )
    assert envelope == flat
    assert envelope.format == "jpeg"


# -- unknown fields are named --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resize": {"width": 10}, "shrink": True}, "shrink"),
        ({"resize": {"width": 10, "depth": 3}}, "resize.depth"),
        ({"crop": {"width": 1, "height": 1, "z": 0}}, "crop.z"),
        ({"watermark": {"text": "a", "font": "x"}}, "watermark.font"),
        ({"filters": {"grayscale": True, "vintage": True}}, "filters.vintage"),
        ({"transformations": {"filters": {"posterize": 4}}}, "filters.posterize"),
    ],
)
def test_an_unknown_field_is_refused_and_named(body: dict[str, Any], field: str) -> None:
    error = refused(body)
    assert error.field == field
    assert field.rsplit(".", 1)[-1] in error.message


# -- malformed bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{", b"", b"not json", b'{"rotate": 90,}', "{'rotate': 90}", b"\xff\xfe"],
)
def test_malformed_json_is_refused(body: bytes | str) -> None:
    assert "malformed JSON" in refused(body).message


@pytest.mark.parametrize("body", [b"[]", b"42", b'"resize"', b"null", b"true"])
def test_a_body_that_is_not_an_object_is_refused(body: bytes) -> None:
    assert "JSON object" in refused(body).message


@pytest.mark.parametrize("body", [b"{}", {}, b'{"transformations": {}}'])
def test_an_empty_request_is_refused(body: bytes | dict[str, Any]) -> None:
    assert "at least one" in refused(body).message


def test_a_non_object_envelope_is_refused() -> None:
    assert refused(b'{"transformations": [1, 2]}').field == "transformations"


# -- ranges and types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quality": 0}, "quality"),
        ({"quality": 101}, "quality"),
        ({"quality": "high"}, "quality"),
        ({"resize": {"width": 0}}, "resize.width"),
        ({"resize": {"height": -5}}, "resize.height"),
        ({"resize": {"width": 10, "fit": "squash"}}, "resize.fit"),
        ({"crop": {"x": -1, "width": 5, "height": 5}}, "crop.x"),
        ({"crop": {"height": 5}}, "crop.width"),
        ({"blur": -1}, "blur"),
        ({"blur": 101}, "blur"),
        ({"sharpen": 11}, "sharpen"),
        ({"rotate": 7200}, "rotate"),
        ({"rotate": "90"}, "rotate"),
        ({"flip": "yes"}, "flip"),
        ({"watermark": {"text": "a", "opacity": 1.5}}, "watermark.opacity"),
        ({"watermark": {"text": ""}}, "watermark.text"),
        ({"watermark": {"image_id": "../x"}}, "watermark.image_id"),
        ({"watermark": {"text": "a", "position": "middle"}}, "watermark.position"),
        ({"format": "bmp"}, "format"),
        ({"format": "svg"}, "format"),
    ],
)
def test_a_value_out_of_range_names_its_field(body: dict[str, Any], field: str) -> None:
    assert refused(body).field == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rotate": 45}, "rotate"),
        ({"resize": {"fit": "cover"}}, "resize"),
        ({"watermark": {"position": "top"}}, "watermark"),
        ({"watermark": {"text": "a", "image_id": "abc"}}, "watermark"),
        ({"blur": 1, "filters": {"blur": 2}}, "blur"),
        ({"sharpen": 1, "filters": {"sharpen": 3}}, "sharpen"),
    ],
)
def test_rules_across_fields_name_the_field(body: dict[str, Any], field: str) -> None:
    assert refused(body).field == field


def test_the_same_amount_given_twice_is_accepted() -> None:
    assert parse_transformation({"blur": 2, "filters": {"blur": 2}}).blur == 2.0


# -- filenames -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("holiday.jpg", "holiday.jpg"),
        ("my photo (1).jpg", "my photo (1).jpg"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/absolute/path/cat.png", "cat.png"),
        ("a\x00b\nc\x7f.png", "abc.png"),
        ("\u202eevil.png", "evil.png"),
        ("  .hidden ", "hidden"),
        ("caf\u00e9.png", "caf_.png"),
        ("x;rm -rf *.png", "x_rm -rf _.png"),
        ("", "image.jpg"),
        (None, "image.jpg"),
        ("...", "image.jpg"),
        ("dir/", "image.jpg"),
        ("\x00\x01", "image.jpg"),
    ],
)
def test_filenames_are_sanitized(name: str | None, expected: str) -> None:
    assert sanitize_filename(name, "jpeg") == expected


def test_the_fallback_name_has_the_format_extension() -> None:
    assert sanitize_filename("", "png") == "image.png"
    assert sanitize_filename(None, "tiff") == "image.tiff"


def test_a_long_filename_is_cut() -> None:
    assert len(sanitize_filename("x" * 1000 + ".png", "png")) == MAX_FILENAME_CHARS


@given(st.one_of(st.none(), st.text(max_size=300)))
def test_any_filename_comes_out_safe(name: str | None) -> None:
    safe = sanitize_filename(name, "webp")
    assert 1 <= len(safe) <= MAX_FILENAME_CHARS
    assert "/" not in safe
    assert "\\" not in safe
    assert ".." not in safe.split("/")
    assert not safe.startswith((".", " "))
    assert all(unicodedata.category(ch)[0] != "C" for ch in safe)
    assert all(ch.isascii() for ch in safe)
    assert '"' not in safe
