"""Check that a JPEG is whole by walking its markers, without decoding a pixel.

An upload must be refused when it is truncated or corrupt, and the check runs on every upload,
so it has to cost far less than the decode the worker will do anyway. A decode at 1/8 scale
still runs the entropy decoder over every byte (about 6 ms for a 1 MB photograph here); this
walk costs a regular-expression scan of the same bytes (about 0.3 ms).

What it checks:

- the file starts with SOI and every segment before, between and after the scans is a known
  marker whose length fits in the file;
- the frame header (SOF), the quantization and Huffman tables (DQT, DHT), the restart interval
  (DRI) and every scan header (SOS) have the length their contents say, and hold what libjpeg
  would refuse to decode otherwise: a sample precision it knows, sampling factors from 1 to 4,
  table indexes from 0 to 3, Huffman code counts that form a prefix code, scans naming the
  frame's components once each and only tables already defined, a progressive scan's spectral
  selection;
- every scan's entropy-coded data ends at a marker that may follow a scan, and the end-of-image
  marker (EOI) is reached. Anything after EOI (camera trailers, an MPO's second picture) is
  left alone, as decoders do.

A truncated file never has its EOI, so it is always refused. What a walk cannot see is damage
inside the entropy-coded data that keeps its markers intact; libjpeg does not refuse that either
(it reports a warning and fills the damaged blocks), so a full decode would have let it through
as well. Anything else only a decoder would notice surfaces when the image is transformed: the
job fails for good with ``corrupt_image``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from imgproc_core.domain.errors import CorruptImage

_SOI: Final = b"\xff\xd8"
_EOI: Final = 0xD9
_SOS: Final = 0xDA
_DQT: Final = 0xDB
_DHT: Final = 0xC4
_DRI: Final = 0xDD
_DNL: Final = 0xDC
_DAC: Final = 0xCC
_COM: Final = 0xFE

#: Progressive start-of-frame markers (Huffman and arithmetic coded).
_PROGRESSIVE: Final = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
#: Lossless start-of-frame markers, whose samples may have 2 to 16 bits (DCT ones have 8 or 12).
_LOSSLESS: Final = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
#: Huffman-coded start-of-frame markers (the others are arithmetic coded).
_HUFFMAN: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3})
#: Tables libjpeg fills with the standard ones when a file (a motion-JPEG frame) leaves them out.
_DEFAULT_HUFFMAN_TABLES: Final = frozenset({0, 1})
#: Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF: Final = frozenset(range(0xC0, 0xD0)) - {_DHT, 0xC8, _DAC}
#: Application segments APP0-APP15 (JFIF, EXIF, XMP, ICC, Adobe, ...).
_APP: Final = frozenset(range(0xE0, 0xF0))
#: Segments allowed between the frame's scans (tables, comments, application data).
_BETWEEN_SCANS: Final = frozenset({_DQT, _DHT, _DRI, _DNL, _DAC, _COM, _SOS}) | _APP
#: Segments allowed before the first scan.
_BEFORE_SCANS: Final = _BETWEEN_SCANS | _SOF | frozenset(range(0xF0, 0xFE))

#: The first marker after entropy-coded data: 0xFF followed by anything but a stuffed zero, a
#: restart marker (RST0-RST7, part of the data) or another 0xFF (fill bytes before a marker).
_END_OF_SCAN: Final = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")

#: libjpeg's limits: components in a frame, in a scan, and blocks in an interleaved MCU.
_MAX_COMPONENTS: Final = 10
_MAX_SCAN_COMPONENTS: Final = 4
_MAX_BLOCKS_IN_MCU: Final = 10
_MAX_SAMPLING: Final = 4
_TABLES: Final = 4


def check_jpeg_structure(data: bytes, what: str = "image") -> None:
    """Raise :class:`CorruptImage` unless ``data`` is a whole JPEG, from SOI to EOI."""
    if not data.startswith(_SOI):
        raise CorruptImage(f"the {what} does not start with a JPEG start-of-image marker")
    _Walk(data, what).run()


@dataclass
class _Component:
    sampling: int  # horizontal x vertical sampling factor: blocks in an MCU
    table: int  # quantization table


@dataclass
class _Walk:
    data: bytes
    what: str
    progressive: bool = False
    huffman: bool = False
    components: dict[int, _Component] | None = None
    quantization: set[int] = field(default_factory=set)
    #: Huffman tables defined so far, as (class, index): class 0 is DC, 1 is AC.
    huffman_tables: set[tuple[int, int]] = field(default_factory=set)
    scans: int = 0

    def run(self) -> None:
        data, size = self.data, len(self.data)
        position = 2
        while True:
            position, marker = self._marker(position)
            if marker == _EOI:
                if self.scans == 0:
                    raise self._corrupt("has no image data")
                return
            if marker not in (_BETWEEN_SCANS if self.scans else _BEFORE_SCANS):
                raise self._corrupt(f"has an unexpected marker 0x{marker:02X} at {position - 2}")
            if position + 2 > size:
                raise self._truncated()
            length = int.from_bytes(data[position : position + 2], "big")
            end = position + length
            if length < 2:
                raise self._corrupt(f"has a segment of impossible length {length}")
            if end > size:
                raise self._truncated()
            segment = data[position + 2 : end]
            position = end
            if marker in _SOF:
                self._frame(marker, segment)
            elif marker == _DQT:
                self._quantization(segment)
            elif marker == _DHT:
                self._huffman(segment)
            elif marker == _DRI and length != 4:
                raise self._corrupt("has a malformed restart interval")
            elif marker == _SOS:
                self._scan(segment)
                found = _END_OF_SCAN.search(data, position)
                if found is None:
                    raise self._truncated()
                if found.start() == position:
                    raise self._corrupt("has a scan without data")
                position = found.start()

    def _marker(self, position: int) -> tuple[int, int]:
        """The position after the marker at ``position`` (fill bytes skipped), and its code."""
        data, size = self.data, len(self.data)
        if position >= size:
            raise self._truncated()
        if data[position] != 0xFF:
            raise self._corrupt(f"has no marker where one belongs (offset {position})")
        while position < size and data[position] == 0xFF:
            position += 1
        if position >= size:
            raise self._truncated()
        return position + 1, data[position]

    def _frame(self, marker: int, segment: bytes) -> None:
        # P, Y (2), X (2), Nf, then per component: id, H/V sampling factors, quantization table.
        if self.components is not None:
            raise self._corrupt("has a second frame header")
        count = segment[5] if len(segment) >= 6 else 0
        if not 1 <= count <= _MAX_COMPONENTS or len(segment) != 6 + 3 * count:
            raise self._corrupt("has a malformed frame header")
        precision = segment[0]
        if not (2 <= precision <= 16 if marker in _LOSSLESS else precision in {8, 12}):
            raise self._corrupt(f"has an impossible sample precision of {precision} bits")
        self.components = {}
        for offset in range(6, len(segment), 3):
            identifier, sampling, table = segment[offset : offset + 3]
            horizontal, vertical = sampling >> 4, sampling & 0x0F
            if not (1 <= horizontal <= _MAX_SAMPLING and 1 <= vertical <= _MAX_SAMPLING):
                raise self._corrupt("has impossible sampling factors")
            if table >= _TABLES:
                raise self._corrupt("names a quantization table that cannot exist")
            self.components[identifier] = _Component(horizontal * vertical, table)
        self.progressive = marker in _PROGRESSIVE
        self.huffman = marker in _HUFFMAN

    def _quantization(self, segment: bytes) -> None:
        # One or more tables: Pq/Tq, then 64 entries of 1 byte (Pq 0) or 2 bytes (Pq 1).
        position = 0
        while position < len(segment):
            precision, table = segment[position] >> 4, segment[position] & 0x0F
            if precision > 1 or table >= _TABLES:
                raise self._corrupt("has a malformed quantization table")
            self.quantization.add(table)
            position += 1 + 64 * (precision + 1)
        if position != len(segment) or not segment:
            raise self._corrupt("has a malformed quantization table")

    def _huffman(self, segment: bytes) -> None:
        """One or more tables: Tc/Th, 16 code counts, then as many symbols as they add up to.

        The counts must form a prefix code in which no code is all ones, as libjpeg requires, and
        a DC table's symbols are bit counts from 0 to 15.
        """
        defined: set[tuple[int, int]] = set()
        position = 0
        while position < len(segment):
            kind, table = segment[position] >> 4, segment[position] & 0x0F
            defined.add((kind, table))
            counts = segment[position + 1 : position + 17]
            symbols = sum(counts)
            end = position + 17 + symbols
            if kind > 1 or table >= _TABLES or len(counts) != 16 or symbols > 256:
                raise self._corrupt("has a malformed Huffman table")
            if end > len(segment) or not _is_prefix_code(counts):
                raise self._corrupt("has a malformed Huffman table")
            if kind == 0 and any(symbol > 15 for symbol in segment[position + 17 : end]):
                raise self._corrupt("has a malformed Huffman table")
            position = end
        if not segment:
            raise self._corrupt("has a malformed Huffman table")
        self.huffman_tables |= defined

    def _scan(self, segment: bytes) -> None:
        # Ns, per component: id and Td/Ta Huffman tables, then Ss, Se and Ah/Al.
        if self.components is None:
            raise self._corrupt("has a scan before its frame header")
        count = segment[0] if segment else 0
        if not 1 <= count <= _MAX_SCAN_COMPONENTS or len(segment) != 4 + 2 * count:
            raise self._corrupt("has a malformed scan header")
        named = [segment[1 + 2 * index] for index in range(count)]
        if len(set(named)) != count or any(name not in self.components for name in named):
            raise self._corrupt("has a scan naming components its frame does not have")
        if any(value >> 4 >= _TABLES or value & 0x0F >= _TABLES for value in segment[2:-3:2]):
            raise self._corrupt("has a scan naming a Huffman table that cannot exist")
        scanned = [self.components[name] for name in named]
        if any(component.table not in self.quantization for component in scanned):
            raise self._corrupt("has a scan whose quantization table was never defined")
        if count > 1 and sum(component.sampling for component in scanned) > _MAX_BLOCKS_IN_MCU:
            raise self._corrupt("has sampling factors too large for an interleaved scan")
        start, end, approximation = segment[-3:]
        if self.progressive and not _valid_progression(count, start, end, approximation):
            raise self._corrupt("has a progressive scan with an impossible spectral selection")
        if self.huffman:
            for tables in segment[2:-3:2]:
                for kind in self._huffman_classes(start, approximation):
                    index = tables >> 4 if kind == 0 else tables & 0x0F
                    if (
                        index not in _DEFAULT_HUFFMAN_TABLES
                        and (kind, index) not in self.huffman_tables
                    ):
                        raise self._corrupt("has a scan whose Huffman table was never defined")
        self.scans += 1

    def _huffman_classes(self, start: int, approximation: int) -> tuple[int, ...]:
        """The Huffman table classes a scan decodes with: DC (0), AC (1) or both."""
        if not self.progressive:
            return (0, 1)
        if start > 0:
            return (1,)
        # A DC refinement scan (Ah > 0) reads raw bits, no table.
        return (0,) if approximation >> 4 == 0 else ()

    def _corrupt(self, problem: str) -> CorruptImage:
        return CorruptImage(f"the {self.what} is corrupt: its JPEG data {problem}")

    def _truncated(self) -> CorruptImage:
        return CorruptImage(
            f"the {self.what} is truncated: it ends before its JPEG end-of-image marker"
        )


def _valid_progression(count: int, start: int, end: int, approximation: int) -> bool:
    """A DC scan covers coefficient 0 only; an AC scan covers one component's 1..63."""
    high, low = approximation >> 4, approximation & 0x0F
    if high > 13 or low > 13 or start > end or end > 63:
        return False
    return end == 0 if start == 0 else count == 1


def _is_prefix_code(counts: bytes) -> bool:
    code = 0
    for length, count in enumerate(counts, start=1):
        code += count
        if count and code >= 1 << length:
            return False
        code <<= 1
    return True
