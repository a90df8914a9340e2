"""Nothing is lost when the server process dies: jobs live in the database, not in the process.

Each test runs real ``imgproc serve`` processes on one SQLite file and one blob folder, kills
or stops one the way a crash or an orchestrator would, and starts another on the same files.
Every derived image is checked byte for byte against the same transformation rendered here,
in the test, by the same codec: a job run twice, or after a crash, writes the same bytes at the
same path.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.domain import Image, JobStatus
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation
from tests.e2e.conftest import JOB_DEADLINE_SECONDS, Api, LiveServer
from tests.e2e.servers import ServerHome, kill, terminate
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

FLOWER = "flower.jpg"  # 480 x 360
#: Five different derivatives, in formats whose encoders give the same bytes on every run.
QUICK_TRANSFORMS: list[dict[str, Any]] = [
    {"resize": {"width": 200}, "format": "png"},
    {"rotate": 90},
    {"grayscale": True, "format": "png"},
    {"crop": {"x": 10, "y": 10, "width": 100, "height": 80}, "flip": True},
    {"transformations": {"resize": {"height": 50}, "filters": {"sepia": True}}},
]
#: A job that takes a second or two (48 megapixels, blurred), so that it can be caught in
#: the middle.
SLOW_TRANSFORM: dict[str, Any] = {"resize": {"width": 8000}, "blur": 5, "format": "jpeg"}


def expected_bytes(source: bytes, derived: dict[str, Any]) -> bytes:
    """What the codec makes of ``source`` with the derived image's recorded transformation."""
    return _render(source, msgspec.json.encode(derived["transformation"]))


@functools.cache
def _render(source: bytes, transformation_json: bytes) -> bytes:
    transformation = msgspec.json.decode(transformation_json, type=Transformation)
    return PillowImageCodec().transform(source, transformation, Limits()).data


def derivative_path(home: ServerHome, derived: dict[str, Any]) -> Path:
    """Where a derivative's bytes live: ``{user}/{original}/{derived}.{ext}``."""
    user_id: str = derived["user_id"]
    source_id: str = derived["source_id"]
    extension = "jpg" if derived["format"] == "jpeg" else derived["format"]
    return home.storage_dir / user_id / source_id / f"{derived['id']}.{extension}"


def wait_for_status(
    api: Api, image_id: str, headers: dict[str, str], status: str
) -> dict[str, Any]:
    image: dict[str, Any] = {}

    def reached() -> bool:
        nonlocal image
        image = api.metadata(image_id, headers)
        if image["status"] == status:
            return True
        assert image["status"] in {"PENDING", "PROCESSING"}, image
        return False

    wait_until(
        reached,
        timeout=JOB_DEADLINE_SECONDS,
        interval=0.01,
        message=lambda: f"not {status}: {image}",
    )
    return image


def status_in_database(home: ServerHome, image_id: str) -> JobStatus:
    container = home.container()
    try:
        with container.unit_of_work() as uow:
            image: Image | None = uow.images.get(image_id)
        assert image is not None
        return image.status
    finally:
        container.shutdown_resources()


def finished_jobs(server: LiveServer, image_id: str) -> int:
    """How many times the server's log says it finished rendering ``image_id``."""
    return server.log().count(f"job {image_id}: ready")


def test_queued_jobs_survive_a_killed_server(tmp_path: Path, corpus_dir: Path) -> None:
    home = ServerHome(tmp_path)
    source = (corpus_dir / "pillow" / FLOWER).read_bytes()

    with home.running(worker_threads="0") as (server, api):
        user = api.register()
        original = api.upload(corpus_dir / "pillow" / FLOWER, user)
        queued = [api.transform(original["id"], body, user) for body in QUICK_TRANSFORMS]
        assert [image["status"] for image in queued] == ["PENDING"] * len(QUICK_TRANSFORMS)
        kill(server)
    assert len({image["id"] for image in queued}) == len(QUICK_TRANSFORMS)

    with home.running(worker_threads="2") as (_, api):
        for image in queued:
            ready = api.wait_until_ready(image["id"], user)
            blob = api.download(image["id"], user)
            assert blob.content == expected_bytes(source, ready)
            assert ready["size_bytes"] == len(blob.content)
            assert derivative_path(home, ready).read_bytes() == blob.content
    assert len(home.blobs()) == 1 + len(QUICK_TRANSFORMS)


def test_a_job_killed_mid_render_is_taken_over_once_its_lease_runs_out(
    tmp_path: Path, corpus_dir: Path
) -> None:
    home = ServerHome(tmp_path)
    source = (corpus_dir / "pillow" / FLOWER).read_bytes()

    # One worker thread and a lease of 2 s: the lease runs out soon after the crash, and no
    # second thread of the same server takes the job over while it is still rendering.
    with home.running(worker_threads="1", job_lease_seconds="2") as (server, api):
        user = api.register()
        original = api.upload(corpus_dir / "pillow" / FLOWER, user)
        derived = api.transform(original["id"], SLOW_TRANSFORM, user)
        wait_for_status(api, derived["id"], user, "PROCESSING")
        kill(server)
    assert finished_jobs(server, derived["id"]) == 0
    assert status_in_database(home, derived["id"]) is JobStatus.PROCESSING
    assert not derivative_path(home, derived).exists()

    started = time.monotonic()
    with home.running(worker_threads="2") as (restarted, api):
        ready = api.wait_until_ready(derived["id"], user)
        print(f"\nREADY {time.monotonic() - started:.1f} s after the restart")
        blob = api.download(derived["id"], user)
    assert (ready["width"], ready["height"]) == (8000, 6000)
    assert blob.content == expected_bytes(source, ready)
    # Rendered once by the new server, at the derivative's one path.
    assert finished_jobs(restarted, derived["id"]) == 1
    assert derivative_path(home, ready).read_bytes() == blob.content
    original_path = home.storage_dir / original["user_id"] / f"{original['id']}.jpg"
    assert home.blobs() == sorted([original_path, derivative_path(home, ready)])


def test_sigterm_finishes_the_job_in_hand_and_exits_cleanly(
    tmp_path: Path, corpus_dir: Path
) -> None:
    home = ServerHome(tmp_path)
    source = (corpus_dir / "pillow" / FLOWER).read_bytes()

    with home.running(worker_threads="1") as (server, api):
        user = api.register()
        original = api.upload(corpus_dir / "pillow" / FLOWER, user)
        derived = api.transform(original["id"], SLOW_TRANSFORM, user)
        wait_for_status(api, derived["id"], user, "PROCESSING")
        exit_status = terminate(server)
    assert exit_status == 0, server.log()
    # Finished and committed before the process left, or at worst handed back: never left
    # PROCESSING for a lease to expire.
    status = status_in_database(home, derived["id"])
    assert status in {JobStatus.READY, JobStatus.PENDING}, server.log()
    print(f"\nafter SIGTERM the job was {status.value}")

    with home.running(worker_threads="1") as (_, api):
        ready = api.wait_until_ready(derived["id"], user)
        assert api.download(derived["id"], user).content == expected_bytes(source, ready)
