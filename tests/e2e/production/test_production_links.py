"""Delivery links on the production profile: ``imgproc serve`` on PostgreSQL, Redis and the
storage emulator, ``imgproc relay`` and an ``imgproc worker`` on Kafka. A link's first GET
queues the derivative, waits while the separate worker renders it, and serves the bytes from
the bucket; with ``IMGPROC_LINK_DELIVERY=redirect``, a 307 to a V4 signed URL of it."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image as PillowImage

from tests.e2e.production.deployment import production_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_a_links_first_get_waits_for_the_worker_and_serves_the_bytes(
    tmp_path: Path, corpus_dir: Path
) -> None:
    with production_deployment(tmp_path, 2) as (_, deployed):
        api_process = deployed.start_api(link_render_wait_seconds="30")
        redirecting = deployed.start_api(link_delivery="redirect")
        relay = deployed.start_relay()
        worker = deployed.start_worker(worker_processes="1")
        deployed.wait_until_healthy(api_process, redirecting)
        deployed.wait_until_relaying(relay)
        deployed.wait_until_sharing([worker])

        with api_process.api() as api:
            user = api.register()
            photo = api.upload(corpus_dir / "pngsuite" / "basn2c08.png", user)
            body = {"transformation": {"resize": {"width": 16}, "format": "webp"}}
            link = api.call(
                "POST", f"/images/{photo['id']}/links", json=body, headers=user, expect=201
            ).json()

        answer = httpx.get(link["url"], timeout=60)

        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/webp"
        assert answer.headers["etag"] == f'"{hashlib.sha256(answer.content).hexdigest()}"'
        assert PillowImage.open(io.BytesIO(answer.content)).size == (16, 16)
        again = httpx.get(link["url"], headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304

        token = link["url"].rsplit("/", 1)[1]
        redirected = httpx.get(f"{redirecting.base_url}/d/{token}", follow_redirects=False)
        assert redirected.status_code == 307
        assert redirected.headers["cache-control"] == "no-store"
        assert httpx.get(redirected.headers["location"]).content == answer.content
