"""The Alembic chain on SQLite and PostgreSQL: it goes up, down and up again, and what it builds
is exactly what the SQLAlchemy models describe."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from imgproc_core.adapters.sqlalchemy import create_engine_from_url
from imgproc_core.adapters.sqlalchemy.models import Base
from imgproc_core.adapters.sqlalchemy.schema import current, downgrade, head, upgrade
from imgproc_core.domain.errors import DependencyUnavailable

TABLES = {
    "users",
    "images",
    "job_queue",
    "links",
    "presets",
    "webhook_endpoints",
    "webhook_deliveries",
    "webhook_attempts",
}
INDEXES = {
    "users": {"uq_users_username"},
    "images": {"ix_images_user_id_created_at", "ix_images_source_id", "ix_images_status"},
    "job_queue": {"ix_job_queue_due_at"},
    "links": {"ix_links_image_id_created_at"},
    "presets": set(),
    "webhook_endpoints": {"ix_webhook_endpoints_user_id"},
    "webhook_deliveries": {
        "ix_webhook_deliveries_status_next_attempt_at",
        "ix_webhook_deliveries_endpoint_id",
    },
    "webhook_attempts": {"ix_webhook_attempts_endpoint_id_attempted_at"},
}


def _schema_differences(url: str) -> list[Any]:
    engine = create_engine_from_url(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables_and_indexes(url: str) -> tuple[set[str], dict[str, set[str]]]:
    engine = create_engine_from_url(url)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            tables = set(inspector.get_table_names()) - {"alembic_version"}
            indexes = {
                table: {index["name"] for index in inspector.get_indexes(table) if index["name"]}
                for table in tables
            }
            return tables, indexes
    finally:
        engine.dispose()


def test_up_down_and_up_again_gives_the_models_schema(database_url: str) -> None:
    assert current(database_url) is None

    upgrade(database_url)
    assert current(database_url) == head()
    assert _tables_and_indexes(database_url) == (TABLES, INDEXES)
    assert _schema_differences(database_url) == []

    downgrade(database_url, "base")
    assert current(database_url) is None
    assert _tables_and_indexes(database_url) == (set(), {})

    upgrade(database_url)
    assert current(database_url) == head()
    assert _schema_differences(database_url) == []


def test_upgrading_twice_changes_nothing(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url, "head")
    assert current(database_url) == head()
    assert _schema_differences(database_url) == []


def test_the_comparison_notices_a_schema_that_drifted(database_url: str) -> None:
    # Guards the tests above: an empty difference means something only if a real one shows.
    upgrade(database_url)
    engine = create_engine_from_url(database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("DROP INDEX ix_images_status")
    finally:
        engine.dispose()

    differences = _schema_differences(database_url)

    assert [(kind, index.name) for kind, index in differences] == [
        ("add_index", "ix_images_status")
    ]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_migrating_a_database_that_does_not_answer_is_a_dependency_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/imgproc"

    with pytest.raises(DependencyUnavailable) as raised:
        upgrade(url)

    assert raised.value.dependency == "database"
