"""The image codec in a pool of worker processes (needs the codec's own extra, Pillow by default).

``pool`` is the adapter, ``child`` the loop each worker runs, ``messages`` what they say to each
other over their pipe.
"""

from imgproc_core.adapters.process_pool.pool import (
    CodecProcessError,
    ProcessPoolImageCodec,
    default_start_method,
)

__all__ = ["CodecProcessError", "ProcessPoolImageCodec", "default_start_method"]
