"""The webhook repository's contract, on every database: endpoints, their deliveries (the
outbox of events), leased by one sender at a time, and the attempts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import UserNotFound
from imgproc_core.domain.users import User
from imgproc_core.domain.webhook_records import (
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from imgproc_core.ports.persistence import UnitOfWorkFactory
from tests.contracts.conftest import hex_id


@pytest.fixture
def owner(uow_factory: UnitOfWorkFactory, make_user: Callable[..., User]) -> User:
    user = make_user()
    with uow_factory() as uow:
        uow.users.add(user)
        uow.commit()
    return user


def _endpoint(owner: User, clock: ManualClock, n: int, **overrides: object) -> WebhookEndpoint:
    fields: dict[str, object] = {
        "id": hex_id(0x5000 + n),
        "user_id": owner.id,
        "url": f"https://hooks.example/{n}",
        "events": ("image.uploaded", "image.ready"),
        "secret": "whsec_" + "A" * 32,
        "created_at": clock.now() + timedelta(seconds=n, microseconds=500),
    }
    fields.update(overrides)
    return WebhookEndpoint(**fields)  # type: ignore[arg-type]


def _delivery(endpoint: WebhookEndpoint, clock: ManualClock, n: int) -> WebhookDelivery:
    moment = clock.now() + timedelta(milliseconds=n)
    return WebhookDelivery(
        id=f"msg_{n:032x}",
        endpoint_id=endpoint.id,
        user_id=endpoint.user_id,
        event_type="image.ready",
        body=b'{"type":"image.ready"}',
        created_at=moment,
        next_attempt_at=moment,
    )


def _store(
    uow_factory: UnitOfWorkFactory, endpoint: WebhookEndpoint, *deliveries: WebhookDelivery
) -> None:
    with uow_factory() as uow:
        uow.webhooks.add_endpoint(endpoint)
        for delivery in deliveries:
            uow.webhooks.add_delivery(delivery)
        uow.commit()


def test_an_endpoint_reads_back_whole_and_is_updated(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    endpoint = _endpoint(owner, clock, 1)
    _store(uow_factory, endpoint)
    disabled = replace(
        endpoint,
        failing_since=clock.now(),
        disabled_at=clock.now() + timedelta(days=1),
        disabled_reason="every delivery failed for 24 hours",
    )
    with uow_factory() as uow:
        assert uow.webhooks.get_endpoint(endpoint.id) == endpoint
        uow.webhooks.update_endpoint(disabled)
        uow.commit()
    with uow_factory() as uow:
        assert uow.webhooks.get_endpoint(endpoint.id) == disabled
        assert uow.webhooks.endpoints_of(owner.id) == [disabled]
        assert uow.webhooks.endpoints_of(hex_id(0x1999)) == []


def test_an_endpoint_needs_its_user(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    with uow_factory() as uow, pytest.raises(UserNotFound):
        uow.webhooks.add_endpoint(_endpoint(owner, clock, 1, user_id=hex_id(0x1999)))


def test_a_delivery_reads_back_and_is_written_back(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    endpoint = _endpoint(owner, clock, 1)
    delivery = _delivery(endpoint, clock, 1)
    _store(uow_factory, endpoint, delivery)
    done = replace(
        delivery,
        status=DeliveryStatus.DELIVERED,
        attempts=2,
        last_status_code=204,
        finished_at=clock.now() + timedelta(seconds=3),
    )
    with uow_factory() as uow:
        assert uow.webhooks.get_delivery(delivery.id) == delivery
        uow.webhooks.update_delivery(done)
        uow.commit()
    with uow_factory() as uow:
        assert uow.webhooks.get_delivery(delivery.id) == done
        assert uow.webhooks.oldest_pending_created_at() is None


def test_due_deliveries_are_leased_to_one_sender_at_a_time(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    endpoint = _endpoint(owner, clock, 1)
    early, late = _delivery(endpoint, clock, 1), _delivery(endpoint, clock, 2)
    later = replace(_delivery(endpoint, clock, 3), next_attempt_at=clock.now() + timedelta(hours=1))
    _store(uow_factory, endpoint, late, early, later)
    clock.advance(1)

    with uow_factory() as uow:
        assert [d.id for d in uow.webhooks.claim_due("a", 60, 1)] == [early.id]
        uow.commit()
    with uow_factory() as uow:
        assert [d.id for d in uow.webhooks.claim_due("b", 60, 10)] == [late.id]
        uow.commit()
    with uow_factory() as uow:
        assert uow.webhooks.claim_due("c", 60, 10) == []
        assert uow.webhooks.oldest_pending_created_at() == early.created_at
    # A lease that ran out is taken again; one written back is free at once.
    with uow_factory() as uow:
        uow.webhooks.update_delivery(replace(late, attempts=1))
        uow.commit()
    clock.advance(61)
    with uow_factory() as uow:
        assert [d.id for d in uow.webhooks.claim_due("c", 60, 10)] == [early.id, late.id]


def test_a_claim_rolled_back_leases_nothing(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    endpoint = _endpoint(owner, clock, 1)
    delivery = _delivery(endpoint, clock, 1)
    _store(uow_factory, endpoint, delivery)
    clock.advance(1)
    with uow_factory() as uow:
        assert len(uow.webhooks.claim_due("a", 60, 10)) == 1
    with uow_factory() as uow:
        assert [d.id for d in uow.webhooks.claim_due("b", 60, 10)] == [delivery.id]


def test_concurrent_senders_never_lease_one_delivery_twice(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    endpoint = _endpoint(owner, clock, 1)
    deliveries = [_delivery(endpoint, clock, n) for n in range(40)]
    _store(uow_factory, endpoint, *deliveries)
    clock.advance(1)
    claimed: list[str] = []
    lock = threading.Lock()

    def sender(name: str) -> None:
        while True:
            with uow_factory() as uow:
                batch = uow.webhooks.claim_due(name, 60, 3)
                uow.commit()
            if not batch:
                return
            with lock:
                claimed.extend(d.id for d in batch)

    threads = [threading.Thread(target=sender, args=(f"s{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(claimed) == sorted(d.id for d in deliveries)


def test_attempts_are_listed_newest_first_and_go_with_their_endpoint(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    endpoint, other = _endpoint(owner, clock, 1), _endpoint(owner, clock, 2)
    delivery, kept = _delivery(endpoint, clock, 1), _delivery(other, clock, 2)
    _store(uow_factory, endpoint, delivery)
    _store(uow_factory, other, kept)
    attempts = [
        DeliveryAttempt(
            delivery_id=delivery.id,
            endpoint_id=endpoint.id,
            attempted_at=clock.now() + timedelta(seconds=n),
            duration_ms=n * 10,
            status_code=500 if n < 2 else None,
            error=None if n < 2 else "timed out after 5 s",
        )
        for n in range(3)
    ]
    with uow_factory() as uow:
        for attempt in attempts:
            uow.webhooks.add_attempt(attempt)
        uow.webhooks.add_attempt(replace(attempts[0], delivery_id=kept.id, endpoint_id=other.id))
        uow.commit()
    with uow_factory() as uow:
        assert list(uow.webhooks.attempts_of(endpoint.id, 10)) == attempts[::-1]
        assert list(uow.webhooks.attempts_of(endpoint.id, 2)) == attempts[:0:-1]
        assert uow.webhooks.delete_endpoint(endpoint.id)
        assert not uow.webhooks.delete_endpoint(endpoint.id)
        uow.commit()
    with uow_factory() as uow:
        assert uow.webhooks.get_delivery(delivery.id) is None
        assert uow.webhooks.attempts_of(endpoint.id, 10) == []
        assert len(uow.webhooks.attempts_of(other.id, 10)) == 1
        assert uow.webhooks.get_delivery(kept.id) == kept
