"""PillowImageCodec on real images: every corpus image, orientation, metadata, colour, animation.

Pixel comparisons use the mean absolute difference per channel (0-255). Two independent JPEG
encodings of the same picture differ by about 5 on this scale; a wrong orientation, a missing
colour conversion or a broken flatten differs by 10 to 80. Each threshold below sits between the
two, and each test that relies on one also checks that the wrong answer would be caught.
"""

from __future__ import annotations

import io
import statistics
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from PIL import Image, ImageChops, ImageCms, ImageFilter, ImageOps, ImageStat, JpegImagePlugin

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.domain.errors import CropOutsideImage, DomainError, TooManyFrames
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation, output_size, parse_transformation
from imgproc_core.ports.codec import EncodedImage

PILLOW_NAMES = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF", "gif": "GIF"}
IMAGE_SUFFIXES = {".png", ".jpg", ".gif", ".webp", ".avif", ".tif", ".bmp"}
LIMITS = Limits()

#: Re-encoding noise between two JPEG encodings of one picture is about 5; see the module doc.
SAME_PICTURE = 10.0


@pytest.fixture(scope="module")
def codec() -> PillowImageCodec:
    return PillowImageCodec()


def corpus_images(corpus_dir: Path) -> list[Path]:
    """Every image of the corpus; licences and read-me files are not images by their suffix."""
    return sorted(
        path
        for folder in ("pngsuite", "pillow")
        for path in (corpus_dir / folder).iterdir()
        if path.suffix.lower() in IMAGE_SUFFIXES
    )


def decode(out: EncodedImage) -> Image.Image:
    image = Image.open(io.BytesIO(out.data))
    image.load()
    return image


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per RGB channel."""
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def png_chunks(data: bytes) -> Iterator[bytes]:
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        yield data[offset + 4 : offset + 8]
        offset += 12 + length


# -- every image of the corpus through a set of transformations ---------------------------------

SWEEP = {
    "contain-64-jpeg": {"resize": {"width": 64, "height": 64}, "format": "jpeg"},
    "crop-rotate-png": {
        "crop": {"x": 2, "y": 3, "width": 20, "height": 12},
        "rotate": 90,
        "format": "png",
    },
    "grayscale-webp": {"grayscale": True, "format": "webp"},
    "mirror-avif": {"mirror": True, "resize": {"height": 40}, "format": "avif"},
    "cover-gif": {"resize": {"width": 24, "height": 24, "fit": "cover"}, "format": "gif"},
    "watermark-text": {
        "watermark": {"text": "(c) imgproc", "position": "bottom-right", "opacity": 0.6},
        "sepia": True,
    },
}


@pytest.mark.parametrize("body", list(SWEEP.values()), ids=list(SWEEP))
def test_every_corpus_image_transforms_to_the_planned_output(
    codec: PillowImageCodec, corpus_dir: Path, body: dict[str, Any]
) -> None:
    images = corpus_images(corpus_dir)
    assert len(images) > 170, "the corpus looks incomplete"
    failures: list[str] = []
    produced = 0
    for path in images:
        data = path.read_bytes()
        info = codec.probe(data, LIMITS)
        transformation = parse_transformation(body).resolved(info.format)
        try:
            planned = output_size(info.width, info.height, transformation, LIMITS)
        except CropOutsideImage:
            # The one documented refusal for a valid image: the crop does not fit a tiny one.
            with pytest.raises(CropOutsideImage):
                codec.transform(data, transformation, LIMITS)
            continue
        try:
            out = codec.transform(data, transformation, LIMITS)
            image = decode(out)
        except DomainError as exc:
            failures.append(f"{path.name}: {type(exc).__name__}: {exc}")
            continue
        fmt = transformation.output_format
        actual = (image.format, image.size, out.format, (out.width, out.height))
        if actual != (PILLOW_NAMES[fmt], planned, fmt, planned):
            failures.append(f"{path.name}: got {actual}, planned {fmt} {planned}")
        produced += 1
    assert not failures, "\n".join(failures)
    assert produced > 150


# -- orientation ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upright_hopper(corpus_dir: Path) -> Image.Image:
    return Image.open(corpus_dir / "pillow" / "hopper.jpg").convert("RGB")


@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_comes_out_upright(
    codec: PillowImageCodec, corpus_dir: Path, upright_hopper: Image.Image, orientation: int
) -> None:
    path = corpus_dir / "pillow" / f"hopper_orientation_{orientation}.jpg"
    stored = Image.open(path)
    assert stored.getexif()[0x0112] == orientation
    # Without auto-orient the picture is far from upright: the threshold can tell them apart.
    assert difference(stored, upright_hopper) > 5 * SAME_PICTURE

    out = decode(codec.transform(path.read_bytes(), Transformation(format="png"), LIMITS))

    assert difference(out, upright_hopper) < SAME_PICTURE


@pytest.mark.parametrize("orientation", range(2, 9))
def test_a_crop_is_in_upright_coordinates(
    codec: PillowImageCodec, corpus_dir: Path, upright_hopper: Image.Image, orientation: int
) -> None:
    path = corpus_dir / "pillow" / f"hopper_orientation_{orientation}.jpg"
    transformation = parse_transformation(
        {"crop": {"x": 10, "y": 70, "width": 60, "height": 40}, "format": "png"}
    )

    out = decode(codec.transform(path.read_bytes(), transformation, LIMITS))

    expected = upright_hopper.crop((10, 70, 70, 110))
    assert out.size == (60, 40)
    assert difference(out, expected) < SAME_PICTURE
    assert difference(out, upright_hopper.crop((70, 10, 130, 50))) > 2 * SAME_PICTURE


_TO_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.fixture(scope="module")
def photo(corpus_dir: Path) -> Image.Image:
    """A real photograph, 1000x536, without an ICC profile so colours compare directly."""
    image = Image.open(corpus_dir / "pillow" / "xmp_test.jpg").convert("RGB")
    return image.resize((1000, 536), Image.Resampling.LANCZOS)


def spy_on_draft(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The sizes JPEG draft mode decodes at, one per call."""
    decoded_sizes: list[tuple[int, int]] = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: Any, mode: str | None, size: tuple[int, int] | None) -> Any:
        result = original_draft(self, mode, size)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return decoded_sizes


