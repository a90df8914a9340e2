"""Contract of DatabaseSchema, run against the in-memory database and both SQL databases: an
upgrade brings the database to the revision the code expects, and doing it again changes
nothing. A database in memory has no schema, so every revision is None."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from imgproc_core.adapters.memory import InMemorySchema
from imgproc_core.adapters.sqlalchemy.schema import AlembicSchema, head
from imgproc_core.ports import DatabaseSchema
from tests.support.sql import (
    fresh_postgres_database,
    postgres_server_url,
    sqlite_file_url,
    until_test_ends,
)

Implementation = Callable[[pytest.FixtureRequest], tuple[DatabaseSchema, str | None]]


def _memory(request: pytest.FixtureRequest) -> tuple[DatabaseSchema, str | None]:
    return InMemorySchema(), None


def _sqlite(request: pytest.FixtureRequest) -> tuple[DatabaseSchema, str | None]:
    folder: Path = request.getfixturevalue("tmp_path")
    return AlembicSchema(sqlite_file_url(folder)), head()


def _postgres(request: pytest.FixtureRequest) -> tuple[DatabaseSchema, str | None]:
    url = until_test_ends(request, fresh_postgres_database(postgres_server_url()))
    return AlembicSchema(url), head()


@pytest.fixture(
    params=[
        pytest.param(_memory, id="memory"),
        pytest.param(_sqlite, id="sqlite"),
        pytest.param(_postgres, id="postgres", marks=pytest.mark.integration),
    ]
)
def schema(request: pytest.FixtureRequest) -> tuple[DatabaseSchema, str | None]:
    implementation: Implementation = request.param
    return implementation(request)


def test_a_new_database_is_at_no_revision(schema: tuple[DatabaseSchema, str | None]) -> None:
    database, expected = schema
    assert database.current() is None
    assert database.expected() == expected


def test_an_upgrade_reaches_the_expected_revision_once_and_for_all(
    schema: tuple[DatabaseSchema, str | None],
) -> None:
    database, expected = schema
    assert database.upgrade() == expected
    assert database.current() == expected
    assert database.upgrade() == expected
    assert database.current() == database.expected()
