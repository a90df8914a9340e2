"""The JPEG marker walk that checks uploads, against libjpeg as Pillow drives it.

The walk must accept every whole JPEG a decoder accepts (real ones from the corpus and every
encoding Pillow can write), refuse every cut-short one, and never let through damage that makes
libjpeg give up: a mutated file the walk accepts must decode in full.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from imgproc_core.adapters.pillow.jpeg_structure import check_jpeg_structure
from imgproc_core.domain.errors import CorruptImage

# Mutated files carry broken EXIF, which Pillow's TIFF reader warns about.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")


def corpus_jpegs(corpus_dir: Path) -> list[Path]:
    found = sorted(
        path
        for path in corpus_dir.rglob("*")
        if path.is_file() and path.read_bytes()[:2] == b"\xff\xd8"
    )
    assert len(found) >= 10, "the corpus should hold a dozen JPEGs"
    return found


def encoded(**options: object) -> bytes:
    """A 96x64 gradient with some texture, encoded by Pillow with ``options``."""
    image = Image.linear_gradient("L").resize((96, 64)).convert("RGB")
    image.paste((200, 30, 90), (10, 10, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


ENCODINGS = {
    "baseline": {"quality": 85},
    "progressive": {"quality": 85, "progressive": True},
    "optimized": {"quality": 85, "optimize": True},
    "4:4:4": {"quality": 95, "subsampling": 0},
    "4:2:2": {"quality": 95, "subsampling": 1},
    "restart markers": {"quality": 85, "restart_marker_blocks": 2},
    "progressive with restarts": {"quality": 70, "progressive": True, "restart_marker_rows": 1},
    "with a comment": {"quality": 85, "comment": b"made here"},
}


def decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


def accepted(data: bytes) -> bool:
    try:
        check_jpeg_structure(data)
    except CorruptImage:
        return False
    return True


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_pillow_writes_is_whole(encoding: str) -> None:
    data = encoded(**ENCODINGS[encoding])

    check_jpeg_structure(data)


def test_every_jpeg_of_the_corpus_is_whole(corpus_dir: Path) -> None:
    for path in corpus_jpegs(corpus_dir):
        check_jpeg_structure(path.read_bytes(), path.name)


def test_bytes_after_the_end_of_image_are_left_alone() -> None:
    # Cameras append trailers; an MPO's second picture follows the first one's EOI.
    check_jpeg_structure(encoded(quality=80) + b"\x00trailer" + encoded(quality=60))


@pytest.mark.parametrize("encoding", ["baseline", "progressive", "restart markers"])
def test_every_cut_is_refused(encoding: str) -> None:
    data = encoded(**ENCODINGS[encoding])

    accepted_cuts = [cut for cut in range(len(data)) if accepted(data[:cut])]

    assert accepted_cuts == []


def test_a_truncated_photograph_names_the_problem(corpus_dir: Path) -> None:
    data = (corpus_dir / "pillow" / "flower.jpg").read_bytes()

    with pytest.raises(CorruptImage, match="truncated"):
        check_jpeg_structure(data[: len(data) - 2])


def _segment(data: bytes, marker: int) -> int:
    """Offset of the first segment with ``marker`` (its 0xFF byte)."""
    offset = data.index(bytes([0xFF, marker]))
    assert offset > 0
    return offset


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("no start marker", "start-of-image"),
        ("sampling factor 0", "sampling factors"),
        ("quantization table 7", "quantization table"),
        ("huffman table index 5", "Huffman table"),
        ("huffman counts over 256", "Huffman table"),
        ("scan names an unknown component", "components"),
        ("scan without data", "scan without data"),
        ("unknown marker between scans", "unexpected marker"),
        ("no end of image", "truncated"),
    ],
)
def test_damaged_headers_are_refused(damage: str, expected: str) -> None:
    data = bytearray(encoded(quality=85))
    sof, dqt, dht, sos = (_segment(bytes(data), marker) for marker in (0xC0, 0xDB, 0xC4, 0xDA))
    if damage == "no start marker":
        data[1] = 0x00
    elif damage == "sampling factor 0":
        data[sof + 11] = 0x02  # first component: H 0, V 2
    elif damage == "quantization table 7":
        data[dqt + 4] = 0x07
    elif damage == "huffman table index 5":
        data[dht + 4] = 0x05
    elif damage == "huffman counts over 256":
        data[dht + 5 : dht + 21] = bytes([255] * 16)
    elif damage == "scan names an unknown component":
        data[sos + 5] = 0x09
    elif damage == "scan without data":
        length = int.from_bytes(data[sos + 2 : sos + 4], "big")
        data = data[: sos + 2 + length] + b"\xff\xd9"
    elif damage == "unknown marker between scans":
        data = data[:-2] + b"\xff\x02\xff\xd9"
    elif damage == "no end of image":
        data = data[:-2]

    with pytest.raises(CorruptImage, match=expected):
        check_jpeg_structure(bytes(data))


def test_what_the_walk_accepts_decodes_in_full(corpus_dir: Path) -> None:
    """Mutated and cut corpus JPEGs: whatever passes the walk, libjpeg decodes to the end.

    The walk is allowed to be stricter than libjpeg (it refuses stray bytes where a marker
    belongs, which libjpeg skips with a warning), never more lenient. The counts are printed
    (run with ``-s``).
    """
    outcomes = {"both accept": 0, "both refuse": 0, "only the walk refuses": 0}
    lenient: list[str] = []
    for path in corpus_jpegs(corpus_dir):
        original = path.read_bytes()
        rng = random.Random(f"walk-{path.name}")
        for attempt in range(60):
            data = bytearray(original)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(2, len(data))] = rng.randrange(256)
            if rng.random() < 0.4:
                data = data[: rng.randrange(2, len(data))]
            walk, decoder = accepted(bytes(data)), decodes(bytes(data))
            if walk and not decoder:
                lenient.append(f"{path.name} #{attempt}")
            elif walk:
                outcomes["both accept"] += 1
            elif decoder:
                outcomes["only the walk refuses"] += 1
            else:
                outcomes["both refuse"] += 1
    print(f"\nmutated JPEGs: {outcomes}")

    assert lenient == []
    assert outcomes["both accept"] > 0
    assert outcomes["both refuse"] > 0
