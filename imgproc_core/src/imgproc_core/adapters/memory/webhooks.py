"""Webhooks delivered to a function: :class:`~imgproc_core.ports.WebhookSender` for tests.

The fake refuses what the HTTP sender refuses before connecting (the URL's form, a literal IP
address it must not connect to, in the port's words), signs as Standard Webhooks says, with the
standard library alone, and hands each request to a receiver function whose
:class:`WebhookAnswer` it turns into an outcome as the HTTP sender would: a redirect not
followed, the excerpt cut at 1 KiB, an answer slower than the timeout a timeout (reported, not
waited for). Host names are not resolved: a test that needs a name's addresses judged uses the
HTTP sender.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC

from imgproc_core.domain.webhooks import webhook_secret_key
from imgproc_core.ports.webhooks import (
    MAX_RESPONSE_EXCERPT_BYTES,
    WEBHOOK_CONTENT_TYPE,
    AttemptOutcome,
    WebhookMessage,
    refused_destination,
    webhook_user_agent,
)

__all__ = ["InMemoryWebhookSender", "ReceivedWebhook", "WebhookAnswer", "signed_headers"]


@dataclass(frozen=True, slots=True)
class ReceivedWebhook:
    """A request as its receiver saw it: header names in lower case."""

    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    """What a receiver answers: a status, a body, headers (a ``location``, say), after
    ``delay_seconds``."""

    status: int = 204
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


#: A receiver: the answer to a request, or None when nothing listens at its URL (a refused
#: connection).
Receiver = Callable[[ReceivedWebhook], WebhookAnswer | None]


def _accept_everything(request: ReceivedWebhook) -> WebhookAnswer:
    return WebhookAnswer()


def signed_headers(message: WebhookMessage) -> dict[str, str]:
    """The headers of ``message``'s request, signed as Standard Webhooks says: HMAC-SHA256,
    under the secret's key, of ``<id>.<timestamp in seconds>.<body>``, in base64 after ``v1,``.
    """
    timestamp = str(math.floor(message.timestamp.astimezone(UTC).timestamp()))
    signed = f"{message.message_id}.{timestamp}.".encode() + message.body
    digest = hmac.new(webhook_secret_key(message.secret), signed, hashlib.sha256).digest()
    return {
        "content-type": WEBHOOK_CONTENT_TYPE,
        "user-agent": webhook_user_agent(),
        "webhook-id": message.message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


class InMemoryWebhookSender:
    """Sends to ``receiver`` (by default, one that answers 204 to everything) and records every
    message it was given, refused ones included, in :attr:`sent`. Thread-safe.

    ``allow_private`` and ``timeout_seconds`` mean what they mean for the HTTP sender; the
    duration of an outcome is the answer's ``delay_seconds`` (the timeout, for one too slow),
    so that no test waits.
    """

    def __init__(
        self,
        receiver: Receiver = _accept_everything,
        *,
        allow_private: bool = False,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._receiver = receiver
        self._allow_private = allow_private
        self._timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._sent: list[WebhookMessage] = []

    @property
    def sent(self) -> list[WebhookMessage]:
        """Every message given to :meth:`send`, in order."""
        with self._lock:
            return list(self._sent)

    def send(self, message: WebhookMessage) -> AttemptOutcome:
        with self._lock:
            self._sent.append(message)
        refusal = refused_destination(message.url, allow_private=self._allow_private)
        if refusal is not None:
            return AttemptOutcome(status=None, duration_seconds=0.0, error=refusal)
        request = ReceivedWebhook(message.url, signed_headers(message), message.body)
        answer = self._receiver(request)
        if answer is None:
            return AttemptOutcome(None, 0.0, error="could not connect: connection refused")
        if answer.delay_seconds >= self._timeout_seconds:
            timeout = self._timeout_seconds
            return AttemptOutcome(None, timeout, error=f"timed out after {timeout:g} s")
        return AttemptOutcome(
            status=answer.status,
            duration_seconds=answer.delay_seconds,
            response_excerpt=answer.body[:MAX_RESPONSE_EXCERPT_BYTES],
        )
