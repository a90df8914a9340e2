"""PillowImageCodec against hostile and broken input: every failure is a domain error.

Decompression bombs are refused from the header: the tests print how long that took and how much
memory it needed (run with ``-s`` to see it) but assert only the error, since timings depend on the
machine.
"""

from __future__ import annotations

import io
import random
import resource
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.adapters.pillow.sniff import sniff_format
from imgproc_core.domain.errors import (
    CorruptImage,
    DecompressionBomb,
    DomainError,
    TooManyFrames,
    UnsupportedImageType,
)
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation, parse_transformation

# Pillow's TIFF reader warns about the broken metadata these tests feed it; that is expected.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")

LIMITS = Limits()
RESIZE = parse_transformation({"resize": {"width": 64}, "format": "png"})


@pytest.fixture(scope="module")
def codec() -> PillowImageCodec:
    return PillowImageCodec()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_header_only(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG that claims ``width`` x ``height`` RGB pixels: a valid IHDR, an
    IDAT holding one compressed row, and IEND. Decoding it would need width * height * 3 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * min(width * 3, 1024))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def measure(label: str, call: Callable[[], object]) -> DomainError:
    """Run ``call``, expecting a domain error; print its wall time and memory peaks."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    try:
        call()
    except DomainError as exc:
        error = exc
    else:
        pytest.fail(f"{label}: no error")
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    print(
        f"\n{label}: {type(error).__name__} in {elapsed * 1000:.1f} ms, "
        f"Python heap peak {peak / 1024:.0f} KiB, max RSS growth {rss_growth} KiB"
    )
    return error


# -- decompression bombs -------------------------------------------------------------------------


def test_a_50000_square_png_is_refused_before_decoding(codec: PillowImageCodec) -> None:
    data = png_header_only(50_000, 50_000)
    assert len(data) < 200  # 7.5 GB of pixels once decoded

    probe_error = measure("probe 50000x50000 PNG", lambda: codec.probe(data, LIMITS))
    transform_error = measure(
        "transform 50000x50000 PNG", lambda: codec.transform(data, RESIZE, LIMITS)
    )

    assert isinstance(probe_error, DecompressionBomb)
    assert isinstance(transform_error, DecompressionBomb)


# Pillow warns about the middle one before our own check refuses it; the warning is expected.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("width", "height"),
    [
        (8_000, 8_000),  # above our limit (50 MP), below Pillow's warning (about 89 MP)
        (10_000, 10_000),  # above Pillow's warning, below its error
        (20_000, 20_000),  # above Pillow's error: Pillow refuses first, with its own exception
    ],
)
def test_a_bomb_is_refused_whichever_limit_catches_it(
    codec: PillowImageCodec, width: int, height: int
) -> None:
    data = png_header_only(width, height)

    error = measure(f"probe {width}x{height} PNG", lambda: codec.probe(data, LIMITS))

    assert isinstance(error, DecompressionBomb)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillows_bomb_warning_raised_as_an_error_is_a_decompression_bomb(
    codec: PillowImageCodec,
) -> None:
    # A generous configured limit leaves Pillow's warning (turned into an error here) to fire.
    data = png_header_only(10_000, 10_000)

    with pytest.raises(DecompressionBomb):
        codec.probe(data, Limits(max_pixels=200_000_000))


def test_pillows_bomb_error_is_a_decompression_bomb(
    codec: PillowImageCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = png_header_only(100, 100)

    with pytest.raises(DecompressionBomb):
        codec.probe(data, Limits(max_pixels=1_000_000))


def test_a_bomb_watermark_is_refused(codec: PillowImageCodec, corpus_dir: Path) -> None:
    source = (corpus_dir / "pillow" / "hopper.jpg").read_bytes()
    transformation = parse_transformation({"watermark": {"image_id": "logo"}})

    with pytest.raises(DecompressionBomb):
        codec.transform(source, transformation, LIMITS, watermark=png_header_only(9000, 9000))


def test_an_animation_with_many_frames_is_refused_before_decoding(
    codec: PillowImageCodec,
) -> None:
    frames = [Image.new("RGB", (4, 4), (index, 255 - index, 0)) for index in range(150)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=10)
    assert Image.open(buffer).n_frames == 150  # type: ignore[attr-defined]

    error = measure("probe 150-frame GIF", lambda: codec.probe(buffer.getvalue(), LIMITS))

    assert isinstance(error, TooManyFrames)


# -- types outside the allow-list ----------------------------------------------------------------

NOT_ACCEPTED = {
    "zero-bytes": b"",
    "one-byte": b"\xff",
    "text": b"plain text, not an image\n",
    "html": b"<!doctype html>\n<html><head><title>x</title></head></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect/></svg>',
    "svg-xml": b'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
    "pdf": b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n",
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n",
    "eps-binary": b"\xc5\xd0\xd3\xc6" + b"\x00" * 28 + b"%!PS-Adobe-3.0 EPSF-3.0\n",
    "psd": b"8BPS\x00\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10",
    # ISO-BMFF with neither an AVIF nor a HEIC brand (a MP4 video, say).
    "mp4": b"\x00\x00\x00\x1cftypisom\x00\x00\x02\x00isomiso2mp41" + b"\x00" * 16,
    "mif1-alone": b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1miaf" + b"\x00" * 16,
    "ico": b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\x00" * 40,
    "text-starting-with-BM": b"BMW motorcycles, a list\n" * 4,
}


@pytest.mark.parametrize("data", list(NOT_ACCEPTED.values()), ids=list(NOT_ACCEPTED))
def test_types_outside_the_allow_list_are_unsupported(codec: PillowImageCodec, data: bytes) -> None:
    assert sniff_format(data) is None

    with pytest.raises(UnsupportedImageType):
        codec.probe(data, LIMITS)
    with pytest.raises(UnsupportedImageType):
        codec.transform(data, RESIZE, LIMITS)


def test_a_real_eps_file_never_reaches_ghostscript(
    codec: PillowImageCodec, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import EpsImagePlugin

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Ghostscript was asked to run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n%%EOF\n"

    with pytest.raises(UnsupportedImageType):
        codec.transform(eps, RESIZE, LIMITS)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("hopper.jpg", "jpeg"),
        ("hopper.png", "png"),
        ("hopper.gif", "gif"),
        ("hopper.webp", "webp"),
        ("hopper.avif", "avif"),
        ("hopper.tif", "tiff"),
        ("hopper.bmp", "bmp"),
    ],
)
def test_the_allow_list_is_sniffed_from_magic_bytes(
    corpus_dir: Path, name: str, expected: str
) -> None:
    data = (corpus_dir / "pillow" / name).read_bytes()

    assert sniff_format(data) == expected
    assert sniff_format(data[:32]) == expected


# -- truncated and corrupt data ------------------------------------------------------------------

HOPPERS = ["hopper.jpg", "hopper.png", "hopper.gif", "hopper.webp", "hopper.avif", "hopper.tif"]


@pytest.mark.parametrize("name", [*HOPPERS, "hopper.bmp", "flower.jpg"])
def test_a_truncated_image_is_corrupt(codec: PillowImageCodec, corpus_dir: Path, name: str) -> None:
    data = (corpus_dir / "pillow" / name).read_bytes()
    half = data[: len(data) // 2]

    with pytest.raises(CorruptImage):
        codec.probe(half, LIMITS)
    with pytest.raises(CorruptImage):
        codec.transform(half, RESIZE, LIMITS)


def test_a_jpeg_cut_just_before_its_end_is_corrupt(
    codec: PillowImageCodec, corpus_dir: Path
) -> None:
    data = (corpus_dir / "pillow" / "flower.jpg").read_bytes()

    with pytest.raises(CorruptImage):
        codec.probe(data[: len(data) - 400], LIMITS)


def _idat_offset(data: bytes) -> tuple[int, int]:
    """Offset and length of the first IDAT chunk's payload."""
    offset = 8
    while True:
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == b"IDAT":
            return offset + 8, length
        offset += 12 + length


