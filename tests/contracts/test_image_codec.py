"""The ImageCodec contract, run against the Pillow codec, the same codec in a pool of worker
processes, and its in-memory twin.

Each implementation brings its own ``make_image`` (real encoded images for Pillow, the synthetic
format for the fake); the assertions are the same for both. Outputs are read back with the codec's
own ``probe``, so the contract says nothing about how an implementation stores its pixels.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pillow_heif
import pytest
from PIL import Image

from imgproc_core.adapters.memory.codec import InMemoryImageCodec, fake_image_bytes
from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.process_pool import ProcessPoolImageCodec
from imgproc_core.domain.errors import (
    CropOutsideImage,
    DecompressionBomb,
    OutputTooLarge,
    TooManyFrames,
    UnsupportedImageType,
    WatermarkNotFound,
)
from imgproc_core.domain.formats import INPUT_FORMATS, MEDIA_TYPES, OUTPUT_FORMATS
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation, output_size, parse_transformation
from imgproc_core.ports.codec import ImageCodec


class MakeImage(Protocol):
    def __call__(self, format: str, width: int, height: int, frames: int = 1) -> bytes: ...


_PILLOW_NAMES = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "gif": "GIF",
    "avif": "AVIF",
    "tiff": "TIFF",
    "bmp": "BMP",
    "heic": "HEIF",
}


def pillow_image_bytes(format: str, width: int, height: int, frames: int = 1) -> bytes:
    """A real image: a colour gradient (so lossy encoders have something to keep), one hue per
    frame for animations."""
    pictures = []
    for index in range(frames):
        gradient = Image.linear_gradient("L").resize((width, height))
        hue = Image.new("L", (width, height), (index * 53) % 256)
        pictures.append(
            Image.merge("RGB", (gradient, hue, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
        )
    buffer = io.BytesIO()
    options: dict[str, Any] = {}
    if format == "heic":
        pillow_heif.from_pillow(pictures[0]).save(buffer, quality=90)
        return buffer.getvalue()
    if frames > 1:
        options = {"save_all": True, "append_images": pictures[1:], "duration": 80, "loop": 0}
    pictures[0].save(buffer, _PILLOW_NAMES[format], **options)
    return buffer.getvalue()


_FACTORIES: dict[type, Callable[..., bytes]] = {
    PillowImageCodec: pillow_image_bytes,
    ProcessPoolImageCodec: pillow_image_bytes,
    InMemoryImageCodec: fake_image_bytes,
}


@pytest.fixture(scope="module")
def process_pool() -> Iterator[ProcessPoolImageCodec]:
    """One pool for the module: its workers start once, and every test runs through them."""
    with ProcessPoolImageCodec(2, time_limit_seconds=60.0) as pool:
        yield pool


@pytest.fixture(params=["pillow", "process-pool", "memory"])
def codec(request: pytest.FixtureRequest) -> ImageCodec:
    if request.param == "process-pool":
        pool: ProcessPoolImageCodec = request.getfixturevalue("process_pool")
        return pool
    return PillowImageCodec() if request.param == "pillow" else InMemoryImageCodec()


@pytest.fixture
def make_image(codec: ImageCodec) -> MakeImage:
    factory = _FACTORIES[type(codec)]

    def make(format: str, width: int, height: int, frames: int = 1) -> bytes:
        return factory(format, width, height, frames)

    return make


LIMITS = Limits()


# -- probe ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(INPUT_FORMATS))
def test_probe_reads_type_and_size_of_every_accepted_format(
    codec: ImageCodec, make_image: MakeImage, fmt: str
) -> None:
    info = codec.probe(make_image(fmt, 37, 21), LIMITS)

    assert (info.format, info.mimetype) == (fmt, MEDIA_TYPES[fmt])
    assert (info.width, info.height, info.frames) == (37, 21, 1)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_probe_counts_the_frames_of_an_animation(
    codec: ImageCodec, make_image: MakeImage, fmt: str
) -> None:
    info = codec.probe(make_image(fmt, 16, 12, frames=5), LIMITS)

    assert (info.format, info.width, info.height, info.frames) == (fmt, 16, 12, 5)


def test_an_image_at_the_pixel_limit_is_accepted(codec: ImageCodec, make_image: MakeImage) -> None:
    info = codec.probe(make_image("png", 40, 25), Limits(max_pixels=1000))

    assert (info.width, info.height) == (40, 25)


def test_more_pixels_than_the_limit_is_a_decompression_bomb(
    codec: ImageCodec, make_image: MakeImage
) -> None:
    data = make_image("png", 40, 26)
    limits = Limits(max_pixels=1000)

    with pytest.raises(DecompressionBomb):
        codec.probe(data, limits)
    with pytest.raises(DecompressionBomb):
        codec.transform(data, Transformation(resize=_resize(width=8)), limits)


def test_more_frames_than_the_limit_is_refused(codec: ImageCodec, make_image: MakeImage) -> None:
    data = make_image("gif", 8, 8, frames=5)
    limits = Limits(max_frames=4)

    with pytest.raises(TooManyFrames):
        codec.probe(data, limits)
    with pytest.raises(TooManyFrames):
        codec.transform(data, Transformation(format="png"), limits)


def test_every_frame_of_an_animation_counts_against_the_pixel_limit(
    codec: ImageCodec, make_image: MakeImage
) -> None:
    data = make_image("gif", 10, 10, frames=5)

    assert codec.probe(data, Limits(max_pixels=500)).frames == 5
    with pytest.raises(DecompressionBomb):
        codec.probe(data, Limits(max_pixels=499))


UNSUPPORTED = {
    "empty": b"",
    "text": b"just some words, not a picture\n",
    "html": b"<!DOCTYPE html><html><body><img src=x></body></html>",
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
    "pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    "psd": b"8BPS\x00\x01" + b"\x00" * 40,
    "mp4": b"\x00\x00\x00\x18ftypisom\x00\x00\x00\x00isommp41" + b"\x00" * 32,
}


@pytest.mark.parametrize("data", list(UNSUPPORTED.values()), ids=list(UNSUPPORTED))
def test_bytes_outside_the_allow_list_are_an_unsupported_type(
    codec: ImageCodec, data: bytes
) -> None:
    with pytest.raises(UnsupportedImageType):
        codec.probe(data, LIMITS)
    with pytest.raises(UnsupportedImageType):
        codec.transform(data, Transformation(format="png"), LIMITS)


# -- transform -----------------------------------------------------------------------------------


def _resize(**fields: Any) -> Any:
    return parse_transformation({"resize": fields}).resize


GEOMETRY = {
    "contain": {"resize": {"width": 50, "height": 50}},
    "contain-upscale": {"resize": {"width": 300, "height": 100, "fit": "contain"}},
    "cover": {"resize": {"width": 50, "height": 50, "fit": "cover"}},
    "fill": {"resize": {"width": 31, "height": 77, "fit": "fill"}},
    "width-only": {"resize": {"width": 40}},
    "height-only": {"resize": {"height": 33}},
    "crop": {"crop": {"x": 10, "y": 5, "width": 30, "height": 20}},
    "crop-to-the-edge": {"crop": {"x": 60, "y": 40, "width": 20, "height": 20}},
    "rotate-90": {"rotate": 90},
    "rotate-270": {"rotate": -90},
    "rotate-180-flip-mirror": {"rotate": 180, "flip": True, "mirror": True},
    "crop-resize-rotate": {
        "crop": {"x": 4, "y": 4, "width": 64, "height": 32},
        "resize": {"width": 16},
        "rotate": 90,
    },
}


@pytest.mark.parametrize("body", list(GEOMETRY.values()), ids=list(GEOMETRY))
def test_the_output_has_the_planned_size(
    codec: ImageCodec, make_image: MakeImage, body: dict[str, Any]
) -> None:
    transformation = parse_transformation({**body, "format": "png"}).resolved("png")
    planned = output_size(80, 60, transformation, LIMITS)

    out = codec.transform(make_image("png", 80, 60), transformation, LIMITS)

    assert (out.width, out.height) == planned
    info = codec.probe(out.data, LIMITS)
    assert (info.format, info.width, info.height) == ("png", *planned)


@pytest.mark.parametrize("fmt", sorted(OUTPUT_FORMATS))
def test_the_output_is_in_the_requested_format(
    codec: ImageCodec, make_image: MakeImage, fmt: str
) -> None:
    out = codec.transform(
        make_image("jpeg", 48, 32), parse_transformation({"format": fmt}).resolved("jpeg"), LIMITS
    )

    assert (out.format, out.mimetype) == (fmt, MEDIA_TYPES[fmt])
    info = codec.probe(out.data, LIMITS)
    assert (info.format, info.width, info.height) == (fmt, 48, 32)


@pytest.mark.parametrize(
    ("source", "expected"), [("webp", "webp"), ("tiff", "png"), ("bmp", "png")]
)
def test_an_unresolved_transformation_keeps_the_source_format_when_writable(
    codec: ImageCodec, make_image: MakeImage, source: str, expected: str
) -> None:
    out = codec.transform(make_image(source, 20, 20), Transformation(grayscale=True), LIMITS)

    assert out.format == expected
    assert codec.probe(out.data, LIMITS).format == expected


def test_a_crop_outside_the_source_is_refused(codec: ImageCodec, make_image: MakeImage) -> None:
    transformation = parse_transformation({"crop": {"x": 70, "y": 0, "width": 20, "height": 10}})

    with pytest.raises(CropOutsideImage):
        codec.transform(make_image("png", 80, 60), transformation, LIMITS)


def test_an_output_above_the_side_limit_is_refused(
    codec: ImageCodec, make_image: MakeImage
) -> None:
    transformation = Transformation(resize=_resize(width=101))

    with pytest.raises(OutputTooLarge):
        codec.transform(make_image("png", 50, 20), transformation, Limits(max_output_side=100))


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_an_animation_keeps_its_frames_in_an_animated_format(
    codec: ImageCodec, make_image: MakeImage, fmt: str
) -> None:
    transformation = parse_transformation({"resize": {"width": 8}, "format": fmt}).resolved("gif")

    out = codec.transform(make_image("gif", 16, 12, frames=4), transformation, LIMITS)

    assert (out.frames, out.width, out.height) == (4, 8, 6)
    assert codec.probe(out.data, LIMITS).frames == 4


def test_an_animated_output_counts_every_frame_against_the_pixel_limit(
    codec: ImageCodec, make_image: MakeImage
) -> None:
    source = make_image("gif", 10, 10, frames=4)
    limits = Limits(max_pixels=4 * 20 * 20)

    bigger = parse_transformation({"resize": {"width": 21}, "format": "webp"})
    with pytest.raises(OutputTooLarge):
        codec.transform(source, bigger, limits)
    at_the_limit = parse_transformation({"resize": {"width": 20}})
    assert codec.transform(source, at_the_limit, limits).frames == 4
    # A still output holds one frame only.
    still = parse_transformation({"resize": {"width": 21}, "format": "png"})
    assert codec.transform(source, still, limits).frames == 1


def test_an_animation_becomes_its_first_frame_in_a_still_format(
    codec: ImageCodec, make_image: MakeImage
) -> None:
    out = codec.transform(
        make_image("webp", 16, 12, frames=4), Transformation(format="png").resolved("webp"), LIMITS
    )

    assert out.frames == 1
    assert codec.probe(out.data, LIMITS).frames == 1


def test_a_text_watermark_keeps_the_size(codec: ImageCodec, make_image: MakeImage) -> None:
    transformation = parse_transformation({"watermark": {"text": "(c) me", "position": "top"}})

    out = codec.transform(make_image("png", 120, 80), transformation, LIMITS)

    assert (out.format, out.width, out.height) == ("png", 120, 80)


def test_an_image_watermark_is_decoded_with_the_same_guards(
    codec: ImageCodec, make_image: MakeImage
) -> None:
    transformation = parse_transformation({"watermark": {"image_id": "logo", "scale": 0.5}})
    source = make_image("jpeg", 120, 80)

    out = codec.transform(source, transformation, LIMITS, watermark=make_image("png", 30, 30))
    assert (out.format, out.width, out.height) == ("jpeg", 120, 80)

    with pytest.raises(WatermarkNotFound):
        codec.transform(source, transformation, LIMITS)
    with pytest.raises(UnsupportedImageType):
        codec.transform(source, transformation, LIMITS, watermark=UNSUPPORTED["svg"])
    with pytest.raises(DecompressionBomb):
        codec.transform(
            source,
            transformation,
            Limits(max_pixels=120 * 80),
            watermark=make_image("png", 100, 100),
        )
