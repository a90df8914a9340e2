"""Webhooks: a user's endpoints, told of their images' events, at least once.

Events are recorded by :class:`WebhookEvents` in the transaction of the change they report
(the upload, the job's end, the deletion): one delivery row per subscribed endpoint, the
outbox of events. :class:`DeliverWebhooks` leases due deliveries (several senders at once never
send one attempt twice), makes one attempt each through the :class:`~imgproc_core.ports.
WebhookSender`, and records it: delivered on a 2xx, else tried again on the
:class:`~imgproc_core.domain.webhooks.DeliverySchedule` (5 s doubling to an hour apart, for 24
hours), then failed. An endpoint that has failed every delivery for 24 hours is disabled, with
the reason.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import msgspec

from imgproc_core.domain.errors import DependencyUnavailable, InvalidInput, NotFound
from imgproc_core.domain.images import Image
from imgproc_core.domain.webhook_records import (
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from imgproc_core.domain.webhooks import (
    SUBSCRIBABLE_EVENT_TYPES,
    DeliverySchedule,
    WebhookEventType,
    check_webhook_url,
    new_webhook_secret,
)
from imgproc_core.ports import Clock, UnitOfWork, UnitOfWorkFactory
from imgproc_core.ports.webhooks import WebhookMessage, WebhookSender

__all__ = [
    "ATTEMPTS_LISTED",
    "FAILING_ENDPOINT_DISABLED_AFTER",
    "MAX_ENDPOINTS_PER_USER",
    "CreateWebhook",
    "CreateWebhookCommand",
    "DeleteWebhook",
    "DeliverWebhooks",
    "DeliveryOutcome",
    "GetWebhook",
    "GetWebhookBacklog",
    "ListDeliveryAttempts",
    "ListWebhooks",
    "RetryDelivery",
    "SendTestWebhook",
    "WebhookDispatcher",
    "WebhookEvents",
    "WebhookNotFound",
    "WebhookQuery",
    "image_event_data",
]

logger = logging.getLogger(__name__)

MAX_ENDPOINTS_PER_USER: Final = 20
#: Attempts ``GET /webhooks/{id}/deliveries`` shows, newest first.
ATTEMPTS_LISTED: Final = 100
FAILING_ENDPOINT_DISABLED_AFTER: Final = timedelta(hours=24)
#: How long a sender holds the deliveries it leased: longer than a batch of attempts takes
#: (each at most the sender's 5 s timeout), so no other sender takes one meanwhile.
DELIVERY_LEASE_SECONDS: Final = 120.0


class WebhookNotFound(NotFound):
    code = "webhook_not_found"


def image_event_data(image: Image, base_url: str) -> dict[str, Any]:
    """The image as the API shows it (``GET /images/{id}/metadata``)."""
    return {
        "id": image.id,
        "user_id": image.user_id,
        "filename": image.filename,
        "storage_url": f"{base_url.rstrip('/')}/api/v1/images/{image.id}",
        "is_transformed": image.is_transformed,
        "mimetype": image.mimetype,
        "size_bytes": image.size_bytes,
        "width": image.width,
        "height": image.height,
        "format": image.format,
        "status": image.status.value,
        "created_at": _timestamp(image.created_at),
        "updated_at": _timestamp(image.updated_at),
        "frames": image.frames,
        "source_id": image.source_id,
        "transformation": (
            msgspec.to_builtins(image.transformation) if image.transformation is not None else None
        ),
        "failure_reason": image.failure_reason,
    }


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class WebhookEvents:
    """Records an event for every endpoint of the image's owner that subscribed to it, in the
    caller's unit of work (the caller commits, with the change the event reports)."""

    def __init__(self, clock: Clock, base_url: str) -> None:
        self._clock = clock
        self._base_url = base_url

    def record(self, uow: UnitOfWork, event_type: WebhookEventType, image: Image) -> int:
        """How many deliveries were queued."""
        endpoints = [e for e in uow.webhooks.endpoints_of(image.user_id) if e.wants(event_type)]
        if not endpoints:
            return 0
        now = self._clock.now()
        body = _body(event_type, now, image_event_data(image, self._base_url))
        for endpoint in endpoints:
            uow.webhooks.add_delivery(_delivery(endpoint, event_type, body, now))
        return len(endpoints)


