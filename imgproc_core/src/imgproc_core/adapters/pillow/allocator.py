"""Memory allocator settings for the processes that decode images.

A decoded photograph is tens to hundreds of megabytes, allocated for one job and freed at its end.
glibc's malloc serves such sizes with a fresh ``mmap`` each time and gives them back at ``free``,
so every job pays again for the kernel to fault in and zero every page: a full decode or a flip
of a 12 MP photograph spends over a third of its time there. :func:`tune_allocator` makes the
allocator keep freed memory for the next job instead:

- glibc: ``mallopt`` serves requests up to :data:`MMAP_THRESHOLD` from the heap (Pillow allocates
  images in blocks of 16 MB, an upload is at most 25 MB by default), keeps up to
  :data:`TRIM_THRESHOLD` of free memory at the top of the heap rather than returning it, and
  grows the heap :data:`TOP_PAD` at a time. A process then holds on to the memory of its largest
  job (up to that bound), which the next one reuses: its resident size stays near its peak.
- Elsewhere (musl, macOS): Pillow's own cache of freed image blocks, :data:`PILLOW_BLOCKS` of
  them (16 MB each).

``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` in the environment
mean an operator has chosen already: glibc applied them at start-up and they are left alone.

Call it once, early, in each process that runs jobs: the HTTP server, each codec pool process
and the Kafka worker do. It changes process-wide settings and affects only allocations made
after it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from typing import Final

from PIL import Image

logger = logging.getLogger(__name__)

#: glibc's ``mallopt`` parameters, from ``malloc.h``.
_M_TRIM_THRESHOLD: Final = -1
_M_TOP_PAD: Final = -2
_M_MMAP_THRESHOLD: Final = -3

MMAP_THRESHOLD: Final = 64 * 2**20
TRIM_THRESHOLD: Final = 256 * 2**20
TOP_PAD: Final = 64 * 2**20
PILLOW_BLOCKS: Final = 16

_OPERATOR_SETTINGS: Final = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def tune_allocator() -> None:
    """Apply the settings above to this process (a process-pool ``initializer``)."""
    chosen = [name for name in _OPERATOR_SETTINGS if name in os.environ]
    if chosen:
        logger.info("allocator: left as set by %s", ", ".join(chosen))
        return
    if _glibc_mallopt():
        logger.debug(
            "allocator: glibc mmap threshold %d MiB, trim threshold %d MiB, top pad %d MiB",
            MMAP_THRESHOLD >> 20,
            TRIM_THRESHOLD >> 20,
            TOP_PAD >> 20,
        )
        return
    # The run-time form of PILLOW_BLOCKS_MAX, on a module its type stubs do not describe.
    Image.core.set_blocks_max(PILLOW_BLOCKS)  # type: ignore[attr-defined]
    logger.debug("allocator: Pillow keeps up to %d freed image blocks", PILLOW_BLOCKS)


def _glibc_mallopt() -> bool:
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 when it took the value. Any of the three turns off glibc's dynamic
    # threshold, which would otherwise climb only after the first large block is freed.
    return all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD),
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        )
    )
