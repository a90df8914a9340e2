"""Pixel modes and colour: everything leaves in L, LA, RGB or RGBA, with sRGB colours.

Colour policy: an embedded ICC profile is applied (converted to sRGB with LittleCMS) and then
dropped, rather than copied into the output. One rule then covers every output format, GIF
included, which has no place for a profile; browsers and tools that ignore profiles show the
right colours; a CMYK photograph comes out right in every format; filters and watermarks work in
a known space; and a large profile no longer rides along in every thumbnail. The cost, a gamut
wider than sRGB (Adobe RGB, Display P3) clipped to sRGB, is the usual trade for web delivery.
The conversion runs after the resize, at output size, where it is cheap, and not at all for a
profile that already is sRGB.

Grey profiles are dropped without conversion: a grey image's tone curve is close to sRGB's and
converting would turn it into colour.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Final

from PIL import Image, ImageChops, ImageCms

from imgproc_core.domain.errors import UnsupportedImageType

#: Modes the geometry steps work in. CMYK stays CMYK until its profile can be applied.
GEOMETRY_MODES: Final = frozenset({"L", "LA", "RGB", "RGBA", "CMYK"})
ALPHA_MODES: Final = frozenset({"LA", "RGBA"})

#: 16-bit grey, and 32-bit "I", read as 16-bit samples (how 16-bit grey arrives from some
#: decoders); values outside 0..65535 clip.
_SIXTEEN_BIT: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
#: Modes with a direct counterpart among the geometry modes.
_COUNTERPARTS: Final[dict[str, str]] = {"La": "LA", "RGBa": "RGBA", "RGBX": "RGB", "PA": "RGBA"}
#: An ICC header names the colour space of the data it describes at bytes 16..20.
_PROFILE_SPACE: Final = slice(16, 20)
_RGB_SPACE: Final = b"RGB "
_CMYK_SPACE: Final = b"CMYK"


def geometry_mode(image: Image.Image) -> Image.Image:
    """The image in a mode that crops and resamples well (see :data:`GEOMETRY_MODES`).

    Palettes and bilevel images become RGB, RGBA or L (resampling a palette would need nearest
    neighbour); 16-bit grey is scaled to 8 bits (a plain conversion clips at 255); transparency
    given as a colour key (PNG tRNS) becomes an alpha channel.
    """
    result = _geometry_mode(image)
    if result is not image:
        # Conversions copy ``info``; a colour key left there would be applied a second time.
        result.info.pop("transparency", None)
    return result


def _geometry_mode(image: Image.Image) -> Image.Image:
    mode = image.mode
    key = image.info.get("transparency")
    if mode in {"1", "L"}:
        grey = image.convert("L") if mode == "1" else image
        if isinstance(key, int):
            # Pillow's own L -> LA conversion ignores the key; build the alpha from it.
            return _keyed(grey, grey.point([0 if v == key else 255 for v in range(256)]))
        return grey
    if mode in _SIXTEEN_BIT:
        wide = image.convert("I")
        grey = wide.point(_sixteen_to_eight(), "L")
        if isinstance(key, int):
            return _keyed(grey, wide.point([0 if v == key else 255 for v in range(65536)], "L"))
        return grey
    if mode in GEOMETRY_MODES and not (mode == "RGB" and image.has_transparency_data):
        return image
    if mode == "RGB":
        return image.convert("RGBA")
    if mode == "P":
        return image.convert("RGBA" if image.has_transparency_data else "RGB")
    if mode in _COUNTERPARTS:
        return image.convert(_COUNTERPARTS[mode])
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise UnsupportedImageType(f"images in colour mode {mode} are not supported") from exc


def _keyed(grey: Image.Image, alpha: Image.Image) -> Image.Image:
    return Image.merge("LA", (grey, alpha))


@lru_cache(maxsize=1)
def _sixteen_to_eight() -> list[int]:
    """A lookup table from 16-bit to 8-bit samples, rounding (65535 -> 255, 257 -> 1)."""
    return [round(value / 257) for value in range(65536)]


def to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Apply the source's profile (sRGB out) and leave L, LA, RGB or RGBA."""
    if image.mode == "CMYK":
        if icc_profile is not None and icc_profile[_PROFILE_SPACE] == _CMYK_SPACE:
            converted = _convert(image, icc_profile, "RGB")
            if converted is not None:
                return converted
        return image.convert("RGB")
    if (
        icc_profile is not None
        and image.mode in {"RGB", "RGBA"}
        and icc_profile[_PROFILE_SPACE] == _RGB_SPACE
    ):
        converted = _convert(image, icc_profile, image.mode)
        if converted is not None:
            return converted
    return image


def _convert(image: Image.Image, icc_profile: bytes, output_mode: str) -> Image.Image | None:
    transform = _transform_to_srgb(icc_profile, image.mode, output_mode)
    if transform is None:
        return None
    return transform.apply(image)


@lru_cache(maxsize=32)
def _transform_to_srgb(
    icc_profile: bytes, input_mode: str, output_mode: str
) -> ImageCms.ImageCmsTransform | None:
    """A LittleCMS transform, built once per profile: photographs from one camera or one phone
    share a handful of profiles, and building a transform costs more than applying it to a
    thumbnail. A profile LittleCMS cannot read counts as absent, and so does one that already
    is sRGB (most photographs carry one): applying it would cost a pass over the pixels (a
    tenth of a 12 MP to 800x600 job) and change nothing."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        transform = ImageCms.buildTransform(
            source,
            ImageCms.createProfile("sRGB"),
            input_mode,
            output_mode,
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
        )
        if input_mode == output_mode and _moves_no_colour(transform, input_mode):
            return None
        return transform
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None


#: Every colour whose channels are multiples of 17 (16 levels each), then every grey level.
_PROBE_COLOURS: Final = [
    *(
        (red * 17, green * 17, blue * 17)
        for red in range(16)
        for green in range(16)
        for blue in range(16)
    ),
    *((level, level, level) for level in range(256)),
]
#: A transform that moves no channel of any probe colour by more than this is the identity:
#: sRGB profiles from different vendors (a 1024-entry tone curve, or LittleCMS's parametric
#: one) round-trip to within one level of each other.
_SAME_COLOUR_LEVELS: Final = 1


def _moves_no_colour(transform: ImageCms.ImageCmsTransform, mode: str) -> bool:
    """Judged by what the profile does, not by its name: descriptions are free text."""
    probe = Image.new("RGB", (len(_PROBE_COLOURS), 1))
    probe.putdata(_PROBE_COLOURS)
    probe = probe.convert(mode)
    extrema = ImageChops.difference(transform.apply(probe), probe).getextrema()
    return all(high <= _SAME_COLOUR_LEVELS for _, high in extrema)  # type: ignore[misc]


def flatten(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Drop the alpha channel by laying the image on an opaque ``background``."""
    if image.mode not in ALPHA_MODES:
        return image
    opaque_mode = "L" if image.mode == "LA" else "RGB"
    fill: int | tuple[int, int, int] = background
    if opaque_mode == "L":
        fill = round(0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2])
    canvas = Image.new(opaque_mode, image.size, fill)
    canvas.paste(image, (0, 0), image.getchannel("A"))
    return canvas


def drop_opaque_alpha(image: Image.Image) -> Image.Image:
    """RGBA or LA whose alpha is 255 everywhere carries nothing: store it without."""
    if image.mode in ALPHA_MODES and image.getchannel("A").getextrema() == (255, 255):
        return image.convert("L" if image.mode == "LA" else "RGB")
    return image