def _body(event_type: str, now: datetime, data: dict[str, Any]) -> bytes:
    return msgspec.json.encode({"type": event_type, "timestamp": _timestamp(now), "data": data})


def _delivery(
    endpoint: WebhookEndpoint, event_type: str, body: bytes, now: datetime
) -> WebhookDelivery:
    return WebhookDelivery(
        id=_new_message_id(),
        endpoint_id=endpoint.id,
        user_id=endpoint.user_id,
        event_type=event_type,
        body=body,
        created_at=now,
        next_attempt_at=now,
    )


# -- endpoints ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateWebhookCommand:
    user_id: str
    url: str
    events: Sequence[str]


@dataclass(frozen=True, slots=True)
class WebhookQuery:
    user_id: str
    endpoint_id: str = ""


def _events(events: Sequence[str]) -> tuple[str, ...]:
    if isinstance(events, str) or not events:
        raise InvalidInput("events lists at least one event type", "events")
    chosen: list[str] = []
    for event in events:
        if event not in SUBSCRIBABLE_EVENT_TYPES:
            names = ", ".join(SUBSCRIBABLE_EVENT_TYPES)
            raise InvalidInput(f"{event!r} is not an event type; one of {names}", "events")
        if event not in chosen:
            chosen.append(event)
    return tuple(chosen)


class CreateWebhook:
    """A new endpoint of the caller's, with a secret of its own (shown this once)."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def __call__(self, command: CreateWebhookCommand) -> WebhookEndpoint:
        endpoint = WebhookEndpoint(
            id=uuid.uuid4().hex,
            user_id=command.user_id,
            url=check_webhook_url(command.url),
            events=_events(command.events),
            secret=new_webhook_secret(),
            created_at=self._clock.now(),
        )
        with self._uow_factory() as uow:
            if len(uow.webhooks.endpoints_of(command.user_id)) >= MAX_ENDPOINTS_PER_USER:
                raise InvalidInput(
                    f"a user keeps at most {MAX_ENDPOINTS_PER_USER} webhook endpoints", "url"
                )
            uow.webhooks.add_endpoint(endpoint)
            uow.commit()
        return endpoint


def _owned(uow: UnitOfWork, query: WebhookQuery) -> WebhookEndpoint:
    endpoint = uow.webhooks.get_endpoint(query.endpoint_id)
    if endpoint is None or endpoint.user_id != query.user_id:
        raise WebhookNotFound(f"no webhook {query.endpoint_id!r}")
    return endpoint


class ListWebhooks:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: WebhookQuery) -> Sequence[WebhookEndpoint]:
        with self._uow_factory() as uow:
            return uow.webhooks.endpoints_of(query.user_id)

    def of_username(self, username: str) -> Sequence[WebhookEndpoint]:
        """For operators: the endpoints of the user of that name."""
        # Here, not at the top: the admin use cases import the image ones, which import these.
        from imgproc_core.use_cases.admin import user_named

        with self._uow_factory() as uow:
            user = user_named(uow.users, username)
            return uow.webhooks.endpoints_of(user.id)


class GetWebhook:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: WebhookQuery) -> WebhookEndpoint:
        with self._uow_factory() as uow:
            return _owned(uow, query)


class DeleteWebhook:
    """Remove an endpoint, with what is still to be sent to it."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: WebhookQuery) -> None:
        with self._uow_factory() as uow:
            _owned(uow, query)
            uow.webhooks.delete_endpoint(query.endpoint_id)
            uow.commit()


class ListDeliveryAttempts:
    """The endpoint's latest attempts, newest first."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: WebhookQuery) -> Sequence[DeliveryAttempt]:
        with self._uow_factory() as uow:
            _owned(uow, query)
            return uow.webhooks.attempts_of(query.endpoint_id, ATTEMPTS_LISTED)


class SendTestWebhook:
    """Queue a ``webhook.test`` event for one endpoint (a disabled one too: a test is how its
    owner finds out whether it works again)."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def __call__(self, query: WebhookQuery) -> WebhookDelivery:
        now = self._clock.now()
        with self._uow_factory() as uow:
            endpoint = _owned(uow, query)
            data = {"webhook_id": endpoint.id, "message": "a test event, sent on request"}
            delivery = _delivery(
                endpoint, WebhookEventType.WEBHOOK_TEST, _body("webhook.test", now, data), now
            )
            uow.webhooks.add_delivery(delivery)
            uow.commit()
        return delivery


