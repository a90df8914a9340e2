"""Engines and sessions for the two databases the service runs on: SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_BUSY_TIMEOUT_MS: Final = 5000
POSTGRES_CONNECT_TIMEOUT_S: Final = 5
#: Connections a SQLite file engine keeps open. The HTTP server runs its synchronous handlers
#: on up to 40 threads (anyio's default), the embedded workers on a few more, and each holds a
#: connection while its unit of work runs. A connection to a file costs a few file descriptors
#: and no server, so keeping one per thread is cheaper than opening and configuring (four
#: PRAGMAs) a new one for every request beyond a small pool.
SQLITE_POOL_SIZE: Final = 48
SQLITE_MAX_OVERFLOW: Final = 16
#: Each PostgreSQL connection is a server process: every API, relay and worker process keeps a
#: few and opens a few more under load (operators size ``max_connections`` for the sum).
POSTGRES_POOL_SIZE: Final = 5
POSTGRES_MAX_OVERFLOW: Final = 10

_POSTGRES_SCHEMES: Final = frozenset({"postgres", "postgresql", "postgresql+psycopg"})


def database_url(url: str) -> URL:
    """``url`` parsed, with PostgreSQL spelled for psycopg 3 whichever way it was written."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme in _POSTGRES_SCHEMES:
        url = f"postgresql+psycopg://{rest}"
    return make_url(url)


def create_engine_from_url(
    url: str,
    *,
    sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    sqlite_foreign_keys: bool = True,
    **kwargs: Any,
) -> Engine:
    """An engine for ``url`` (``sqlite:///path``, or ``postgresql://``, ``postgres://`` or
    ``postgresql+psycopg://``) set up for the service; ``kwargs`` go to
    :func:`sqlalchemy.create_engine` and win over the defaults."""
    parsed = database_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(
            parsed,
            busy_timeout_ms=sqlite_busy_timeout_ms,
            foreign_keys=sqlite_foreign_keys,
            **kwargs,
        )
    if backend == "postgresql":
        return _postgres_engine(parsed, **kwargs)
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit: entities are mapped out of rows
    before the unit of work ends, and a reload after commit would only cost a query."""
    return sessionmaker(engine, expire_on_commit=False)


def _postgres_engine(url: URL, **kwargs: Any) -> Engine:
    connect_args = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S, **kwargs.pop("connect_args", {})}
    options: dict[str, Any] = {
        # A connection the server dropped (restart, failover) is replaced before use.
        "pool_pre_ping": True,
        "pool_recycle": 1800,
    }
    if "poolclass" not in kwargs:
        options.update(
            pool_size=POSTGRES_POOL_SIZE, max_overflow=POSTGRES_MAX_OVERFLOW, pool_timeout=10
        )
    options.update(kwargs)
    return create_engine(url, connect_args=connect_args, **options)


def _sqlite_engine(url: URL, *, busy_timeout_ms: int, foreign_keys: bool, **kwargs: Any) -> Engine:
    database = url.database
    options: dict[str, Any] = {}
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        # A file database gets a queue pool (an in-memory one a pool of its own kind, left as
        # it is).
        if "poolclass" not in kwargs:
            options.update(pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_MAX_OVERFLOW)
    options.update(kwargs)
    connect_args = {
        # Sessions run in worker threads that are not the ones that opened the connections.
        "check_same_thread": False,
        "timeout": busy_timeout_ms / 1000,
        "factory": _writer_locked_connection(busy_timeout_ms / 1000),
        **options.pop("connect_args", {}),
    }
    engine = create_engine(url, connect_args=connect_args, **options)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _: ConnectionPoolEntry) -> None:
        # The driver's own transaction handling would begin transactions at its own moments;
        # _before_execute below begins them instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(
        connection: Connection,
        cursor: sqlite3.Cursor,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        begin_sqlite_transaction(connection, cursor, statement)

    return engine


class WriterLockedConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions take a lock of this process first.

    SQLite lets one writer in at a time. A connection that finds the write lock taken waits in
    SQLite's busy handler, which sleeps in steps of 1 to 100 ms and looks again, so under a
    burst of writes (uploads, the embedded workers) threads sleep long after the lock is free
    and the server idles. Writers of one process queue on :attr:`writer` instead, and the next
    one starts as soon as the previous one commits. Other processes on the same file (the
    command line) still meet SQLite's own lock and busy timeout.
    """

    #: Shared by the connections of one engine (set on the subclass made per engine).
    writer: threading.Lock
    writer_timeout: float
    holds_writer = False

    def take_writer(self) -> None:
        if not self.holds_writer:
            # After the busy timeout, go on without it: SQLite's own lock still serializes.
            self.holds_writer = self.writer.acquire(timeout=self.writer_timeout)

    def release_writer(self) -> None:
        if self.holds_writer:
            self.holds_writer = False
            self.writer.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_writer()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_writer()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_writer()


def _writer_locked_connection(timeout: float) -> type[WriterLockedConnection]:
    """A connection class whose writers share one lock: one per engine."""
    return type(
        "WriterLockedConnection",
        (WriterLockedConnection,),
        {"writer": threading.Lock(), "writer_timeout": timeout},
    )


_WRITING: Final = "imgproc.sqlite_transaction_writes"
_READ_ONLY_STATEMENTS: Final = ("SELECT", "PRAGMA", "EXPLAIN")


def begin_sqlite_transaction(
    connection: Connection, cursor: sqlite3.Cursor, statement: str
) -> None:
    """Begin SQLite's transaction for ``statement``, or make the open one able to write.

    A transaction that only reads begins deferred, so readers never wait for a writer (WAL
    mode). One that writes needs the write lock, and takes it before reading anything: a
    deferred transaction that has read and then writes fails at once with "database is locked"
    whenever another writer committed meanwhile, since SQLite cannot move its snapshot. So the
    first write of a transaction that has only read ends it (there is nothing to undo) and
    begins an IMMEDIATE one, which waits for the lock up to the busy timeout and sees every
    commit made before. Rows read earlier may have changed by then, as under PostgreSQL's read
    committed isolation, which the unit of work assumes on both databases. Writers of this
    process queue for the lock on a lock of their own first (:class:`WriterLockedConnection`).
    """
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    writes = not statement.lstrip()[:7].upper().startswith(_READ_ONLY_STATEMENTS)
    if not cursor.connection.in_transaction:
        if writes:
            _begin_immediate(cursor)
        else:
            cursor.execute("BEGIN")
        connection.info[_WRITING] = writes
    elif writes and not connection.info.get(_WRITING, True):
        cursor.execute("ROLLBACK")
        _begin_immediate(cursor)
        connection.info[_WRITING] = True


def _begin_immediate(cursor: sqlite3.Cursor) -> None:
    dbapi_connection = cursor.connection
    if isinstance(dbapi_connection, WriterLockedConnection):
        dbapi_connection.take_writer()
    try:
        cursor.execute("BEGIN IMMEDIATE")
    except BaseException:
        if isinstance(dbapi_connection, WriterLockedConnection):
            dbapi_connection.release_writer()
        raise
