"""The image codec on Pillow (extra ``imgproc-core[pillow]``).

``sniff`` decides an input's type from its magic bytes, ``decoding`` opens it behind the limits,
``geometry``, ``colour`` and ``operations`` do the work, ``encoding`` writes the output formats.
"""

from imgproc_core.adapters.pillow.codec import PillowImageCodec

__all__ = ["PillowImageCodec"]
