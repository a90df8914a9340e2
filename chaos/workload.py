"""What a round asks of the service: the source images and one distinct transformation per job.

Most jobs render small real photographs of the test corpus (Pillow's samples: a CMYK JPEG, one
with a large ICC profile, one that EXIF says to turn, a PNG with alpha, a WebP); a few render
the corpus's largest photograph (2000x1072, Adobe RGB) and the benchmarks' 12 MP camera JPEG
made from it (``bench.inputs``, cached under ``var/bench``). Each job's transformation differs
from every other one on the same source, so every job is a real render with its own derived
image; together they cover the formats the service writes losslessly and lossily (PNG, JPEG,
WebP), the fits, crops, turns, flips and filters, and text watermarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from PIL import Image

from bench.inputs import corpus_dir, photo_12mp


@dataclass(frozen=True, slots=True)
class Source:
    """An original a round uploads, and the share of the jobs that render it."""

    path: Path
    width: int
    height: int
    #: Jobs on this source, out of :data:`SHARES`'s sum.
    share: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def large(self) -> bool:
        return self.width * self.height >= 2_000_000


#: (corpus path, width, height, share): the sizes are the files' own, checked at load time.
_CORPUS: Final = (
    ("pillow/hopper.jpg", 128, 128, 14),
    ("pillow/hopper_orientation_6.jpg", 128, 128, 10),
    ("pillow/flower.jpg", 480, 360, 14),
    ("pillow/flower2.jpg", 300, 225, 12),
    ("pillow/pil_sample_cmyk.jpg", 100, 100, 10),
    ("pillow/icc_profile_big.jpg", 425, 250, 12),
    ("pillow/hopper.webp", 128, 128, 10),
    ("pngsuite/basn6a08.png", 32, 32, 12),
    ("pillow/xmp_test.jpg", 2000, 1072, 5),
)
#: The 12 MP photograph's share: about one job in a hundred.
_LARGE_SHARE: Final = 1


def sources() -> list[Source]:
    """The round's originals; fails loudly when the corpus is missing."""
    corpus = corpus_dir()
    found = [Source(corpus / path, width, height, share) for path, width, height, share in _CORPUS]
    for source in found:
        if not source.path.is_file():
            raise SystemExit(f"chaos: {source.path} is missing from the corpus")
        with Image.open(source.path) as opened:
            if opened.size != (source.width, source.height):
                raise SystemExit(f"chaos: {source.path} is {opened.size}, not as listed here")
    large = photo_12mp()
    found.append(Source(large.path, large.width, large.height, _LARGE_SHARE))
    return found


def assign(sources: Sequence[Source], jobs: int) -> list[int]:
    """The source (an index into ``sources``) of each of ``jobs`` jobs: each source gets its
    share and at least one job, spread evenly over the round (the source furthest behind its
    share goes next), so that every stretch of the round has some of each."""
    total = sum(source.share for source in sources)
    counts = [max(1, round(jobs * source.share / total)) for source in sources]
    # Rounding gives a few too many or too few: the most common source takes up the slack.
    counts[counts.index(max(counts))] += jobs - sum(counts)
    given = [0] * len(sources)
    order: list[int] = []
    for _ in range(jobs):
        chosen = min(
            (i for i in range(len(sources)) if given[i] < counts[i]),
            key=lambda i: ((given[i] + 1) / counts[i], i),
        )
        given[chosen] += 1
        order.append(chosen)
    return order


_FORMATS: Final = ("jpeg", "png", "webp")
_FITS: Final = ("contain", "cover", "fill")
_POSITIONS: Final = ("bottom-right", "top-left", "center", "bottom")


def transformation(n: int, source: Source) -> dict[str, Any]:
    """The ``n``-th job's transformation of ``source``, as a client sends it: different for
    each ``n`` (the resize box alone is unique for n below 40,000), valid for the source's
    size, and at most 400 px a side so that large sources stay quick to render."""
    body: dict[str, Any] = {
        "resize": {
            "width": 16 + n % 200,
            "height": 16 + n // 200 % 200,
            "fit": _FITS[n // 3 % 3],
        },
        "format": _FORMATS[n % 3],
    }
    if n % 3 != 1:  # a lossy format
        body["quality"] = 60 + n * 7 % 36
    if n % 4 == 1:
        # A crop inside the source, whichever way EXIF turns it.
        side = min(source.width, source.height)
        width = max(1, side // 2 + n % max(1, side // 4))
        body["crop"] = {"x": n % max(1, side - width + 1), "y": 0, "width": width, "height": width}
    if n % 5 == 2:
        body["rotate"] = (90, 180, 270)[n // 5 % 3]
    if n % 6 == 3:
        body["flip"] = True
    if n % 7 == 4:
        body["mirror"] = True
    if n % 8 == 5:
        body["grayscale"] = True
    if n % 9 == 6:
        body["sharpen"] = 1 + n % 5
    if n % 13 == 7:
        body["blur"] = 0.5 + n % 4 / 2
    if n % 11 == 8:
        body["watermark"] = {
            "text": f"(c) chaos {n}",
            "position": _POSITIONS[n // 11 % 4],
            "opacity": 0.6,
        }
    return body
