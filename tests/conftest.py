"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis fails an example that runs past 200 ms by default: a timing assertion, which a
# busy machine trips (seen on 2 cores with services and render processes beside the tests).
settings.register_profile("imgproc", deadline=None)
settings.load_profile("imgproc")

ROOT = Path(__file__).resolve().parent.parent


def _corpus_dir() -> Path:
    configured = os.environ.get("IMGPROC_TEST_CORPUS")
    path = Path(configured) if configured else ROOT.parent / "shared" / "corpus"
    if not (path / "pngsuite").is_dir() or not (path / "pillow").is_dir():
        raise RuntimeError(
            f"the image corpus is missing at {path}: set IMGPROC_TEST_CORPUS to the folder "
            "that holds pngsuite/ and pillow/"
        )
    return path


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The corpus of real images (PngSuite and Pillow's samples). Fails loudly when absent."""
    return _corpus_dir()
