"""tune_allocator: large blocks come from the heap, and stay there, once it has run.

Each case runs in a fresh interpreter: the settings are process-wide and the test process's own
allocator is not this test's to change. Whether a block came from the heap or from its own
``mmap`` is read from ``/proc/self/maps``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from imgproc_core.adapters.pillow.allocator import PILLOW_BLOCKS, tune_allocator

#: Above glibc's largest dynamic mmap threshold (32 MiB), below the tuned one (64 MiB).
BLOCK = 48 * 2**20

PROBE = f"""
import ctypes, ctypes.util, sys
from imgproc_core.adapters.pillow.allocator import tune_allocator

if sys.argv[1] == "tune":
    tune_allocator()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
address = libc.malloc({BLOCK})
with open("/proc/self/maps") as maps:
    heap = [line.split()[0] for line in maps if line.rstrip().endswith("[heap]")]
low, high = (int(bound, 16) for bound in heap[0].split("-")) if heap else (0, 0)
print("heap" if low <= address < high else "mmap")
"""


def run_probe(mode: str, **environment: str) -> str:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MALLOC_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        env={**env, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_without_tuning_a_large_block_gets_its_own_mapping() -> None:
    assert run_probe("leave") == "mmap"


def test_tuned_a_large_block_comes_from_the_heap() -> None:
    assert run_probe("tune") == "heap"


def test_settings_from_the_environment_are_left_alone() -> None:
    assert run_probe("tune", MALLOC_MMAP_THRESHOLD_="131072") == "mmap"


def test_without_glibc_pillow_keeps_freed_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    core = Image.core  # type: ignore[attr-defined]
    previous = core.get_blocks_max()
    monkeypatch.setattr("platform.libc_ver", lambda: ("", ""))
    try:
        core.set_blocks_max(0)

        tune_allocator()

        assert core.get_blocks_max() == PILLOW_BLOCKS
    finally:
        core.set_blocks_max(previous)
