"""SQLAlchemy's composition root: SQLite (the embedded profile) or PostgreSQL (production), from
``IMGPROC_DATABASE_URL``. Needs the ``sql`` extra (``postgres`` for PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

from dependency_injector import containers, providers
from sqlalchemy import Engine

from imgproc_core.adapters.sqlalchemy import (
    SqlAlchemyUnitOfWork,
    create_engine_from_url,
    session_factory,
)
from imgproc_core.adapters.sqlalchemy.schema import AlembicSchema
from imgproc_core.ports import Clock
from imgproc_core.settings import Settings


def open_engine(url: str) -> Iterator[Engine]:
    """The engine of ``url``, its connections closed when the container's resources are."""
    engine = create_engine_from_url(url)
    try:
        yield engine
    finally:
        engine.dispose()


class SqlDatabase(containers.DeclarativeContainer):
    """Users, images, the job queue and the outbox in one SQL database."""

    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    engine = providers.Resource(open_engine, settings.provided.database_url)
    session_factory = providers.Singleton(session_factory, engine)
    unit_of_work = providers.Factory(SqlAlchemyUnitOfWork, session_factory, clock)
    #: Migrations open a connection of their own: they need no open resource.
    database_schema = providers.Singleton(AlembicSchema, settings.provided.database_url)
