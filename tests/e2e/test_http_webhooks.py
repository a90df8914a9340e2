"""Webhooks end to end on the embedded profile: a real receiver on 127.0.0.1 gets every event
of the user's images, each signed as Standard Webhooks says (checked with the
``standardwebhooks`` package), at least once, and a failing receiver gets it again until it
answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from standardwebhooks import Webhook

from imgproc_core.adapters.memory import ReceivedWebhook, WebhookAnswer
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import WebhookReceiver, closed_port, webhook_receiver

pytestmark = pytest.mark.e2e

EVENTS = ["image.uploaded", "image.ready", "image.failed", "image.deleted"]
#: Quick retries, so that a test sees several attempts in a second or two.
QUICK = {
    "webhook_allow_private": True,
    "webhook_backoff_seconds": 0.2,
    "webhook_backoff_max_seconds": 0.4,
    "webhook_poll_seconds": 0.05,
}


def _events(received: list[ReceivedWebhook]) -> list[dict[str, Any]]:
    return [msgspec.json.decode(request.body) for request in received]


def _verified(secret: str, request: ReceivedWebhook) -> Any:
    return Webhook(secret).verify(request.body, request.headers)


def _endpoint(api: Any, user: dict[str, str], receiver: WebhookReceiver, **body: Any) -> Any:
    made = api.call(
        "POST",
        "/webhooks",
        json={"url": receiver.url(), "events": EVENTS, **body},
        headers=user,
        expect=201,
    ).json()
    assert made["secret"].startswith("whsec_")
    return made


def test_every_event_reaches_the_receiver_signed(
    make_app: Any, open_api: Any, corpus_dir: Path
) -> None:
    with webhook_receiver() as receiver, open_api(make_app(**QUICK)) as api:
        user = api.register()
        endpoint = _endpoint(api, user, receiver)
        for name, spec in (("tiny", {"resize": {"width": 16}}), ("flat", {"grayscale": True})):
            api.call("PUT", f"/presets/{name}", json={"transformation": spec}, headers=user)
        photo = corpus_dir / "pillow" / "hopper.png"
        files = {"file": (photo.name, photo.read_bytes(), "image/png")}
        uploaded = api.call(
            "POST", "/images/", files=files, data={"variants": "tiny,flat"}, headers=user
        ).json()
        variants = {variant["id"] for variant in uploaded["variants"]}

        def arrived(count: int) -> list[ReceivedWebhook]:
            received = receiver.received
            return received if len(received) >= count else []

        first = wait_until(lambda: arrived(3), timeout=60, message="three events")
        api.call("DELETE", f"/images/{uploaded['id']}", headers=user, expect=204)
        received = wait_until(lambda: arrived(6), timeout=60, message="six events")

        for request in received:
            _verified(endpoint["secret"], request)
        events = _events(received)
        assert sorted(event["type"] for event in events[:3]) == [
            "image.ready",
            "image.ready",
            "image.uploaded",
        ]
        assert {e["data"]["id"] for e in events[:3] if e["type"] == "image.ready"} == variants
        assert all(e["data"]["status"] == "READY" for e in events[:3])
        assert [e["type"] for e in events[3:]] == ["image.deleted"] * 3
        assert {e["data"]["id"] for e in events[3:]} == variants | {uploaded["id"]}
        assert len({request.headers["webhook-id"] for request in received}) == 6
        assert len(first) == 3
        attempts = api.call(
            "GET", f"/webhooks/{endpoint['id']}/deliveries", headers=user, expect=200
        ).json()["items"]
        assert [attempt["status_code"] for attempt in attempts] == [204] * 6
        metrics = api.http.get("/metrics").text
        assert 'imgproc_webhook_deliveries_total{outcome="delivered"} 6.0' in metrics
        assert "imgproc_webhook_attempts_total 6.0" in metrics
        assert "imgproc_webhook_oldest_undelivered_age_seconds 0.0" in metrics


def test_a_failing_receiver_gets_the_event_again_until_it_answers(
    make_app: Any, open_api: Any, corpus_dir: Path
) -> None:
    with webhook_receiver() as receiver, open_api(make_app(**QUICK)) as api:
        receiver.answer = WebhookAnswer(status=500, body=b"not now")
        user = api.register()
        endpoint = _endpoint(api, user, receiver)
        api.upload(corpus_dir / "pillow" / "hopper.png", user)

        wait_until(lambda: len(receiver.received) >= 3, timeout=60, message="three attempts")
        receiver.answer = WebhookAnswer(status=204)
        detail = f"/webhooks/{endpoint['id']}/deliveries"

        def delivered() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = api.call("GET", detail, headers=user).json()["items"]
            return items if items and items[0]["status_code"] == 204 else []

        attempts = wait_until(delivered, timeout=60, message="delivered at last")
        # One event: the same message id on every attempt, each signed again.
        assert len({request.headers["webhook-id"] for request in receiver.received}) == 1
        for request in receiver.received:
            _verified(endpoint["secret"], request)
        assert {attempt["status_code"] for attempt in attempts[1:]} == {500}
        assert attempts[0]["error"] is None
        count = len(receiver.received)
        shown = api.call("GET", f"/webhooks/{endpoint['id']}", headers=user).json()
        assert (shown["failing_since"], shown["disabled_at"]) == (None, None)
        # Nothing more is sent once it is delivered.
        test = api.call("POST", f"/webhooks/{endpoint['id']}/test", headers=user, expect=202)
        wait_until(lambda: len(receiver.received) == count + 1, timeout=60, message="the test")
        last = _verified(endpoint["secret"], receiver.received[-1])
        assert last["type"] == "webhook.test"
        assert receiver.received[-1].headers["webhook-id"] == test.json()["delivery_id"]


def test_a_receiver_down_for_a_while_gets_the_event_once_it_is_up(
    make_app: Any, open_api: Any, corpus_dir: Path
) -> None:
    with open_api(make_app(**QUICK)) as api:
        user = api.register()
        with closed_port() as port:
            url = f"http://127.0.0.1:{port}/hooks/imgproc"
            endpoint = api.call(
                "POST", "/webhooks", json={"url": url, "events": EVENTS}, headers=user, expect=201
            ).json()
            detail = f"/webhooks/{endpoint['id']}/deliveries"
            api.upload(corpus_dir / "pillow" / "hopper.png", user)

            def refused() -> list[dict[str, Any]]:
                items: list[dict[str, Any]] = api.call("GET", detail, headers=user).json()["items"]
                return items if len(items) >= 2 else []

            attempts = wait_until(refused, timeout=60, message="two refused attempts")
            assert all(a["error"].startswith("could not connect") for a in attempts)
        with webhook_receiver(port=port) as receiver:
            (request,) = wait_until(lambda: receiver.received, timeout=60, message="delivered")
            event = _verified(endpoint["secret"], request)
            assert event["type"] == "image.uploaded"
            wait_until(
                lambda: (
                    api.call("GET", detail, headers=user).json()["items"][0]["status_code"] == 204
                ),
                timeout=60,
                message="the delivery recorded",
            )
