"""HEIC input through pillow-heif: a phone's photograph is read (sniffed by its bytes, its
size from the header, the orientation applied, metadata stripped) and made into the formats the
service writes; a HEIC that claims too many pixels is refused before decoding, a truncated one
as corrupt."""

from __future__ import annotations

import io
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.pillow.sniff import sniff_format
from imgproc_core.domain.errors import CorruptImage, DecompressionBomb
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import parse_transformation

LIMITS = Limits()
ORIENTATION = 0x0112


def _heic(picture: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    pillow_heif.from_pillow(picture).save(buffer, quality=90, **options)
    return buffer.getvalue()


@pytest.fixture
def codec() -> PillowImageCodec:
    return PillowImageCodec()


@pytest.fixture
def photo(corpus_dir: Path) -> Image.Image:
    return Image.open(corpus_dir / "pillow" / "hopper.png").convert("RGB")


def test_a_heic_photograph_is_read_and_made_into_a_jpeg(
    codec: PillowImageCodec, photo: Image.Image
) -> None:
    data = _heic(photo)
    assert sniff_format(data) == "heic"

    info = codec.probe(data, LIMITS)
    made = codec.transform(
        data, parse_transformation({"resize": {"width": 64}}).resolved("heic"), LIMITS
    )

    assert (info.format, info.mimetype, info.width, info.height) == ("heic", "image/heic", 128, 128)
    assert (made.mimetype, made.width, made.height) == ("image/jpeg", 64, 64)
    decoded = Image.open(io.BytesIO(made.data))
    assert decoded.format == "JPEG"
    # The same picture: the colours of its centre survive the trip.
    expected = photo.resize((64, 64)).getpixel((32, 32))
    got = decoded.convert("RGB").getpixel((32, 32))
    assert isinstance(expected, tuple)
    assert isinstance(got, tuple)
    assert max(abs(a - b) for a, b in zip(expected, got, strict=True)) < 40


def test_its_orientation_is_applied_and_its_metadata_stripped(codec: PillowImageCodec) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # turned a quarter clockwise, as a phone held upright writes it
    exif[0x010F] = "PhoneMaker"
    data = _heic(Image.new("RGB", (120, 60), "red"), exif=exif.tobytes())

    info = codec.probe(data, LIMITS)
    made = codec.transform(data, parse_transformation({"format": "png"}).resolved("heic"), LIMITS)

    assert (info.width, info.height) == (60, 120)
    assert (made.width, made.height) == (60, 120)
    assert dict(Image.open(io.BytesIO(made.data)).getexif()) == {}


def test_a_heic_claiming_too_many_pixels_is_refused_from_its_header(
    codec: PillowImageCodec, photo: Image.Image
) -> None:
    data = bytearray(_heic(photo))
    # The image's spatial extent property: 'ispe', version and flags, then width and height.
    at = data.find(b"ispe")
    assert at > 0
    data[at + 8 : at + 16] = (50_000).to_bytes(4, "big") * 2

    with pytest.raises(DecompressionBomb):
        codec.probe(bytes(data), LIMITS)
    with pytest.raises(DecompressionBomb):
        codec.transform(bytes(data), parse_transformation({"format": "png"}), LIMITS)


def test_a_truncated_heic_is_corrupt(codec: PillowImageCodec, photo: Image.Image) -> None:
    data = _heic(photo)
    for cut in (len(data) // 2, len(data) - 10, 40):
        with pytest.raises(CorruptImage):
            codec.probe(data[:cut], LIMITS)