@pytest.mark.parametrize("orientation", range(1, 9))
def test_draft_decoding_with_crop_and_orientation_matches_a_full_decode(
    codec: PillowImageCodec,
    photo: Image.Image,
    orientation: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stored = photo.transpose(_TO_STORED[orientation]) if orientation > 1 else photo
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif)
    decoded_sizes = spy_on_draft(monkeypatch)
    body = {"crop": {"x": 100, "y": 50, "width": 800, "height": 400}, "resize": {"width": 100}}
    transformation = parse_transformation({**body, "format": "png"})

    assert codec.probe(buffer.getvalue(), LIMITS).width == 1000
    decoded_sizes.clear()
    out = decode(codec.transform(buffer.getvalue(), transformation, LIMITS))

    expected = photo.crop((100, 50, 900, 450)).resize((100, 50), Image.Resampling.LANCZOS)
    assert out.size == (100, 50)
    # q95 re-encoding plus a 1/4-scale decode: well under the noise of two q85 encodings.
    assert difference(out, expected) < SAME_PICTURE / 2
    # libjpeg decoded at 1/4 scale: the crop is 8x the target, short of the 16x that 1/8 needs.
    assert len(decoded_sizes) == 1
    width, height = decoded_sizes[0]
    if orientation >= 5:
        width, height = height, width
    assert (width, height) == (250, 134)


@pytest.mark.parametrize(
    ("source", "target", "decoded"),
    [
        # 1/4 and 1/2 may bring the picture down to the target size itself...
        ((1600, 1200), (400, 300), (400, 300)),
        ((1601, 1201), (400, 300), (401, 301)),
        ((1600, 1200), (320, 240), (400, 300)),
        ((1600, 1200), (800, 600), (800, 600)),
        ((1600, 1200), (801, 601), None),
        # ...1/8, a box filter, only while twice the target size remains.
        ((1600, 1200), (199, 149), (400, 300)),
        ((1600, 1200), (100, 75), (200, 150)),
    ],
)
def test_draft_scale_keeps_at_least_the_target_size(
    codec: PillowImageCodec,
    photo: Image.Image,
    source: tuple[int, int],
    target: tuple[int, int],
    decoded: tuple[int, int] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer = io.BytesIO()
    photo.resize(source).save(buffer, "JPEG", quality=90)
    decoded_sizes = spy_on_draft(monkeypatch)
    resize = {"width": target[0], "height": target[1], "fit": "fill"}

    out = codec.transform(
        buffer.getvalue(), parse_transformation({"resize": resize, "format": "png"}), LIMITS
    )

    assert (out.width, out.height) == target
    assert decoded_sizes == ([decoded] if decoded is not None else [])


def test_a_drafted_resize_keeps_the_picture(codec: PillowImageCodec, photo: Image.Image) -> None:
    """A 1/4-scale decode (of a dense, detailed photograph, almost to the target size) plus
    Lanczos, against Lanczos on the full picture: closer than a q85 encoding of the latter."""
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=95)
    expected = photo.resize((240, 129), Image.Resampling.LANCZOS)
    reencoded = io.BytesIO()
    expected.save(reencoded, "JPEG", quality=85)
    encoding_noise = difference(Image.open(reencoded), expected)

    out = decode(
        codec.transform(
            buffer.getvalue(),
            parse_transformation({"resize": {"width": 240}, "format": "png"}),
            LIMITS,
        )
    )

    assert out.size == (240, 129)
    assert difference(out, expected) < encoding_noise
    assert difference(out, expected.filter(ImageFilter.BoxBlur(2))) > difference(out, expected)


