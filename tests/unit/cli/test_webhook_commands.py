"""``imgproc webhooks``: a user's endpoints listed for an operator, and a failed delivery
retried."""

from __future__ import annotations

from dataclasses import replace

from imgproc_core.domain.webhook_records import DeliveryStatus
from imgproc_core.use_cases.webhooks import CreateWebhookCommand, WebhookQuery
from tests.support.cli import Cli, ServiceSide

PASSWORD = "correct horse battery"


def test_a_users_endpoints_are_listed_without_their_secrets(cli: Cli, service: ServiceSide) -> None:
    cli.create_user("alice", PASSWORD)
    alice = service.user_id("alice", PASSWORD)
    endpoint = service.container.create_webhook()(
        CreateWebhookCommand(alice, "https://hooks.example/a", ["image.ready"])
    )

    listed = cli.json("webhooks", "list", "--user", "alice")["items"]
    shown = cli("webhooks", "list", "--user", "ALICE").stdout

    assert [(item["id"], item["url"], item["events"]) for item in listed] == [
        (endpoint.id, "https://hooks.example/a", ["image.ready"])
    ]
    assert endpoint.secret not in shown
    assert "active" in shown
    assert "no user 'bob'" in cli("webhooks", "list", "--user", "bob", expect=3).stderr


def test_a_failed_delivery_is_retried_and_only_a_failed_one(cli: Cli, service: ServiceSide) -> None:
    cli.create_user("alice", PASSWORD)
    alice = service.user_id("alice", PASSWORD)
    endpoint = service.container.create_webhook()(
        CreateWebhookCommand(alice, "https://hooks.example/a", ["image.ready"])
    )
    delivery = service.container.send_test_webhook()(WebhookQuery(alice, endpoint.id))

    pending = cli("webhooks", "retry", delivery.id, expect=2)
    with service.container.unit_of_work() as uow:
        uow.webhooks.update_delivery(replace(delivery, status=DeliveryStatus.FAILED))
        uow.commit()
    cli("webhooks", "retry", delivery.id)
    missing = cli("webhooks", "retry", "msg_nothing", expect=3)

    assert "only a failed one is retried" in pending.stderr
    assert "no webhook delivery 'msg_nothing'" in missing.stderr
    with service.container.unit_of_work() as uow:
        again = uow.webhooks.get_delivery(delivery.id)
    assert again is not None
    assert again.status is DeliveryStatus.PENDING
