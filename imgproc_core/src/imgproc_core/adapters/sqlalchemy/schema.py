"""Schema migrations, run from code: the Alembic scripts ship inside this package and need no
``alembic.ini`` at run time. One chain serves SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from imgproc_core.adapters.sqlalchemy.engine import create_engine_from_url
from imgproc_core.adapters.sqlalchemy.errors import translated_errors

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the shipped scripts; with ``connection``, migrations run on
    it (inside its transaction) instead of on a connection of their own."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def migration_connection(url: str) -> Iterator[Connection]:
    """A connection in a transaction that commits when the block ends without an error.

    SQLite's foreign keys are off on it: Alembic's batch mode rebuilds a table by copying it,
    and dropping the old copy would otherwise cascade into the rows that point at it.
    """
    engine = create_engine_from_url(url, sqlite_foreign_keys=False, poolclass=NullPool)
    try:
        with translated_errors(), engine.begin() as connection:
            yield connection
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``."""
    with migration_connection(url) as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(url: str, revision: str) -> None:
    """Take the database at ``url`` back to ``revision`` (``"base"`` drops every table)."""
    with migration_connection(url) as connection:
        command.downgrade(alembic_config(connection), revision)


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at; None for a database never migrated."""
    with migration_connection(url) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    """The newest revision shipped with this package: where :func:`upgrade` brings a database."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return revision


class AlembicSchema:
    """:class:`~imgproc_core.ports.DatabaseSchema` of the database at ``url``: the shipped
    Alembic chain. Each call opens a connection of its own, so nothing needs opening first."""

    def __init__(self, url: str) -> None:
        self._url = url

    def current(self) -> str | None:
        return current(self._url)

    def expected(self) -> str:
        return head()

    def upgrade(self) -> str | None:
        upgrade(self._url)
        return current(self._url)
