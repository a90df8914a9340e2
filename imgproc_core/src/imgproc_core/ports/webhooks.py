"""Sending one webhook: a signed POST to a user's endpoint, and what came of it.

A sender makes one attempt and reports it; retrying, on :class:`~imgproc_core.domain.webhooks.
DeliverySchedule`, is its caller's. Whatever the receiver or the network does (no answer, a
refused connection, a certificate that does not match, a name that does not resolve, an address
the sender must not connect to) is an :class:`AttemptOutcome` with an ``error``, never an
exception: an outbox dispatcher records it and moves on to the next event.

The rules every sender applies before it connects are here, once: :func:`refused_destination`
(the URL's form, and a literal address) and :func:`refused_address_error` (the text of a
refusal), so that the in-memory sender refuses what the HTTP one does, in the same words.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Final, Protocol
from urllib.parse import urlsplit

from imgproc_core.domain.errors import InvalidInput
from imgproc_core.domain.webhooks import (
    IPAddress,
    check_webhook_url,
    forbidden_address,
    webhook_secret_key,
)

__all__ = [
    "MAX_RESPONSE_EXCERPT_BYTES",
    "WEBHOOK_CONTENT_TYPE",
    "AttemptOutcome",
    "WebhookMessage",
    "WebhookSender",
    "refused_address_error",
    "refused_destination",
    "webhook_user_agent",
]

#: How much of an answer a sender reads and keeps: enough for a receiver's error message,
#: too little for a receiver to fill the outbox with.
MAX_RESPONSE_EXCERPT_BYTES: Final = 1024
WEBHOOK_CONTENT_TYPE: Final = "application/json"


def webhook_user_agent() -> str:
    """``imgproc-webhooks/<version of imgproc-core>``, so that a receiver's logs say who
    called."""
    try:
        release = version("imgproc-core")
    except PackageNotFoundError:  # run from a source tree that was never installed
        release = "0"
    return f"imgproc-webhooks/{release}"


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    """One event for one endpoint, as it is signed and sent (Standard Webhooks): ``body`` (UTF-8
    JSON) is sent as it is, and ``message_id`` and ``timestamp`` go in the ``webhook-id`` and
    ``webhook-timestamp`` headers. The id stays the same across the retries of one event, so
    that a receiver can drop a duplicate."""

    url: str
    message_id: str
    #: When the message was made (aware); receivers refuse one signed too long ago, so a retry
    #: is signed again with a new timestamp and the same id.
    timestamp: datetime
    body: bytes
    #: The endpoint's ``whsec_...`` secret; kept out of the repr, and so out of logs.
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None or self.timestamp.utcoffset() is None:
            raise ValueError("a webhook's timestamp is aware")
        if not self.message_id or any(ch.isspace() for ch in self.message_id):
            raise ValueError("a webhook's id is not empty and has no whitespace")
        self.body.decode("utf-8")  # the signature is over text: refuse what is not
        webhook_secret_key(self.secret)


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt came to.

    ``status`` is the receiver's HTTP status, None when there was no answer; ``error`` says
    why there was none (or what went wrong after the status line), and starts with one of:
    ``refused URL``, ``refused address``, ``could not resolve``, ``could not connect``,
    ``TLS failed``, ``timed out``, ``connection broken``. ``response_excerpt`` is the first
    :data:`MAX_RESPONSE_EXCERPT_BYTES` bytes of the answer's body at most, as sent (not
    decompressed).
    """

    status: int | None
    duration_seconds: float
    error: str | None = None
    response_excerpt: bytes = b""

    @property
    def delivered(self) -> bool:
        """The receiver took it: a 2xx status. A redirect is not followed, so a 3xx is a
        failure like any other."""
        return self.status is not None and 200 <= self.status < 300


class WebhookSender(Protocol):
    """Sends webhooks, one attempt per call. Thread-safe: a dispatcher's threads share one."""

    def send(self, message: WebhookMessage) -> AttemptOutcome:
        """Make one attempt to deliver ``message``: POST its body, signed, to its URL.

        Never raises for what the receiver or the network does: every failure is an outcome
        with an ``error``. A URL that the sender refuses (see :func:`refused_destination`),
        and every address it resolves to that it must not connect to, is refused before any
        connection is attempted.
        """
        ...


def refused_destination(url: str, *, allow_private: bool) -> str | None:
    """The error of an attempt that must not be made to ``url``, or None: a URL that
    :func:`~imgproc_core.domain.webhooks.check_webhook_url` refuses, or whose host is an IP
    address that :func:`~imgproc_core.domain.webhooks.forbidden_address` refuses (unless
    ``allow_private``). A host name is judged later, by the addresses it resolves to."""
    try:
        check_webhook_url(url)
    except InvalidInput as exc:
        return f"refused URL: {exc.message}"
    if allow_private:
        return None
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    reason = forbidden_address(address)
    return None if reason is None else refused_address_error(address, reason)


def refused_address_error(address: IPAddress, reason: str) -> str:
    """``refused address 10.0.0.5 (private)``."""
    return f"refused address {address} ({reason})"
