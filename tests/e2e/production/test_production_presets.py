"""Presets and variants on the production profile: an upload's variants are written to the
outbox with the upload, relayed to Kafka and rendered by a separate ``imgproc worker``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.production.deployment import production_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_an_uploads_variants_are_rendered_by_the_worker(tmp_path: Path, corpus_dir: Path) -> None:
    with production_deployment(tmp_path, 2) as (_, deployed):
        api_process = deployed.start_api()
        relay = deployed.start_relay()
        worker = deployed.start_worker(worker_processes="1")
        deployed.wait_until_healthy(api_process)
        deployed.wait_until_relaying(relay)
        deployed.wait_until_sharing([worker])

        with api_process.api() as api:
            user = api.register()
            for name, spec in (
                ("tiny", {"resize": {"width": 8}, "format": "webp"}),
                ("flat", {"grayscale": True, "format": "png"}),
            ):
                body = {"transformation": spec, "eager": name == "flat"}
                api.call("PUT", f"/presets/{name}", json=body, headers=user, expect=201)
            photo = corpus_dir / "pngsuite" / "basn2c08.png"
            files = {"file": (photo.name, photo.read_bytes(), "image/png")}
            answer = api.call(
                "POST", "/images/", files=files, data={"variants": "tiny"}, headers=user
            )
            assert answer.status_code == 201, answer.text
            variants = {v["preset"]: v["id"] for v in answer.json()["variants"]}
            assert list(variants) == ["tiny", "flat"]

            tiny = api.wait_until_ready(variants["tiny"], user)
            flat = api.wait_until_ready(variants["flat"], user)

        assert (tiny["format"], tiny["width"], tiny["height"]) == ("webp", 8, 8)
        assert (flat["format"], flat["width"]) == ("png", 32)
