"""Webhook endpoints, their deliveries (the outbox of events) and the attempts at sending them.

Senders lease due deliveries in one statement, as the job queue's claim does: PostgreSQL locks
the rows picked and lets concurrent senders skip them (``SKIP LOCKED``); SQLite runs one writer
at a time. Times come from the injected clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from imgproc_core.adapters.sqlalchemy.errors import translated_errors
from imgproc_core.adapters.sqlalchemy.mapping import (
    attempt_from_row,
    attempt_to_row,
    delivery_from_row,
    delivery_values,
    endpoint_from_row,
    endpoint_to_row,
    utc,
)
from imgproc_core.adapters.sqlalchemy.models import (
    DeliveryAttemptRow,
    UserRow,
    WebhookDeliveryRow,
    WebhookEndpointRow,
)
from imgproc_core.domain.errors import Conflict, UserNotFound
from imgproc_core.domain.webhook_records import (
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from imgproc_core.ports.clock import Clock


class SqlAlchemyWebhookRepository:
    def __init__(self, session: Session, clock: Clock) -> None:
        self._session = session
        self._clock = clock

    def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        with translated_errors():
            if self._session.get(UserRow, endpoint.user_id) is None:
                raise UserNotFound(f"no user with id {endpoint.user_id}")
            self._session.add(endpoint_to_row(endpoint))
            self._session.flush()

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        with translated_errors():
            row = self._session.get(WebhookEndpointRow, endpoint_id)
        return endpoint_from_row(row) if row is not None else None

    def update_endpoint(self, endpoint: WebhookEndpoint) -> None:
        with translated_errors():
            row = self._session.get(WebhookEndpointRow, endpoint.id)
            if row is None:
                return
            fresh = endpoint_to_row(endpoint)
            row.url, row.events = fresh.url, fresh.events
            row.failing_since = fresh.failing_since
            row.disabled_at, row.disabled_reason = fresh.disabled_at, fresh.disabled_reason
            self._session.flush()

    def delete_endpoint(self, endpoint_id: str) -> bool:
        with translated_errors():
            result = self._session.execute(
                delete(WebhookEndpointRow).where(WebhookEndpointRow.id == endpoint_id)
            )
        return bool(getattr(result, "rowcount", 0))

    def endpoints_of(self, user_id: str) -> Sequence[WebhookEndpoint]:
        with translated_errors():
            rows = self._session.scalars(
                select(WebhookEndpointRow)
                .where(WebhookEndpointRow.user_id == user_id)
                .order_by(WebhookEndpointRow.created_at, WebhookEndpointRow.id)
            ).all()
        return [endpoint_from_row(row) for row in rows]

    def add_delivery(self, delivery: WebhookDelivery) -> None:
        with translated_errors():
            if self._session.get(WebhookEndpointRow, delivery.endpoint_id) is None:
                raise Conflict(f"no webhook endpoint with id {delivery.endpoint_id}")
            self._session.add(WebhookDeliveryRow(**delivery_values(delivery)))
            self._session.flush()

    def get_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        with translated_errors():
            row = self._session.get(WebhookDeliveryRow, delivery_id)
        return delivery_from_row(row) if row is not None else None

    def update_delivery(self, delivery: WebhookDelivery) -> None:
        values = delivery_values(delivery)
        del values["id"]
        with translated_errors():
            self._session.execute(
                update(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.id == delivery.id)
                .values(**values, leased_by=None, lease_until=None)
                .execution_options(synchronize_session=False)
            )

    def claim_due(self, sender: str, lease_seconds: float, limit: int) -> Sequence[WebhookDelivery]:
        if limit < 1:
            raise ValueError("a claim takes at least one delivery")
        now = utc(self._clock.now())
        due = (
            select(WebhookDeliveryRow.id)
            .where(
                WebhookDeliveryRow.status == DeliveryStatus.PENDING.value,
                WebhookDeliveryRow.next_attempt_at <= now,
                or_(
                    WebhookDeliveryRow.lease_until.is_(None),
                    WebhookDeliveryRow.lease_until <= now,
                ),
            )
            .order_by(
                WebhookDeliveryRow.next_attempt_at,
                WebhookDeliveryRow.created_at,
                WebhookDeliveryRow.id,
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        lease = (
            update(WebhookDeliveryRow)
            .where(WebhookDeliveryRow.id.in_(due.scalar_subquery()))
            .values(leased_by=sender, lease_until=now + timedelta(seconds=lease_seconds))
            .returning(WebhookDeliveryRow)
            .execution_options(synchronize_session=False)
        )
        with translated_errors():
            rows = self._session.scalars(lease).all()
            claimed = [delivery_from_row(row) for row in rows]
        # RETURNING follows no order: back in the order they were picked in.
        claimed.sort(key=lambda d: (utc(d.next_attempt_at), utc(d.created_at), d.id))
        return claimed

    def add_attempt(self, attempt: DeliveryAttempt) -> None:
        with translated_errors():
            self._session.add(attempt_to_row(attempt))
            self._session.flush()

    def attempts_of(self, endpoint_id: str, limit: int) -> Sequence[DeliveryAttempt]:
        with translated_errors():
            rows = self._session.scalars(
                select(DeliveryAttemptRow)
                .where(DeliveryAttemptRow.endpoint_id == endpoint_id)
                .order_by(DeliveryAttemptRow.attempted_at.desc(), DeliveryAttemptRow.id.desc())
                .limit(limit)
            ).all()
        return [attempt_from_row(row) for row in rows]

    def oldest_pending_created_at(self) -> datetime | None:
        with translated_errors():
            oldest = self._session.scalar(
                select(func.min(WebhookDeliveryRow.created_at)).where(
                    WebhookDeliveryRow.status == DeliveryStatus.PENDING.value
                )
            )
        return utc(oldest) if oldest is not None else None
