"""The process-level helpers of the system adapter."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from datetime import UTC

import pytest

from imgproc_core.adapters.system import SystemClock, freeze_start_up_objects


@pytest.fixture
def unfrozen_afterwards() -> Iterator[None]:
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen_afterwards")
def test_start_up_objects_are_left_out_of_later_collections() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    kept = Node()
    kept.other = Node()

    freeze_start_up_objects()

    assert gc.get_freeze_count() > 0
    # What exists now is frozen; a cycle made afterwards is still collected.
    first, second = Node(), Node()
    first.other, second.other = second, first
    del first, second
    assert gc.collect() >= 2
    assert kept.other is not None


def test_the_clock_is_aware_and_in_utc() -> None:
    assert SystemClock().now().tzinfo is UTC