def test_probe_reports_the_upright_size(codec: PillowImageCodec, photo: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    photo.transpose(Image.Transpose.ROTATE_90).save(buffer, "JPEG", exif=exif)

    info = codec.probe(buffer.getvalue(), LIMITS)

    assert (info.width, info.height) == (1000, 536)


# -- metadata ------------------------------------------------------------------------------------

METADATA_SOURCES = [
    "pillow/exif_gps.jpg",
    "pillow/xmp_test.jpg",
    "pillow/flower2.jpg",
    "pillow/pil_sample_cmyk.jpg",
    "pillow/icc_profile_big.jpg",
    "pillow/hopper.png",
    "pillow/hopper.gif",
    "pngsuite/exif2c08.png",
]
METADATA_KEYS = {
    "exif",
    "xmp",
    "XML:com.adobe.xmp",
    "comment",
    "icc_profile",
    "photoshop",
    "date:create",
    "date:modify",
}


@pytest.mark.parametrize("fmt", sorted(PILLOW_NAMES))
@pytest.mark.parametrize("name", METADATA_SOURCES)
def test_no_metadata_reaches_an_output(
    codec: PillowImageCodec, corpus_dir: Path, name: str, fmt: str
) -> None:
    data = (corpus_dir / name).read_bytes()
    source = Image.open(io.BytesIO(data))
    source.load()  # a PNG's text chunks may follow its pixels
    assert METADATA_KEYS & set(source.info), "the source should carry metadata"

    out = codec.transform(
        data, parse_transformation({"resize": {"width": 48}, "format": fmt}), LIMITS
    )

    image = decode(out)
    assert len(image.getexif()) == 0
    assert not METADATA_KEYS & set(image.info)
    for marker in (b"Exif", b"GPS", b"xmpmeta", b"ns.adobe.com", b"Photoshop"):
        assert marker not in out.data
    if fmt == "png":
        assert not {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"} & set(png_chunks(out.data))


def test_gps_exif_is_gone(codec: PillowImageCodec, corpus_dir: Path) -> None:
    data = (corpus_dir / "pillow" / "exif_gps.jpg").read_bytes()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)

    out = decode(codec.transform(data, Transformation(format="jpeg"), LIMITS))

    assert not out.getexif().get_ifd(0x8825)
    assert "exif" not in out.info


# -- colour --------------------------------------------------------------------------------------


def test_an_embedded_profile_is_applied_and_dropped(
    codec: PillowImageCodec, corpus_dir: Path
) -> None:
    path = corpus_dir / "pillow" / "icc_profile_big.jpg"
    source = Image.open(path)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"]))
    in_srgb = ImageCms.profileToProfile(source, profile, ImageCms.createProfile("sRGB"))
    assert in_srgb is not None
    # The profile matters: ignoring it would be visibly wrong.
    assert difference(source, in_srgb) > 5

    out = decode(codec.transform(path.read_bytes(), Transformation(format="png"), LIMITS))

    assert "icc_profile" not in out.info
    assert difference(out, in_srgb) < 1


def test_an_srgb_profile_is_not_applied(
    codec: PillowImageCodec, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Converting from sRGB to sRGB changes nothing: no pass over the pixels is made for the
    profile most photographs carry, and the output has the pixels as stored."""
    path = corpus_dir / "pillow" / "flower2.jpg"
    source = Image.open(path)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    converted: list[tuple[int, int]] = []
    original_apply = ImageCms.ImageCmsTransform.apply

    def spy(self: Any, im: Image.Image, out: Image.Image | None = None) -> Image.Image:
        converted.append(im.size)
        return original_apply(self, im, out)

    monkeypatch.setattr(ImageCms.ImageCmsTransform, "apply", spy)

    out = decode(codec.transform(path.read_bytes(), Transformation(format="png"), LIMITS))

    # The profile's effect may be measured once on a strip of probe colours; never the image.
    assert source.size not in converted
    assert ImageChops.difference(out.convert("RGB"), source.convert("RGB")).getbbox() is None


def test_a_wide_gamut_profile_is_still_applied(codec: PillowImageCodec, corpus_dir: Path) -> None:
    path = corpus_dir / "pillow" / "xmp_test.jpg"
    source = Image.open(path)
    profile = ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"]))
    assert "Adobe RGB" in ImageCms.getProfileDescription(profile)
    in_srgb = ImageCms.profileToProfile(source, profile, ImageCms.createProfile("sRGB"))
    assert in_srgb is not None
    skipped_conversion = difference(source, in_srgb)
    assert skipped_conversion > 1

    out = decode(codec.transform(path.read_bytes(), Transformation(format="png"), LIMITS))

    assert difference(out, in_srgb) < skipped_conversion / 10


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "avif", "gif"])
def test_cmyk_comes_out_with_the_colours_of_the_rgb_sample(
    codec: PillowImageCodec, corpus_dir: Path, fmt: str
) -> None:
    transformation = parse_transformation({"format": fmt}).resolved("jpeg")
    cmyk = (corpus_dir / "pillow" / "pil_sample_cmyk.jpg").read_bytes()
    rgb = (corpus_dir / "pillow" / "pil_sample_rgb.jpg").read_bytes()
    assert Image.open(io.BytesIO(cmyk)).mode == "CMYK"

    from_cmyk = decode(codec.transform(cmyk, transformation, LIMITS))
    from_rgb = decode(codec.transform(rgb, transformation, LIMITS))

    assert from_cmyk.mode != "CMYK"
    assert difference(from_cmyk, from_rgb) < SAME_PICTURE
    assert difference(from_cmyk, ImageOps.invert(from_rgb.convert("RGB"))) > 5 * SAME_PICTURE


# -- pixel modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pngsuite/basn0g16.png", "pillow/16bit.cropped.tif"])
def test_sixteen_bit_grey_is_scaled_not_clipped(
    codec: PillowImageCodec, corpus_dir: Path, name: str
) -> None:
    path = corpus_dir / name
    source = Image.open(path)
    assert source.mode.startswith("I;16")
    samples = cast("Sequence[int]", source.convert("I").get_flattened_data())
    expected_mean = statistics.fmean(samples) / 257

    out = decode(codec.transform(path.read_bytes(), Transformation(format="png"), LIMITS))

    assert out.mode == "L"
    assert abs(ImageStat.Stat(out).mean[0] - expected_mean) < 1.5


def test_alpha_is_flattened_on_white_for_jpeg(codec: PillowImageCodec, corpus_dir: Path) -> None:
    path = corpus_dir / "pngsuite" / "basn6a08.png"
    source = Image.open(path).convert("RGBA")
    transparent = next(
        (x, y)
        for y in range(source.height)
        for x in range(source.width)
        if source.getpixel((x, y))[3] == 0  # type: ignore[index]
    )

    out = decode(codec.transform(path.read_bytes(), Transformation(format="jpeg"), LIMITS))

    assert out.mode == "RGB"
    assert all(channel > 245 for channel in out.getpixel(transparent))  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "fmt"), [("tbbn0g04.png", "png"), ("tbrn2c08.png", "webp")])
def test_colour_key_transparency_becomes_alpha(
    codec: PillowImageCodec, corpus_dir: Path, name: str, fmt: str
) -> None:
    path = corpus_dir / "pngsuite" / name
    assert Image.open(path).info.get("transparency") is not None

    out = decode(codec.transform(path.read_bytes(), parse_transformation({"format": fmt}), LIMITS))

    assert out.mode in {"LA", "RGBA"}
    assert out.getchannel("A").getextrema()[0] == 0


def test_gif_output_keeps_transparency(codec: PillowImageCodec, corpus_dir: Path) -> None:
    path = corpus_dir / "pngsuite" / "basn6a08.png"

    out = decode(codec.transform(path.read_bytes(), Transformation(format="gif"), LIMITS))

    assert out.mode == "P"
    assert "transparency" in out.info
    assert out.convert("RGBA").getchannel("A").getextrema() == (0, 255)


# -- animation -----------------------------------------------------------------------------------


def frame_timing(image: Image.Image) -> tuple[list[Image.Image], list[int]]:
    frames, durations = [], []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        image.load()
        frames.append(image.convert("RGB"))
        durations.append(int(image.info.get("duration", 0)))
    return frames, durations


@pytest.mark.parametrize("fmt", ["gif", "webp"])
@pytest.mark.parametrize("name", ["iss634.gif", "iss634.webp"])
def test_an_animation_keeps_its_frames_and_timing(
    codec: PillowImageCodec, corpus_dir: Path, name: str, fmt: str
) -> None:
    data = (corpus_dir / "pillow" / name).read_bytes()
    source_frames, source_durations = frame_timing(Image.open(io.BytesIO(data)))
    assert len(source_frames) == 42

    transformation = parse_transformation({"format": fmt, "quality": 90})
    out = codec.transform(data, transformation, LIMITS)

    image = Image.open(io.BytesIO(out.data))
    frames, durations = frame_timing(image)
    assert out.frames == len(frames) == 42
    assert durations == source_durations
    assert image.info.get("loop") == 0
    for index in (0, 20, 41):
        assert difference(frames[index], source_frames[index]) < SAME_PICTURE
    assert difference(frames[20], source_frames[0]) > difference(frames[20], source_frames[20])


def test_every_frame_gets_the_same_geometry(codec: PillowImageCodec, corpus_dir: Path) -> None:
    data = (corpus_dir / "pillow" / "iss634.gif").read_bytes()
    transformation = parse_transformation(
        {"crop": {"x": 20, "y": 30, "width": 200, "height": 100}, "rotate": 90, "format": "webp"}
    )

    out = codec.transform(data, transformation, LIMITS)

    image = Image.open(io.BytesIO(out.data))
    assert getattr(image, "n_frames", 1) == 42
    for index in (0, 41):
        image.seek(index)
        assert image.size == (100, 200)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_a_transparent_animation_keeps_its_transparency(codec: PillowImageCodec, fmt: str) -> None:
    frames = []
    for index in range(4):
        frame = Image.new("RGBA", (40, 30), (0, 0, 0, 0))
        frame.paste((255, 0, 0, 255), (index * 8, 10, index * 8 + 10, 20))
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, disposal=2)

    out = codec.transform(buffer.getvalue(), parse_transformation({"format": fmt}), LIMITS)

    image = Image.open(io.BytesIO(out.data))
    assert getattr(image, "n_frames", 1) == 4
    for index in range(4):
        image.seek(index)
        rgba = image.convert("RGBA")
        red, green, blue, alpha = rgba.getpixel((index * 8 + 5, 15))  # type: ignore[misc]
        # Lossy WebP: nearly the pure red of the source.
        assert min(red, alpha) > 240
        assert max(green, blue) < 16
        # Around the square, and where it was a frame ago, the canvas is transparent.
        assert rgba.getpixel((39, 0))[3] == 0  # type: ignore[index]
        if index > 0:
            assert rgba.getpixel((index * 8 - 6, 15))[3] == 0  # type: ignore[index]


@pytest.mark.parametrize("name", ["iss634.gif", "iss634.webp"])
def test_too_many_frames_are_refused(codec: PillowImageCodec, corpus_dir: Path, name: str) -> None:
    data = (corpus_dir / "pillow" / name).read_bytes()
    limits = Limits(max_frames=10)

    with pytest.raises(TooManyFrames):
        codec.probe(data, limits)
    with pytest.raises(TooManyFrames):
        codec.transform(data, Transformation(format="gif"), limits)


def test_a_still_output_takes_the_first_frame(codec: PillowImageCodec, corpus_dir: Path) -> None:
    data = (corpus_dir / "pillow" / "iss634.gif").read_bytes()
    first = Image.open(io.BytesIO(data)).convert("RGB")

    out = codec.transform(data, Transformation(format="png"), LIMITS)

    assert out.frames == 1
    assert difference(decode(out), first) < 1


# -- filters and watermarks ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hopper_png(corpus_dir: Path) -> bytes:
    return (corpus_dir / "pillow" / "hopper.png").read_bytes()


def test_grayscale_and_sepia(codec: PillowImageCodec, hopper_png: bytes) -> None:
    grey = decode(codec.transform(hopper_png, parse_transformation({"grayscale": True}), LIMITS))
    sepia = decode(codec.transform(hopper_png, parse_transformation({"sepia": True}), LIMITS))

    assert grey.mode == "L"
    red, green, blue = (ImageStat.Stat(band).mean[0] for band in sepia.split())
    assert red > green > blue


def test_blur_softens_and_sharpen_crisps(codec: PillowImageCodec, hopper_png: bytes) -> None:
    def detail(image: Image.Image) -> float:
        """How far each pixel is from its neighbourhood's average."""
        grey = image.convert("L")
        return ImageStat.Stat(
            ImageChops.difference(grey, grey.filter(ImageFilter.BoxBlur(1)))
        ).mean[0]

    plain = decode(codec.transform(hopper_png, Transformation(format="png"), LIMITS))
    blurred = decode(codec.transform(hopper_png, parse_transformation({"blur": 3}), LIMITS))
    sharp = decode(codec.transform(hopper_png, parse_transformation({"sharpen": 4}), LIMITS))

    assert detail(blurred) < detail(plain) / 2
    assert detail(sharp) > detail(plain) * 1.2


@pytest.mark.parametrize(
    ("position", "corner"),
    [("bottom-right", (0.75, 0.9)), ("top-left", (0.1, 0.05)), ("center", (0.4, 0.48))],
)
def test_a_text_watermark_marks_only_its_corner(
    codec: PillowImageCodec, hopper_png: bytes, position: str, corner: tuple[float, float]
) -> None:
    body = {"watermark": {"text": "imgproc", "position": position, "opacity": 1, "scale": 1}}
    plain = decode(codec.transform(hopper_png, Transformation(format="png"), LIMITS))

    marked = decode(codec.transform(hopper_png, parse_transformation(body), LIMITS))

    changed = ImageChops.difference(plain.convert("RGB"), marked.convert("RGB")).getbbox()
    assert changed is not None
    left, top, right, bottom = changed
    x, y = corner[0] * 128, corner[1] * 128
    assert left <= x <= right
    assert top <= y <= bottom
    assert (right - left) * (bottom - top) < 128 * 128 / 3


def test_an_image_watermark_is_scaled_placed_and_faded(
    codec: PillowImageCodec, hopper_png: bytes
) -> None:
    logo = io.BytesIO()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(logo, "PNG")
    body = {"watermark": {"image_id": "logo", "position": "top-left", "scale": 0.5, "opacity": 1}}
    faded_body = {"watermark": {**body["watermark"], "opacity": 0.5}}

    marked = decode(
        codec.transform(hopper_png, parse_transformation(body), LIMITS, watermark=logo.getvalue())
    ).convert("RGB")
    faded = decode(
        codec.transform(
            hopper_png, parse_transformation(faded_body), LIMITS, watermark=logo.getvalue()
        )
    ).convert("RGB")

    margin = round(0.03 * 128)
    assert marked.getpixel((margin + 2, margin + 2)) == (255, 0, 0)
    assert marked.getpixel((margin + 62, margin + 2)) == (255, 0, 0)  # 64 px wide: half of 128
    assert marked.getpixel((margin + 62, margin + 34)) != (255, 0, 0)  # 32 px high
    red, green, _ = faded.getpixel((margin + 10, margin + 10))  # type: ignore[misc]
    assert 100 < red < 250
    assert green < 200


def test_a_long_text_shrinks_to_fit(codec: PillowImageCodec, hopper_png: bytes) -> None:
    body = {"watermark": {"text": "W" * 60, "scale": 1, "position": "center", "opacity": 1}}
    plain = decode(codec.transform(hopper_png, Transformation(format="png"), LIMITS))

    out = decode(codec.transform(hopper_png, parse_transformation(body), LIMITS))

    changed = ImageChops.difference(plain.convert("RGB"), out.convert("RGB")).getbbox()
    assert changed is not None
    left, _, right, _ = changed
    margin = round(0.03 * 128)
    # The whole line fits between the margins, and fills most of the width.
    assert left >= margin - 1
    assert right <= 128 - margin + 1
    assert right - left > 128 / 2


@pytest.mark.parametrize(
    ("name", "transparent"),
    [
        ("basn6a08.png", True),  # RGBA
        ("tbbn3p08.png", True),  # a palette with a transparent entry
        ("tbrn2c08.png", True),  # RGB with a colour key
        ("basn2c08.png", False),
        ("basn0g08.png", False),
    ],
)
def test_the_probe_says_whether_an_image_may_be_transparent(
    corpus_dir: Path, name: str, transparent: bool
) -> None:
    data = (corpus_dir / "pngsuite" / name).read_bytes()
    assert PillowImageCodec().probe(data, Limits()).transparent is transparent
