"""The job queue table: the embedded profile's durable queue and the production profile's outbox.

Every time comes from the injected clock rather than the database's, so that tests can move it
and so that all writers agree on one notion of "due".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from imgproc_core.adapters.sqlalchemy.errors import translated_errors
from imgproc_core.adapters.sqlalchemy.mapping import utc
from imgproc_core.adapters.sqlalchemy.models import JobRow
from imgproc_core.domain.jobs import TransformJob
from imgproc_core.ports.clock import Clock


class SqlAlchemyJobQueue:
    def __init__(self, session: Session, clock: Clock) -> None:
        self._session = session
        self._clock = clock

    def enqueue(self, job: TransformJob) -> None:
        now = utc(self._clock.now())
        values: dict[str, Any] = {
            "id": job.id,
            "source_id": job.source_id,
            "user_id": job.user_id,
            "attempts": job.attempts,
            "due_at": now,
            "created_at": now,
        }
        with translated_errors():
            insert = (
                postgresql.insert(JobRow)
                if self._session.get_bind().dialect.name == "postgresql"
                else sqlite.insert(JobRow)
            )
            self._session.execute(insert.values(values).on_conflict_do_nothing())

    def claim(self, worker: str, lease_seconds: float) -> TransformJob | None:
        now = utc(self._clock.now())
        # One statement, so the pick and the lease cannot be separated: PostgreSQL locks the
        # picked row and lets concurrent claimers skip it; SQLite runs one writer at a time and
        # leaves FOR UPDATE out.
        oldest_due = (
            select(JobRow.id)
            .where(
                JobRow.due_at <= now,
                or_(JobRow.lease_until.is_(None), JobRow.lease_until <= now),
            )
            .order_by(JobRow.due_at, JobRow.created_at, JobRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        lease = (
            update(JobRow)
            .where(JobRow.id == oldest_due)
            .values(leased_by=worker, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(JobRow.id, JobRow.source_id, JobRow.user_id, JobRow.attempts)
            .execution_options(synchronize_session=False)
        )
        with translated_errors():
            claimed = self._session.execute(lease).one_or_none()
        if claimed is None:
            return None
        job_id, source_id, user_id, attempts = claimed
        return TransformJob(
            image_id=job_id, source_id=source_id, user_id=user_id, attempts=attempts
        )

    def claim_batch(self, worker: str, lease_seconds: float, limit: int) -> list[TransformJob]:
        if limit < 1:
            raise ValueError("a batch holds at least one job")
        now = utc(self._clock.now())
        # One statement, as in ``claim``: the rows picked are locked and leased together, and
        # concurrent claimers skip them instead of waiting.
        oldest_due = (
            select(JobRow.id)
            .where(
                JobRow.due_at <= now,
                or_(JobRow.lease_until.is_(None), JobRow.lease_until <= now),
            )
            .order_by(JobRow.due_at, JobRow.created_at, JobRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        lease = (
            update(JobRow)
            .where(JobRow.id.in_(oldest_due.scalar_subquery()))
            .values(leased_by=worker, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(
                JobRow.id,
                JobRow.source_id,
                JobRow.user_id,
                JobRow.attempts,
                JobRow.due_at,
                JobRow.created_at,
            )
            .execution_options(synchronize_session=False)
        )
        with translated_errors():
            returned = self._session.execute(lease).all()
        # RETURNING follows no order: put the batch back in the order it was picked in.
        rows = sorted(returned, key=lambda row: (utc(row.due_at), utc(row.created_at), row.id))
        return [
            TransformJob(
                image_id=row.id, source_id=row.source_id, user_id=row.user_id, attempts=row.attempts
            )
            for row in rows
        ]

    def ack(self, job_id: str) -> None:
        with translated_errors():
            self._session.execute(
                delete(JobRow)
                .where(JobRow.id == job_id)
                .execution_options(synchronize_session=False)
            )

    def retry(self, job_id: str, delay_seconds: float) -> None:
        due_at = utc(self._clock.now()) + timedelta(seconds=delay_seconds)
        with translated_errors():
            self._session.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(
                    attempts=JobRow.attempts + 1,
                    leased_by=None,
                    lease_until=None,
                    due_at=due_at,
                )
                .execution_options(synchronize_session=False)
            )

    def renew_lease(self, job_id: str, worker: str, lease_seconds: float) -> bool:
        if lease_seconds < 0:
            raise ValueError("a lease ends now or later, not in the past")
        lease_until = utc(self._clock.now()) + timedelta(seconds=lease_seconds)
        with translated_errors():
            renewed = self._session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.leased_by == worker)
                .values(lease_until=lease_until)
                .returning(JobRow.id)
                .execution_options(synchronize_session=False)
            ).one_or_none()
        return renewed is not None

    def release(self, worker: str, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        with translated_errors():
            self._session.execute(
                update(JobRow)
                .where(JobRow.id.in_(list(job_ids)), JobRow.leased_by == worker)
                .values(leased_by=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )

    def pending_count(self) -> int:
        with translated_errors():
            count = self._session.scalar(select(func.count()).select_from(JobRow))
        return count or 0

    def oldest_enqueued_at(self) -> datetime | None:
        with translated_errors():
            oldest = self._session.scalar(select(func.min(JobRow.created_at)))
        return None if oldest is None else utc(oldest)
