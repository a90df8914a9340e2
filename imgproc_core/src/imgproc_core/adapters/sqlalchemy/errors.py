"""Database failures in the domain's words: no SQLAlchemy or driver exception leaves the adapter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm.exc import FlushError

from imgproc_core.adapters.sqlalchemy.models import USERNAME_CONSTRAINT
from imgproc_core.domain.errors import Conflict, DependencyUnavailable, DomainError, UsernameTaken

DEPENDENCY: Final = "database"

#: How SQLite names the column of a failed unique constraint; PostgreSQL names the index.
_SQLITE_USERNAME_COLUMN: Final = "users.username"


@contextmanager
def translated_errors() -> Iterator[None]:
    """Turn what the database raises into domain errors.

    Duplicate keys become :class:`UsernameTaken` or :class:`Conflict`; a database that cannot
    be reached, drops the connection, stays locked past the busy timeout or leaves the pool
    empty becomes :class:`DependencyUnavailable`, which callers may retry later. Anything else
    is a defect in the adapter and is left as it is.
    """
    try:
        yield
    except IntegrityError as exc:
        raise integrity_error(exc) from exc
    except FlushError as exc:
        # A new row with the key of one this session already loaded: a duplicate caught before
        # it reached the database.
        raise Conflict(f"the write collides with existing data ({exc})") from exc
    except DBAPIError as exc:
        if isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated:
            raise unavailable(exc) from exc
        raise
    except (PoolTimeoutError, DisconnectionError) as exc:
        raise unavailable(exc) from exc


def integrity_error(exc: IntegrityError) -> DomainError:
    diag = getattr(exc.orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    message = str(exc.orig)
    if constraint == USERNAME_CONSTRAINT or _SQLITE_USERNAME_COLUMN in message:
        return UsernameTaken("this username is taken")
    return Conflict(f"the write collides with existing data ({constraint or message})")


def unavailable(exc: Exception) -> DependencyUnavailable:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0] if detail else type(exc).__name__
    return DependencyUnavailable(f"the database is unavailable: {reason}", DEPENDENCY)
