"""Webhooks over HTTP. Needs the ``webhooks`` extra (httpx and standardwebhooks).

:class:`HttpWebhookSender` signs and POSTs; :class:`GuardedNetworkBackend` is where it
connects, and where the addresses a webhook must not reach are refused.
"""

from imgproc_core.adapters.webhooks.network import (
    DestinationRefused,
    GuardedNetworkBackend,
    ResolutionFailed,
    Resolver,
    attempt_deadline,
    system_resolver,
)
from imgproc_core.adapters.webhooks.sender import HttpWebhookSender

__all__ = [
    "DestinationRefused",
    "GuardedNetworkBackend",
    "HttpWebhookSender",
    "ResolutionFailed",
    "Resolver",
    "attempt_deadline",
    "system_resolver",
]
