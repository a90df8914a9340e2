"""SQL databases for tests: the project's private PostgreSQL, a fresh database per test, and
migrated ``SqlAlchemyUnitOfWork`` factories on SQLite or PostgreSQL.

The two ``*_unit_of_work_factory(request, clock)`` functions have the shape of the contract
tests' implementations: add ``pytest.param(sqlite_unit_of_work_factory, id="sqlite")`` and
``pytest.param(postgres_unit_of_work_factory, id="postgres", marks=pytest.mark.integration)``
to a contract module's ``IMPLEMENTATIONS``. Each gives a new, migrated, empty database that is
removed when the test ends.

PostgreSQL comes from ``IMGPROC_TEST_POSTGRES_URL`` when it is set, else from
``scripts/services/postgres.sh start``. When neither gives a server that answers, the test fails
loudly: an integration test never skips for want of its database.
"""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Final, TypeVar

import pytest
from sqlalchemy import Engine, make_url
from sqlalchemy.pool import NullPool

from imgproc_core.adapters.sqlalchemy import (
    SqlAlchemyUnitOfWork,
    create_engine_from_url,
    session_factory,
)
from imgproc_core.adapters.sqlalchemy.schema import upgrade
from imgproc_core.ports.clock import Clock

ROOT: Final = Path(__file__).resolve().parents[2]
POSTGRES_SCRIPT: Final = ROOT / "scripts" / "services" / "postgres.sh"
POSTGRES_URL_VARIABLE: Final = "IMGPROC_TEST_POSTGRES_URL"
#: Databases this module creates start with this, so a leftover one is easy to recognise.
TEST_DATABASE_PREFIX: Final = "imgproc_t_"

UnitOfWorkFactory = Callable[[], SqlAlchemyUnitOfWork]
T = TypeVar("T")


@functools.cache
def postgres_server_url() -> str:
    """The URL of a running test PostgreSQL, started on first use; fails the test if none."""
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        url = _start_private_postgres()
    try:
        engine = create_engine_from_url(url, pool_pre_ping=False)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        finally:
            engine.dispose()
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {url} does not answer ({exc}). Start it with "
            f"`{POSTGRES_SCRIPT.relative_to(ROOT)} start`, or point {POSTGRES_URL_VARIABLE} "
            "at a server where the tests may create and drop databases.",
            pytrace=False,
        )
    return url


def _start_private_postgres() -> str:
    def run(command: str) -> str:
        try:
            done = subprocess.run(
                [str(POSTGRES_SCRIPT), command],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"{POSTGRES_SCRIPT} {command} could not run: {exc}", pytrace=False)
        if done.returncode != 0:
            pytest.fail(
                f"{POSTGRES_SCRIPT} {command} failed with exit code {done.returncode} and "
                f"{POSTGRES_URL_VARIABLE} is not set; the integration tests need PostgreSQL.\n"
                f"{done.stdout}{done.stderr}",
                pytrace=False,
            )
        return done.stdout.strip()

    run("start")
    return run("url")


def _admin_engine(server_url: str) -> Engine:
    # No pool: a test may restart the server between creating its database and dropping it,
    # and a pooled connection would not survive that.
    return create_engine_from_url(
        server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, poolclass=NullPool
    )


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``, dropped afterwards (even while
    connections to it are still open)."""
    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
    admin = _admin_engine(server_url)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def sqlite_file_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'imgproc.db'}"


@contextmanager
def migrated_unit_of_work_factory(url: str, clock: Clock) -> Iterator[UnitOfWorkFactory]:
    """Units of work on the database at ``url``, migrated to the newest revision first; their
    engine is closed when the block ends."""
    upgrade(url)
    engine = create_engine_from_url(url)
    sessions = session_factory(engine)
    try:
        yield lambda: SqlAlchemyUnitOfWork(sessions, clock)
    finally:
        engine.dispose()


def sqlite_unit_of_work_factory(request: pytest.FixtureRequest, clock: Clock) -> UnitOfWorkFactory:
    """A migrated SQLite file in the test's temporary folder."""
    folder: Path = request.getfixturevalue("tmp_path")
    return until_test_ends(request, migrated_unit_of_work_factory(sqlite_file_url(folder), clock))


def postgres_unit_of_work_factory(
    request: pytest.FixtureRequest, clock: Clock
) -> UnitOfWorkFactory:
    """A migrated database of its own on the test PostgreSQL, dropped when the test ends."""
    database = fresh_postgres_database(postgres_server_url())
    url = until_test_ends(request, database)
    return until_test_ends(request, migrated_unit_of_work_factory(url, clock))


def until_test_ends(request: pytest.FixtureRequest, context: AbstractContextManager[T]) -> T:
    """Enter ``context`` now and leave it when the test ends (finalizers run last in, first
    out, so an engine closes before its database is dropped)."""
    stack = ExitStack()
    request.addfinalizer(stack.close)
    return stack.enter_context(context)
