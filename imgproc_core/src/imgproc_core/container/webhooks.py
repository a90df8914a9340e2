"""Webhooks sent over HTTP, through the address guard (the ``webhooks`` extra)."""

from __future__ import annotations

from dependency_injector import containers, providers

from imgproc_core.adapters.webhooks import HttpWebhookSender
from imgproc_core.ports import Clock
from imgproc_core.settings import Settings


class HttpWebhooks(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    webhook_sender = providers.Singleton(
        HttpWebhookSender, allow_private=settings.provided.webhook_allow_private
    )
