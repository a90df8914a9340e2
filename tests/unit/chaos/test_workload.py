"""The chaos suite's workload: every job a distinct, valid transformation of its source, and
each source its share of the jobs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from chaos.workload import Source, assign, transformation
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import (
    canonical_form,
    output_size,
    parse_transformation,
)

SOURCES = [
    Source(Path("small.jpg"), 32, 32, 12),
    Source(Path("wide.jpg"), 480, 360, 14),
    Source(Path("tall.jpg"), 300, 225, 12),
    Source(Path("photo.jpg"), 2000, 1072, 5),
    Source(Path("camera.jpg"), 4000, 3000, 1),
]


@pytest.mark.parametrize("jobs", [200, 1000])
def test_each_source_gets_its_share_and_every_source_some(jobs: int) -> None:
    order = assign(SOURCES, jobs)
    counts = Counter(order)
    total = sum(source.share for source in SOURCES)

    assert len(order) == jobs
    assert set(counts) == set(range(len(SOURCES)))
    for n, source in enumerate(SOURCES):
        assert abs(counts[n] - jobs * source.share / total) <= 2
    # Spread over the round: the first tenth already has a job of every common source.
    assert set(order[: jobs // 10]) >= {0, 1, 2}


def test_every_job_is_a_transformation_of_its_own_that_its_source_can_take() -> None:
    forms: set[tuple[str, bytes]] = set()
    for n, chosen in enumerate(assign(SOURCES, 1000)):
        source = SOURCES[chosen]
        parsed = parse_transformation(transformation(n, source))
        width, height = output_size(source.width, source.height, parsed, Limits())
        assert max(width, height) <= 400
        forms.add((source.name, canonical_form(parsed)))
    assert len(forms) == 1000
