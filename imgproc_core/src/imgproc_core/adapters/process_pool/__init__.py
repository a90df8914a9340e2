"""The image codec in a pool of worker processes (needs the codec's own extra, Pillow by default).

``pool`` is the adapter (on pebble's ``ProcessPool``, the ``process-pool`` extra), ``child`` what
each worker process runs, ``messages`` what they hand each other.
"""

from imgproc_core.adapters.process_pool.pool import (
    CodecProcessError,
    ProcessPoolImageCodec,
    default_start_method,
)

__all__ = ["CodecProcessError", "ProcessPoolImageCodec", "default_start_method"]