@pytest.mark.parametrize("where", ["crc", "payload"])
def test_a_png_failing_its_crc_is_corrupt(
    codec: PillowImageCodec, corpus_dir: Path, where: str
) -> None:
    data = bytearray((corpus_dir / "pillow" / "hopper.png").read_bytes())
    start, length = _idat_offset(bytes(data))
    position = start + length if where == "crc" else start + length // 2
    data[position] ^= 0xFF
    broken = bytes(data)

    with pytest.raises(CorruptImage):
        codec.probe(broken, LIMITS)
    with pytest.raises(CorruptImage):
        codec.transform(broken, RESIZE, LIMITS)


def test_a_header_that_lies_about_its_type_is_corrupt(codec: PillowImageCodec) -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"not really a png at all" * 4

    with pytest.raises(CorruptImage):
        codec.probe(data, LIMITS)


def test_a_zero_sized_png_is_corrupt(codec: PillowImageCodec) -> None:
    with pytest.raises(CorruptImage):
        codec.probe(png_header_only(0, 10), LIMITS)


# -- nothing but domain errors, whatever the bytes -----------------------------------------------

MUTATION_TRANSFORMS = [
    Transformation(format="png"),
    parse_transformation({"resize": {"width": 40, "height": 40, "fit": "cover"}, "format": "jpeg"}),
    parse_transformation({"rotate": 90, "grayscale": True, "format": "webp"}),
]


def _outcome(function: Callable[..., object], *args: object) -> str:
    """ "ok", or the name of the domain error; any other exception fails the test."""
    try:
        function(*args)
    except DomainError as exc:
        return type(exc).__name__
    return "ok"


@pytest.mark.parametrize("name", [*HOPPERS, "hopper.bmp", "iss634.gif"])
def test_mutated_images_fail_only_with_domain_errors(
    codec: PillowImageCodec, corpus_dir: Path, name: str
) -> None:
    original = (corpus_dir / "pillow" / name).read_bytes()
    rng = random.Random(f"imgproc-{name}")
    outcomes: dict[str, int] = {}
    for attempt in range(40):
        data = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            # Keep the magic bytes: the point is to reach the decoders.
            data[rng.randrange(16, len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(16, len(data))]
        mutated = bytes(data)
        transformation = MUTATION_TRANSFORMS[attempt % 3]
        for outcome in (
            _outcome(codec.probe, mutated, LIMITS),
            _outcome(codec.transform, mutated, transformation, LIMITS),
        ):
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"\n{name}: {outcomes}")
    assert set(outcomes) <= {"ok", "CorruptImage", "DecompressionBomb", "TooManyFrames"}