class RetryDelivery:
    """For operators: one more attempt, now, at a delivery that failed for good; it fails
    again at once if that attempt fails too (its day of retries is over). Its endpoint, if it
    was disabled, is enabled again."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def __call__(self, delivery_id: str) -> WebhookDelivery:
        with self._uow_factory() as uow:
            delivery = uow.webhooks.get_delivery(delivery_id)
            if delivery is None:
                raise WebhookNotFound(f"no webhook delivery {delivery_id!r}")
            if delivery.status is not DeliveryStatus.FAILED:
                raise InvalidInput(
                    f"delivery {delivery_id} is {delivery.status.value}; only a failed one is "
                    "retried",
                    "delivery_id",
                )
            again = replace(
                delivery,
                status=DeliveryStatus.PENDING,
                next_attempt_at=self._clock.now(),
                finished_at=None,
            )
            uow.webhooks.update_delivery(again)
            endpoint = uow.webhooks.get_endpoint(delivery.endpoint_id)
            if endpoint is not None and endpoint.disabled_at is not None:
                # An operator retrying says the receiver is back: the endpoint is enabled.
                uow.webhooks.update_endpoint(
                    replace(endpoint, disabled_at=None, disabled_reason=None, failing_since=None)
                )
            uow.commit()
        return again


@dataclass(frozen=True, slots=True)
class WebhookBacklog:
    oldest_pending_created_at: datetime | None


class GetWebhookBacklog:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self) -> WebhookBacklog:
        with self._uow_factory() as uow:
            return WebhookBacklog(uow.webhooks.oldest_pending_created_at())


# -- sending -----------------------------------------------------------------------------------


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    #: Failed; another attempt is planned.
    RETRIED = "retried"
    #: Its last attempt failed.
    FAILED = "failed"
    #: Its endpoint is disabled: not sent.
    SKIPPED = "skipped"
    #: Its endpoint was deleted meanwhile.
    GONE = "gone"


class DeliverWebhooks:
    """One round of a sender: lease up to ``batch`` due deliveries, attempt each, record what
    came of it. Returns the outcomes, for the caller's metrics; an empty list when nothing was
    due."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        sender: WebhookSender,
        clock: Clock,
        schedule: DeliverySchedule | None = None,
        batch: int = 10,
        lease_seconds: float = DELIVERY_LEASE_SECONDS,
    ) -> None:
        self._uow_factory = uow_factory
        self._sender = sender
        self._clock = clock
        self._schedule = schedule or DeliverySchedule()
        self._batch = batch
        self._lease_seconds = lease_seconds

    def __call__(self, sender_id: str) -> list[DeliveryOutcome]:
        with self._uow_factory() as uow:
            claimed = uow.webhooks.claim_due(sender_id, self._lease_seconds, self._batch)
            uow.commit()
        return [self._attempt(delivery) for delivery in claimed]

    def _attempt(self, delivery: WebhookDelivery) -> DeliveryOutcome:
        with self._uow_factory() as uow:
            endpoint = uow.webhooks.get_endpoint(delivery.endpoint_id)
        if endpoint is None:
            return DeliveryOutcome.GONE
        now = self._clock.now()
        if endpoint.disabled_at is not None and delivery.event_type != "webhook.test":
            self._record(
                replace(
                    delivery,
                    status=DeliveryStatus.FAILED,
                    last_error="the endpoint is disabled",
                    finished_at=now,
                ),
                None,
                None,
            )
            return DeliveryOutcome.SKIPPED
        outcome = self._sender.send(
            WebhookMessage(
                url=endpoint.url,
                message_id=delivery.id,
                timestamp=now,
                body=delivery.body,
                secret=endpoint.secret,
            )
        )
        duration_ms = round(outcome.duration_seconds * 1000)
        ended = self._clock.now()
        attempt = DeliveryAttempt(
            delivery_id=delivery.id,
            endpoint_id=endpoint.id,
            attempted_at=now,
            duration_ms=duration_ms,
            status_code=outcome.status,
            error=outcome.error,
        )
        attempts = delivery.attempts + 1
        common: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": outcome.status,
            "last_error": outcome.error,
        }
        if outcome.delivered:
            self._record(
                replace(delivery, status=DeliveryStatus.DELIVERED, finished_at=ended, **common),
                attempt,
                replace(endpoint, failing_since=None),
            )
            return DeliveryOutcome.DELIVERED
        next_at = self._schedule.next_attempt_at(attempts, delivery.created_at, ended)
        failing = self._failing(endpoint, delivery, outcome.status, outcome.error, ended)
        if next_at is None:
            self._record(
                replace(delivery, status=DeliveryStatus.FAILED, finished_at=ended, **common),
                attempt,
                failing,
            )
            return DeliveryOutcome.FAILED
        self._record(replace(delivery, next_attempt_at=next_at, **common), attempt, failing)
        return DeliveryOutcome.RETRIED

    @staticmethod
    def _failing(
        endpoint: WebhookEndpoint,
        delivery: WebhookDelivery,
        status: int | None,
        error: str | None,
        now: datetime,
    ) -> WebhookEndpoint:
        since = endpoint.failing_since or now
        failing = replace(endpoint, failing_since=since)
        if (
            endpoint.disabled_at is None
            and delivery.event_type != "webhook.test"
            and now - since >= FAILING_ENDPOINT_DISABLED_AFTER
        ):
            last = f"HTTP {status}" if status is not None else (error or "no answer")
            failing = replace(
                failing,
                disabled_at=now,
                disabled_reason=(
                    f"every delivery failed for 24 hours, since {_timestamp(since)}; "
                    f"the last: {last}"
                ),
            )
            logger.warning("webhook endpoint %s disabled: %s", endpoint.id, failing.disabled_reason)
        return failing

    def _record(
        self,
        delivery: WebhookDelivery,
        attempt: DeliveryAttempt | None,
        endpoint: WebhookEndpoint | None,
    ) -> None:
        with self._uow_factory() as uow:
            if uow.webhooks.get_endpoint(delivery.endpoint_id) is None:
                return  # deleted meanwhile, with its deliveries
            if attempt is not None:
                uow.webhooks.add_attempt(attempt)
            uow.webhooks.update_delivery(delivery)
            if endpoint is not None:
                uow.webhooks.update_endpoint(endpoint)
            uow.commit()


