"""What the service keeps of webhooks: a user's endpoints, one delivery per event and endpoint
(the durable outbox of events), and every attempt at sending one.

A delivery is written in the same transaction as the change it reports (an upload, a job's
end, a deletion), so an event is never lost to a crash between the two, and never sent for a
change that was rolled back. It is sent at least once: a receiver drops duplicates by the
``webhook-id`` header, which is the delivery's id and the same on every attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class DeliveryStatus(StrEnum):
    #: Not sent yet, or to be tried again at ``next_attempt_at``.
    PENDING = "pending"
    #: A 2xx answer came back.
    DELIVERED = "delivered"
    #: Its last attempt failed too; nothing more is tried unless an operator retries it.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """A URL of a user's, told of the events it subscribed to, signed with ``secret``."""

    id: str
    user_id: str
    url: str
    events: tuple[str, ...]
    secret: str = field(repr=False)
    created_at: datetime
    #: Since when every delivery to it has failed; None once one succeeds.
    failing_since: datetime | None = None
    #: Disabled after failing every delivery for a day: nothing more is queued for it.
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    def wants(self, event_type: str) -> bool:
        return self.disabled_at is None and event_type in self.events


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event for one endpoint; ``id`` is the message id its receiver sees."""

    id: str
    endpoint_id: str
    user_id: str
    event_type: str
    #: The JSON body sent, as it was when the event happened.
    body: bytes = field(repr=False)
    created_at: datetime
    next_attempt_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try at sending a delivery: the answer's status (None: no answer) or what failed."""

    delivery_id: str
    endpoint_id: str
    attempted_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
