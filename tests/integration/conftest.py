"""Fixtures for the integration tests: real databases, each test on an empty one of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sql import fresh_postgres_database, postgres_server_url, sqlite_file_url


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL server (``IMGPROC_TEST_POSTGRES_URL``, else the project's script
    starts one). Fails, never skips, when there is none."""
    return postgres_server_url()


@pytest.fixture
def postgres_database_url(postgres_url: str) -> Iterator[str]:
    """A new, empty (not migrated) database, dropped after the test."""
    with fresh_postgres_database(postgres_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file (not created yet) in the test's temporary folder."""
    return sqlite_file_url(tmp_path)


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.integration),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each engine in turn: SQLite, then PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_database_url"
    url: str = request.getfixturevalue(fixture)
    return url