class WebhookDispatcher:
    """A thread that sends due webhooks until stopped: the embedded profile's, in the HTTP
    process, and the relay's, in production. Several, in several processes, never send one
    attempt twice (each round leases what it sends).

    It looks for due deliveries every ``idle_seconds`` (sooner when :meth:`wake` is called);
    after a round that found some, at once. A dependency down (the database) is waited out,
    ``error_backoff_seconds`` at a time. ``on_outcome`` hears of every delivery's outcome (for
    metrics).
    """

    def __init__(
        self,
        deliver: DeliverWebhooks,
        sender_id: str,
        *,
        idle_seconds: float = 0.5,
        error_backoff_seconds: float = 2.0,
        on_outcome: Callable[[DeliveryOutcome], None] | None = None,
    ) -> None:
        self._deliver = deliver
        self._sender_id = sender_id
        self._idle = idle_seconds
        self._error_backoff = error_backoff_seconds
        self._on_outcome = on_outcome
        self._stopping = threading.Event()
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the webhook dispatcher is already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="imgproc-webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._woken.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop, letting the attempts in hand end (each is bounded by the sender's timeout)."""
        self._stopping.set()
        self._woken.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the webhook dispatcher is still sending at shutdown")
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                outcomes = self._deliver(self._sender_id)
            except DependencyUnavailable as exc:
                logger.warning("webhooks wait: %s", exc)
                self._stopping.wait(self._error_backoff)
                continue
            except Exception:
                logger.exception("could not send webhooks; trying again shortly")
                self._stopping.wait(self._error_backoff)
                continue
            if self._on_outcome is not None:
                for outcome in outcomes:
                    self._on_outcome(outcome)
            if not outcomes and self._woken.wait(self._idle):
                self._woken.clear()
