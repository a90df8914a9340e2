"""Webhooks on the production profile: ``imgproc serve`` records the events with their
changes in PostgreSQL; two ``imgproc relay`` processes send them, leasing each delivery, to a
receiver on 127.0.0.1; a separate ``imgproc worker`` makes the derivative whose READY is told."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec
import pytest
from standardwebhooks import Webhook

from tests.e2e.production.deployment import production_deployment
from tests.support.waiting import wait_until
from tests.support.webhook_receiver import webhook_receiver

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LOCAL = {"webhook_allow_private": "true", "webhook_poll_seconds": "0.1"}


def test_a_workers_ready_reaches_the_receiver_once(tmp_path: Path, corpus_dir: Path) -> None:
    with (
        webhook_receiver() as receiver,
        production_deployment(tmp_path, 2) as (_, deployed),
    ):
        api_process = deployed.start_api(**LOCAL)
        relays = [deployed.start_relay(**LOCAL) for _ in range(2)]
        worker = deployed.start_worker(worker_processes="1")
        deployed.wait_until_healthy(api_process)
        for relay in relays:
            deployed.wait_until_relaying(relay)
        deployed.wait_until_sharing([worker])

        with api_process.api() as api:
            user = api.register()
            endpoint = api.call(
                "POST",
                "/webhooks",
                json={"url": receiver.url(), "events": ["image.uploaded", "image.ready"]},
                headers=user,
                expect=201,
            ).json()
            photo = api.upload(corpus_dir / "pngsuite" / "basn2c08.png", user)
            derived = [
                api.transform(photo["id"], {"resize": {"width": width}}, user)
                for width in (8, 12, 16)
            ]

            received = wait_until(
                lambda: receiver.received if len(receiver.received) >= 4 else [],
                timeout=120,
                message="four events",
            )

        events = [Webhook(endpoint["secret"]).verify(r.body, r.headers) for r in received]
        assert Counter(event["type"] for event in events) == {"image.uploaded": 1, "image.ready": 3}
        assert {e["data"]["id"] for e in events if e["type"] == "image.ready"} == {
            image["id"] for image in derived
        }
        # Two relays sent them, never one twice.
        assert len({r.headers["webhook-id"] for r in received}) == len(received) == 4
        assert msgspec.json.decode(received[0].body)["data"]["user_id"] == photo["user_id"]
