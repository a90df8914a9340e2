"""One database transaction over users, images and jobs."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from imgproc_core.adapters.sqlalchemy.errors import translated_errors
from imgproc_core.adapters.sqlalchemy.queue import SqlAlchemyJobQueue
from imgproc_core.adapters.sqlalchemy.repositories import (
    SqlAlchemyImageRepository,
    SqlAlchemyLinkRepository,
    SqlAlchemyPresetRepository,
    SqlAlchemyUserRepository,
)
from imgproc_core.adapters.sqlalchemy.webhooks import SqlAlchemyWebhookRepository
from imgproc_core.ports.clock import Clock
from imgproc_core.ports.persistence import (
    ImageRepository,
    JobQueue,
    LinkRepository,
    PresetRepository,
    UserRepository,
    WebhookRepository,
)

logger = logging.getLogger(__name__)


class SqlAlchemyUnitOfWork:
    """A new session for each ``with`` block; leaving it without :meth:`commit` rolls back.

    The instance may be entered again after a block ends, never while one is open.
    """

    users: UserRepository
    images: ImageRepository
    links: LinkRepository
    presets: PresetRepository
    webhooks: WebhookRepository
    jobs: JobQueue

    def __init__(self, session_factory: sessionmaker[Session], clock: Clock) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._session: Session | None = None

    def __enter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("this unit of work is already open")
        session = self._session_factory()
        self._session = session
        self.users = SqlAlchemyUserRepository(session)
        self.images = SqlAlchemyImageRepository(session)
        self.links = SqlAlchemyLinkRepository(session)
        self.presets = SqlAlchemyPresetRepository(session)
        self.webhooks = SqlAlchemyWebhookRepository(session, self._clock)
        self.jobs = SqlAlchemyJobQueue(session, self._clock)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._require_session()
        try:
            session.rollback()
        except SQLAlchemyError:
            # The connection may be gone (that is often why the block failed); the server drops
            # the transaction with it, so there is nothing left to undo.
            logger.debug("rollback on leaving the unit of work failed", exc_info=True)
        finally:
            self._session = None
            try:
                session.close()
            except SQLAlchemyError:
                logger.debug("closing the session failed", exc_info=True)

    def commit(self) -> None:
        with translated_errors():
            self._require_session().commit()

    def rollback(self) -> None:
        with translated_errors():
            self._require_session().rollback()

    def _require_session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the unit of work is used outside its with block")
        return self._session
