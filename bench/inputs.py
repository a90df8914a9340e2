"""Benchmark inputs: real photographs from the test corpus, scaled up, cached under var/bench.

A 12 MP and a 50 MP photograph are made from the largest photograph of the corpus: scaled up with
Lanczos to cover the frame, cropped to 4:3, and saved the way a camera or phone does (4:2:0
chroma subsampling, quality 92, the usual sRGB IEC61966-2.1 ICC profile, EXIF with an
orientation of 1).
Upscaling keeps the photograph's structure (edges, textures) but smooths its finest detail; a
sensor-like grain (Gaussian, per channel) is added back so that the file, about 3.3 MB at 12 MP,
costs the entropy decoder what a camera's does. Every row compares two pipelines on the same
file, so the ratio is what counts.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageChops, ImageCms

ROOT: Final = Path(__file__).resolve().parent.parent
CACHE: Final = ROOT / "var" / "bench" / "inputs"
#: The largest real photograph of the corpus (2000x1072, Adobe RGB).
PHOTOGRAPH: Final = "pillow/xmp_test.jpg"
#: Bumped when the recipe below changes, so stale cached inputs are not reused.
#: A corpus photograph that carries the usual sRGB profile.
SRGB_SOURCE: Final = "pillow/flower2.jpg"
RECIPE: Final = 3
#: Standard deviation of the added grain, in 8-bit levels.
GRAIN: Final = 5


@dataclass(frozen=True, slots=True)
class Input:
    name: str
    path: Path
    width: int
    height: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6

    def read(self) -> bytes:
        return self.path.read_bytes()


def corpus_dir() -> Path:
    """The test corpus: ``IMGPROC_TEST_CORPUS``, else ``../shared/corpus`` beside the repo."""
    configured = os.environ.get("IMGPROC_TEST_CORPUS")
    path = Path(configured) if configured else ROOT.parent / "shared" / "corpus"
    if not (path / PHOTOGRAPH).is_file():
        raise SystemExit(
            f"bench: the image corpus is missing at {path}: set IMGPROC_TEST_CORPUS to the "
            "folder that holds pillow/ and pngsuite/"
        )
    return path


def _srgb_profile() -> bytes:
    """The "sRGB IEC61966-2.1" profile that cameras embed, taken from a corpus photograph."""
    with Image.open(corpus_dir() / SRGB_SOURCE) as source:
        profile = source.info.get("icc_profile")
    if not isinstance(profile, bytes):
        raise SystemExit(f"bench: {SRGB_SOURCE} in the corpus has lost its ICC profile")
    return profile


def _scaled_photograph(width: int, height: int) -> Image.Image:
    with Image.open(corpus_dir() / PHOTOGRAPH) as source:
        source.load()
        # The corpus photograph is Adobe RGB: bring it to sRGB once, as a camera set to sRGB
        # would have stored it.
        profile = source.info.get("icc_profile")
        image = source.convert("RGB")
        if profile:
            converted = ImageCms.profileToProfile(
                image,
                ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                ImageCms.createProfile("sRGB"),
                outputMode="RGB",
            )
            assert converted is not None
            image = converted
    scale = max(width / image.width, height / image.height)
    scaled = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    left = (scaled[0] - width) / 2 / scale
    top = (scaled[1] - height) / 2 / scale
    box = (left, top, left + width / scale, top + height / scale)
    image = image.resize((width, height), Image.Resampling.LANCZOS, box=box)
    grain = Image.merge("RGB", [Image.effect_noise(image.size, GRAIN) for _ in range(3)])
    return ImageChops.add(image, grain, scale=1.0, offset=-128)


def _camera_jpeg(image: Image.Image, path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 1  # orientation
    exif[0x010F] = "imgproc bench"  # make
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    image.save(
        partial,
        "JPEG",
        quality=92,
        subsampling="4:2:0",
        icc_profile=_srgb_profile(),
        exif=exif.tobytes(),
    )
    partial.replace(path)


def photograph(width: int, height: int) -> Input:
    """The corpus photograph as a ``width`` x ``height`` camera JPEG (cached)."""
    name = f"photo-{width}x{height}"
    path = CACHE / f"{name}-r{RECIPE}.jpg"
    if not path.is_file():
        _camera_jpeg(_scaled_photograph(width, height), path)
    return Input(name, path, width, height)


def photo_12mp() -> Input:
    return photograph(4000, 3000)


def photo_50mp() -> Input:
    return photograph(8160, 6120)


def photo_2mp() -> Input:
    """A phone-sized upload, 1632x1224: what the worker scenario's jobs render."""
    return photograph(1632, 1224)


#: The upload the API scenario sends, a little under 1 MB.
UPLOAD_BYTES: Final = 1_000_000


def photo_upload() -> Input:
    """The 12 MP photograph at 2048x1536, at the highest quality that stays under 1 MB."""
    width, height = 2048, 1536
    name = f"upload-{width}x{height}"
    path = CACHE / f"{name}-r{RECIPE}.jpg"
    if not path.is_file():
        with Image.open(photo_12mp().path) as source:
            image = source.resize((width, height), Image.Resampling.LANCZOS)
        best = b""
        for quality in range(98, 40, -1):
            out = io.BytesIO()
            image.save(out, "JPEG", quality=quality, subsampling="4:2:0")
            if out.tell() <= UPLOAD_BYTES:
                best = out.getvalue()
                break
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(best)
    return Input(name, path, width, height)
