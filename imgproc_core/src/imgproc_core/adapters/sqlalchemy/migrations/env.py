"""Alembic's entry point for the migrations of imgproc's database.

:mod:`imgproc_core.adapters.sqlalchemy.schema` runs it on a connection of its own choosing
(``config.attributes["connection"]``). Run from the ``alembic`` command line (for
``revision --autogenerate``), it connects to ``-x url=...``, else ``IMGPROC_DATABASE_URL``, else
the ini file's ``sqlalchemy.url``.
"""

from __future__ import annotations

import os
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

from imgproc_core.adapters.sqlalchemy.engine import create_engine_from_url, database_url
from imgproc_core.adapters.sqlalchemy.models import Base, UtcDateTime

config = context.config
target_metadata = Base.metadata


def render_item(kind: str, item: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    # Revisions must not import the adapter's types, which may change after they are written:
    # the column is rendered as the type it stores.
    if kind == "type" and isinstance(item, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        # SQLite alters a table by rebuilding it; batch mode does that, and on PostgreSQL it
        # issues plain ALTER statements, so one chain of revisions serves both.
        render_as_batch=True,
        compare_type=True,
        render_item=render_item,
        **kwargs,
    )


def command_line_url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("IMGPROC_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise RuntimeError("name the database: -x url=..., or IMGPROC_DATABASE_URL")
    return url


def run_on(connection: Connection) -> None:
    configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    configure(url=database_url(command_line_url()), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine_from_url(
        command_line_url(), sqlite_foreign_keys=False, poolclass=NullPool
    )
    try:
        with engine.connect() as own_connection:
            run_on(own_connection)
    finally:
        engine.dispose()


if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
