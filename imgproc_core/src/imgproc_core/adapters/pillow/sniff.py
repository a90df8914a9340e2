"""Identify an image from its first bytes, against the allow-list, before any decoder sees it.

The type of an upload is decided here and nowhere else: not from a filename, not from a
Content-Type, and not by letting Pillow try every decoder it has (EPS would start Ghostscript,
PSD, PDF and others have their own parsers). Only the decoder for the sniffed format is opened.
"""

from __future__ import annotations

from typing import Final

#: Fixed signatures at offset 0. TIFF includes the BigTIFF variants (``+`` instead of ``*``).
_SIGNATURES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
)

#: AVIF is an ISO-BMFF file whose ``ftyp`` box names an AVIF brand; HEIC shares the container
#: and names HEVC brands (``mif1``, the generic image brand, alone says nothing: AVIF files
#: list it too, so AVIF is recognised first).
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
_HEIC_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm"})
#: An ``ftyp`` box is a few dozen bytes; a larger claim is not worth reading further.
_MAX_FTYP_BYTES: Final = 256

#: "BM" alone is two printable letters; the DIB header sizes the BMP decoder knows make the
#: signature specific enough that a text file starting with "BM" is not taken for an image.
_BMP_DIB_HEADER_SIZES: Final = frozenset({12, 40, 52, 56, 64, 108, 124})


def sniff_format(data: bytes) -> str | None:
    """The allow-listed format ``data`` starts like (``"jpeg"``, ``"png"``...), or None."""
    for signature, fmt in _SIGNATURES:
        if data.startswith(signature):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    brands = _ftyp_brands(data)
    if _AVIF_BRANDS & brands:
        return "avif"
    if _HEIC_BRANDS & brands:
        return "heic"
    if _is_bmp(data):
        return "bmp"
    return None


def _ftyp_brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF file's ``ftyp`` box; none for anything
    else."""
    if data[4:8] != b"ftyp":
        return set()
    box_size = int.from_bytes(data[0:4], "big")
    if box_size < 16:
        return set()
    end = min(box_size, len(data), _MAX_FTYP_BYTES)
    # Bytes 12..16 are the minor version; the compatible brands follow, four bytes each.
    compatible = {data[offset : offset + 4] for offset in range(16, end - 3, 4)}
    return compatible | {data[8:12]}


def _is_bmp(data: bytes) -> bool:
    if not data.startswith(b"BM") or len(data) < 18:
        return False
    return int.from_bytes(data[14:18], "little") in _BMP_DIB_HEADER_SIZES
