"""Webhooks on the in-memory fakes, on a clock the tests move: events recorded with the changes
they report, retried on the schedule for a day and then failed, an endpoint disabled after a
day of failures, and the endpoints' own rules."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest
from dependency_injector import providers

from imgproc_core.adapters.memory import (
    InMemoryWebhookSender,
    ManualClock,
    ReceivedWebhook,
    WebhookAnswer,
    fake_image_bytes,
)
from imgproc_core.container import Container
from imgproc_core.domain.errors import InvalidInput
from imgproc_core.domain.images import Image
from imgproc_core.domain.transformations import parse_transformation
from imgproc_core.domain.webhook_records import DeliveryStatus
from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_core.use_cases import (
    ImageQuery,
    PresetCommand,
    RegisterUserCommand,
    RequestTransformCommand,
    UploadImageCommand,
)
from imgproc_core.use_cases.webhooks import (
    MAX_ENDPOINTS_PER_USER,
    CreateWebhookCommand,
    DeliveryOutcome,
    WebhookNotFound,
    WebhookQuery,
)

PHOTO = fake_image_bytes("png", 64, 48)
ALL = ("image.uploaded", "image.ready", "image.failed", "image.deleted")


class Receiver:
    """Answers with :attr:`answer`; None: nothing listens."""

    def __init__(self) -> None:
        self.answer: WebhookAnswer | None = WebhookAnswer()
        self.received: list[ReceivedWebhook] = []

    def __call__(self, request: ReceivedWebhook) -> WebhookAnswer | None:
        self.received.append(request)
        return self.answer

    def types(self) -> list[str]:
        return [msgspec.json.decode(r.body)["type"] for r in self.received]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def container(receiver: Receiver) -> Container:
    built = build_test_container(settings_for_tests(public_base_url="https://img.example"))
    built.webhook_sender.override(providers.Object(InMemoryWebhookSender(receiver)))
    return built


@pytest.fixture
def clock(container: Container) -> ManualClock:
    clock: ManualClock = container.clock()
    return clock


@pytest.fixture
def alice(container: Container) -> str:
    return container.register_user()(RegisterUserCommand("alice", "correct horse")).user.id


def _endpoint(container: Container, user_id: str, events: Any = ALL) -> Any:
    return container.create_webhook()(
        CreateWebhookCommand(user_id, "https://hooks.example/imgproc", events)
    )


def _upload(container: Container, user_id: str) -> Image:
    image: Image = container.upload_image()(UploadImageCommand(user_id, "cat.png", PHOTO))
    return image


def _send(container: Container) -> list[DeliveryOutcome]:
    outcomes: list[DeliveryOutcome] = container.deliver_webhooks()("test-sender")
    return outcomes


def test_an_upload_is_told_to_the_endpoints_that_subscribed(
    container: Container, receiver: Receiver, alice: str
) -> None:
    bob = container.register_user()(RegisterUserCommand("bob", "correct horse")).user.id
    _endpoint(container, alice)
    _endpoint(container, alice, ("image.ready",))
    _endpoint(container, bob)

    image = _upload(container, alice)

    assert _send(container) == [DeliveryOutcome.DELIVERED]
    (request,) = receiver.received
    event = msgspec.json.decode(request.body)
    assert event["type"] == "image.uploaded"
    assert event["data"]["id"] == image.id
    assert event["data"]["storage_url"] == f"https://img.example/api/v1/images/{image.id}"
    assert request.headers["webhook-signature"].startswith("v1,")
    assert _send(container) == []


def test_jobs_tell_of_ready_and_failed_derivatives(
    container: Container, receiver: Receiver, alice: str
) -> None:
    _endpoint(container, alice, ("image.ready", "image.failed"))
    image = _upload(container, alice)
    ready = container.request_transform()(
        RequestTransformCommand(alice, image.id, parse_transformation({"rotate": 90}))
    )
    container.run_next_job(worker_id="w")()

    assert _send(container) == [DeliveryOutcome.DELIVERED]
    event = msgspec.json.decode(receiver.received[0].body)
    assert (event["type"], event["data"]["id"], event["data"]["status"]) == (
        "image.ready",
        ready.id,
        "READY",
    )


def test_a_change_rolled_back_tells_nothing(
    container: Container, receiver: Receiver, alice: str
) -> None:
    _endpoint(container, alice)
    with pytest.raises(InvalidInput):
        container.upload_image().upload(
            UploadImageCommand(alice, "cat.png", PHOTO, variants=("nope",))
        )
    assert _send(container) == []


def test_a_failing_receiver_is_retried_on_the_schedule_then_the_delivery_fails(
    container: Container, receiver: Receiver, clock: ManualClock, alice: str
) -> None:
    endpoint = _endpoint(container, alice, ("image.uploaded",))
    receiver.answer = WebhookAnswer(status=503)
    _upload(container, alice)

    assert _send(container) == [DeliveryOutcome.RETRIED]
    assert _send(container) == []  # not due before 5 s
    clock.advance(5)
    assert _send(container) == [DeliveryOutcome.RETRIED]
    clock.advance(9)
    assert _send(container) == []  # the second wait is 10 s
    clock.advance(1)
    assert _send(container) == [DeliveryOutcome.RETRIED]
    outcomes: list[DeliveryOutcome] = []
    for _ in range(200):
        clock.advance(3600)
        outcomes += _send(container)
    assert outcomes[-1] is DeliveryOutcome.FAILED
    assert set(outcomes[:-1]) == {DeliveryOutcome.RETRIED}
    # One message, tried again and again under the same id, for a day at most.
    assert len({request.headers["webhook-id"] for request in receiver.received}) == 1
    with container.unit_of_work() as uow:
        attempts = uow.webhooks.attempts_of(endpoint.id, 1000)
    assert attempts[0].attempted_at - attempts[-1].attempted_at <= timedelta(hours=24)
    assert {attempt.status_code for attempt in attempts} == {503}


def test_an_endpoint_failing_every_delivery_for_a_day_is_disabled(
    container: Container, receiver: Receiver, clock: ManualClock, alice: str
) -> None:
    endpoint = _endpoint(container, alice)
    receiver.answer = None  # nothing listens
    for _ in range(26):
        _upload(container, alice)
        _send(container)
        clock.advance(3600)
        _send(container)

    shown = container.get_webhook()(WebhookQuery(alice, endpoint.id))
    assert shown.disabled_at is not None
    assert shown.disabled_reason is not None
    assert "every delivery failed for 24 hours" in shown.disabled_reason
    assert "could not connect" in shown.disabled_reason
    # Nothing more is queued for it; a test still goes, so its owner can see it work again.
    receiver.answer = WebhookAnswer(status=200)
    sent = len(receiver.received)
    _upload(container, alice)
    container.send_test_webhook()(WebhookQuery(alice, endpoint.id))
    clock.advance(7200)
    outcomes = _send(container)
    assert DeliveryOutcome.DELIVERED in outcomes
    assert receiver.types()[sent:] == ["webhook.test"]


def test_a_success_ends_a_streak_of_failures(
    container: Container, receiver: Receiver, clock: ManualClock, alice: str
) -> None:
    endpoint = _endpoint(container, alice)
    receiver.answer = WebhookAnswer(status=500)
    _upload(container, alice)
    _send(container)
    assert container.get_webhook()(WebhookQuery(alice, endpoint.id)).failing_since is not None
    receiver.answer = WebhookAnswer(status=200)
    clock.advance(5)
    assert _send(container) == [DeliveryOutcome.DELIVERED]
    assert container.get_webhook()(WebhookQuery(alice, endpoint.id)).failing_since is None


def test_an_operator_retries_a_failed_delivery_once(
    container: Container, receiver: Receiver, clock: ManualClock, alice: str
) -> None:
    _endpoint(container, alice)
    receiver.answer = WebhookAnswer(status=500)
    _upload(container, alice)
    for _ in range(40):
        _send(container)
        clock.advance(3600)
    with container.unit_of_work() as uow:
        delivery_id = receiver.received[0].headers["webhook-id"]
        delivery = uow.webhooks.get_delivery(delivery_id)
    assert delivery is not None
    assert delivery.status is DeliveryStatus.FAILED

    receiver.answer = WebhookAnswer(status=200)
    container.retry_delivery()(delivery_id)
    assert _send(container) == [DeliveryOutcome.DELIVERED]
    with pytest.raises(InvalidInput):
        container.retry_delivery()(delivery_id)
    with pytest.raises(WebhookNotFound):
        container.retry_delivery()("msg_nothing")


def test_deleting_an_endpoint_drops_what_it_had_to_be_sent(
    container: Container, receiver: Receiver, alice: str
) -> None:
    endpoint = _endpoint(container, alice)
    _upload(container, alice)
    container.delete_webhook()(WebhookQuery(alice, endpoint.id))
    assert _send(container) == []
    assert receiver.received == []


@pytest.mark.parametrize(
    ("url", "events"),
    [
        ("ftp://hooks.example/x", ALL),
        ("https://user:pw@hooks.example/x", ALL),
        ("https://hooks.example/x", ()),
        ("https://hooks.example/x", ("image.exploded",)),
        ("https://hooks.example/x", ("webhook.test",)),
        ("https://hooks.example/x", "image.ready"),
    ],
)
def test_an_endpoint_is_refused_naming_the_field(
    container: Container, alice: str, url: str, events: Any
) -> None:
    with pytest.raises(InvalidInput) as refused:
        container.create_webhook()(CreateWebhookCommand(alice, url, events))
    assert refused.value.field in {"url", "events"}


def test_a_user_keeps_a_bounded_number_of_endpoints(container: Container, alice: str) -> None:
    for _ in range(MAX_ENDPOINTS_PER_USER):
        _endpoint(container, alice)
    with pytest.raises(InvalidInput):
        _endpoint(container, alice)


def test_another_users_endpoint_is_not_found(container: Container, alice: str) -> None:
    bob = container.register_user()(RegisterUserCommand("bob", "correct horse")).user.id
    endpoint = _endpoint(container, alice)
    for use_case in (
        "get_webhook",
        "delete_webhook",
        "send_test_webhook",
        "list_delivery_attempts",
    ):
        with pytest.raises(WebhookNotFound):
            getattr(container, use_case)()(WebhookQuery(bob, endpoint.id))


def test_variants_tell_of_each_ready_derivative(
    container: Container, receiver: Receiver, alice: str
) -> None:
    _endpoint(container, alice, ("image.ready",))
    for name, width in (("a", 10), ("b", 20)):
        container.put_preset()(
            PresetCommand(alice, name, parse_transformation({"resize": {"width": width}}))
        )
    upload = container.upload_image().upload(
        UploadImageCommand(alice, "cat.png", PHOTO, variants=("a,b",))
    )
    run = container.run_next_job(worker_id="w")
    while run():
        pass

    _send(container)
    ready = [msgspec.json.decode(r.body)["data"]["id"] for r in receiver.received]
    assert sorted(ready) == sorted(v.image.id for v in upload.variants)
    assert container.get_image_metadata()(ImageQuery(alice, ready[0])).status.value == "READY"


def test_a_receiver_down_then_slow_gets_the_event_once_it_answers(
    container: Container, receiver: Receiver, clock: ManualClock, alice: str
) -> None:
    endpoint = _endpoint(container, alice, ("image.uploaded",))
    receiver.answer = None  # down
    _upload(container, alice)
    assert _send(container) == [DeliveryOutcome.RETRIED]
    receiver.answer = WebhookAnswer(status=200, delay_seconds=30)  # slower than the timeout
    clock.advance(5)
    assert _send(container) == [DeliveryOutcome.RETRIED]
    receiver.answer = WebhookAnswer(status=200)
    clock.advance(10)
    assert _send(container) == [DeliveryOutcome.DELIVERED]
    clock.advance(3600)
    assert _send(container) == []

    with container.unit_of_work() as uow:
        attempts = uow.webhooks.attempts_of(endpoint.id, 10)
    assert [(a.status_code, (a.error or "").split(":")[0]) for a in attempts] == [
        (200, ""),
        (None, "timed out after 5 s"),
        (None, "could not connect"),
    ]
