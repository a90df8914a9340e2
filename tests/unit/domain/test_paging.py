"""The one paging check every listing applies, each with its own bound."""

from __future__ import annotations

import pytest

from imgproc_core.domain.errors import InvalidPagination
from imgproc_core.domain.images import page_offset


@pytest.mark.parametrize(
    ("page", "limit", "max_limit", "offset"),
    [(1, 1, 1, 0), (1, 10, 100, 0), (3, 10, 100, 20), (2, 100, 100, 100), (5, 1000, 1000, 4000)],
)
def test_a_page_starts_after_the_pages_before_it(
    page: int, limit: int, max_limit: int, offset: int
) -> None:
    assert page_offset(page, limit, max_limit) == offset


@pytest.mark.parametrize(
    ("page", "limit", "field"),
    [(0, 10, "page"), (-1, 10, "page"), (1, 0, "limit"), (1, -5, "limit"), (1, 101, "limit")],
)
def test_paging_outside_the_bounds_names_the_field(page: int, limit: int, field: str) -> None:
    with pytest.raises(InvalidPagination) as raised:
        page_offset(page, limit, 100)
    assert raised.value.field == field


def test_the_bound_is_the_callers() -> None:
    assert page_offset(1, 1000, 1000) == 0
    with pytest.raises(InvalidPagination, match="between 1 and 999"):
        page_offset(1, 1000, 999)
