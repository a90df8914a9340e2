"""Persistence on SQLAlchemy 2: SQLite for the embedded profile, PostgreSQL (psycopg 3) for
production. Needs the ``sql`` extra (``postgres`` for PostgreSQL)."""

from imgproc_core.adapters.sqlalchemy.engine import create_engine_from_url, session_factory
from imgproc_core.adapters.sqlalchemy.queue import SqlAlchemyJobQueue
from imgproc_core.adapters.sqlalchemy.repositories import (
    SqlAlchemyImageRepository,
    SqlAlchemyUserRepository,
)
from imgproc_core.adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWork

__all__ = [
    "SqlAlchemyImageRepository",
    "SqlAlchemyJobQueue",
    "SqlAlchemyUnitOfWork",
    "SqlAlchemyUserRepository",
    "create_engine_from_url",
    "session_factory",
]
