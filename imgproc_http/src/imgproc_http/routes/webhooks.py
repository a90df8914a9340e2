"""``/webhooks``: the caller's endpoints, told of their images' events.

``POST`` makes one and answers its signing secret, this once; ``GET`` lists them or shows
one (a disabled one with the reason); ``DELETE`` removes one with what is still to be sent to
it; ``POST /{id}/test`` queues a ``webhook.test`` event; ``GET /{id}/deliveries`` lists the
latest attempts. Another user's endpoint is as unknown as a missing one: 404.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from imgproc_core.domain import User
from imgproc_core.use_cases.webhooks import (
    CreateWebhook,
    CreateWebhookCommand,
    DeleteWebhook,
    GetWebhook,
    ListDeliveryAttempts,
    ListWebhooks,
    SendTestWebhook,
    WebhookQuery,
)
from imgproc_http.context import caller
from imgproc_http.errors import problem_responses
from imgproc_http.schemas import (
    JSON_BODY_LIMIT,
    DeliveryAttemptList,
    DeliveryAttemptOut,
    TestEventQueued,
    WebhookCreated,
    WebhookList,
    WebhookOut,
    WebhookRequest,
)
from imgproc_http.security import AUTHENTICATED_OPT, BEARER_SCHEME

WebhookId = FromPath[Annotated[str, Parameter(min_length=1, max_length=128)]]


class WebhooksController(Controller):
    path = "/webhooks"
    tags = ["webhooks"]
    opt = {AUTHENTICATED_OPT: True}
    security = [{BEARER_SCHEME: []}]

    @post(
        "/",
        status_code=201,
        sync_to_thread=True,
        request_max_body_size=JSON_BODY_LIMIT,
        summary="Make a webhook endpoint",
        description=(
            "Each event is a POST to `url` signed as Standard Webhooks says (`webhook-id`, "
            "`webhook-timestamp`, `webhook-signature`), with the `secret` answered here, this "
            "once. http and https only; an address that is loopback, private, link-local, "
            "multicast or unspecified is refused when the event is sent."
        ),
        responses=problem_responses(401, 422),
    )
    def create_webhook(
        self,
        data: JSONBody[WebhookRequest],
        request: Request[User, Any, Any],
        create_webhook: NamedDependency[CreateWebhook],
    ) -> WebhookCreated:
        endpoint = create_webhook(
            CreateWebhookCommand(caller(request).id, data.url, tuple(data.events))
        )
        shown = msgspec.structs.asdict(WebhookOut.from_endpoint(endpoint))
        return WebhookCreated(**shown, secret=endpoint.secret)

    @get(
        "/",
        sync_to_thread=True,
        summary="The caller's webhook endpoints",
        responses=problem_responses(401),
    )
    def list_webhooks(
        self, request: Request[User, Any, Any], list_webhooks: NamedDependency[ListWebhooks]
    ) -> WebhookList:
        found = list_webhooks(WebhookQuery(caller(request).id))
        return WebhookList(items=[WebhookOut.from_endpoint(endpoint) for endpoint in found])

    @get(
        "/{webhook_id:str}",
        sync_to_thread=True,
        summary="One webhook endpoint; a disabled one says why",
        responses=problem_responses(401, 404, 422),
    )
    def get_webhook(
        self,
        webhook_id: WebhookId,
        request: Request[User, Any, Any],
        get_webhook: NamedDependency[GetWebhook],
    ) -> WebhookOut:
        return WebhookOut.from_endpoint(get_webhook(WebhookQuery(caller(request).id, webhook_id)))

    @delete(
        "/{webhook_id:str}",
        status_code=204,
        sync_to_thread=True,
        summary="Delete a webhook endpoint, with what is still to be sent to it",
        responses=problem_responses(401, 404, 422),
    )
    def delete_webhook(
        self,
        webhook_id: WebhookId,
        request: Request[User, Any, Any],
        delete_webhook: NamedDependency[DeleteWebhook],
    ) -> None:
        delete_webhook(WebhookQuery(caller(request).id, webhook_id))

    @post(
        "/{webhook_id:str}/test",
        status_code=202,
        sync_to_thread=True,
        summary="Send a webhook.test event to the endpoint",
        responses=problem_responses(401, 404, 422),
    )
    def test_webhook(
        self,
        webhook_id: WebhookId,
        request: Request[User, Any, Any],
        send_test_webhook: NamedDependency[SendTestWebhook],
    ) -> TestEventQueued:
        delivery = send_test_webhook(WebhookQuery(caller(request).id, webhook_id))
        return TestEventQueued(delivery_id=delivery.id)

    @get(
        "/{webhook_id:str}/deliveries",
        sync_to_thread=True,
        summary="The endpoint's latest delivery attempts, newest first",
        responses=problem_responses(401, 404, 422),
    )
    def list_deliveries(
        self,
        webhook_id: WebhookId,
        request: Request[User, Any, Any],
        list_delivery_attempts: NamedDependency[ListDeliveryAttempts],
    ) -> DeliveryAttemptList:
        found = list_delivery_attempts(WebhookQuery(caller(request).id, webhook_id))
        return DeliveryAttemptList(
            items=[
                DeliveryAttemptOut(
                    delivery_id=attempt.delivery_id,
                    attempted_at=attempt.attempted_at,
                    status_code=attempt.status_code,
                    duration_ms=attempt.duration_ms,
                    error=attempt.error,
                )
                for attempt in found
            ]
        )
