"""``GET`` and ``HEAD /d/{token}`` on the API's app over the fakes: the bytes with their caching
headers, 304 on both conditional headers, the same 404 for every link that does not serve,
and a derivative made on the link's first use."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from imgproc_core.adapters.memory import InMemoryBlobStorage, fake_image_bytes
from imgproc_core.domain import Image, JobStatus
from imgproc_core.domain.links import Link
from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_core.use_cases import ImageQuery, LinkTarget
from imgproc_http import create_app
from imgproc_http.routes.delivery import LinkDelivery
from tests.support.waiting import wait_until

BASE = "/api/v1"
PHOTO = fake_image_bytes("png", 640, 480)


def _client(**settings: Any) -> Iterator[TestClient[Litestar]]:
    container = build_test_container(
        settings_for_tests(public_base_url="http://testserver.local", **settings)
    )
    with TestClient(create_app(container), timeout=30) as test_client:
        yield test_client


@pytest.fixture
def client() -> Iterator[TestClient[Litestar]]:
    yield from _client(link_render_wait_seconds=0.2)


def _owner(client: TestClient[Litestar]) -> tuple[dict[str, str], str]:
    answer = client.post(
        f"{BASE}/register", json={"username": "alice", "password": "correct horse"}
    )
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    files = {"file": ("cat.png", PHOTO, "image/png")}
    photo = client.post(f"{BASE}/images", files=files, headers=headers).json()["id"]
    return headers, photo


def _link(client: TestClient[Litestar], headers: dict[str, str], photo: str, **body: Any) -> str:
    made = client.post(f"{BASE}/images/{photo}/links", json=body, headers=headers)
    assert made.status_code == 201, made.text
    url: str = made.json()["url"]
    return url.removeprefix("http://testserver.local")


def test_a_link_answers_the_bytes_without_a_token(client: TestClient[Litestar]) -> None:
    headers, photo = _owner(client)
    path = _link(client, headers, photo)

    answer = client.get(path)

    assert answer.status_code == 200
    assert answer.content == PHOTO
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["content-length"] == str(len(PHOTO))
    assert answer.headers["etag"] == f'"{hashlib.sha256(PHOTO).hexdigest()}"'
    assert parsedate_to_datetime(answer.headers["last-modified"]).tzinfo is not None
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert answer.headers["content-disposition"] == 'inline; filename="cat.png"'
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_head_answers_the_headers_alone(client: TestClient[Litestar]) -> None:
    headers, photo = _owner(client)
    path = _link(client, headers, photo)
    answer = client.head(path)
    assert answer.status_code == 200
    assert answer.content == b""
    assert answer.headers["content-length"] == str(len(PHOTO))


def test_both_conditional_headers_answer_304(client: TestClient[Litestar]) -> None:
    headers, photo = _owner(client)
    path = _link(client, headers, photo)
    first = client.get(path)
    etag, modified = first.headers["etag"], first.headers["last-modified"]

    assert client.get(path, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(path, headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(path, headers={"If-Modified-Since": modified}).status_code == 304
    earlier = parsedate_to_datetime(modified).replace(year=2000)
    since = format_datetime(earlier, usegmt=True)
    assert client.get(path, headers={"If-Modified-Since": since}).status_code == 200
    assert client.get(path, headers={"If-Modified-Since": "garbage"}).status_code == 200


def test_an_expiring_link_is_cached_no_longer_than_it_lives(
    client: TestClient[Litestar],
) -> None:
    headers, photo = _owner(client)
    path = _link(client, headers, photo, expires_in=120)
    assert client.get(path).headers["cache-control"] == "public, max-age=120"


def test_every_link_that_does_not_serve_is_the_same_404(client: TestClient[Litestar]) -> None:
    headers, photo = _owner(client)
    edited = _link(client, headers, photo)
    edited = edited[:-1] + ("A" if edited[-1] != "A" else "B")
    revoked = _link(client, headers, photo)
    link_id = revoked.rsplit("/", 1)[1].split(".")[0]
    assert client.delete(f"{BASE}/links/{link_id}", headers=headers).status_code == 204
    gone = _link(client, headers, photo)
    assert client.delete(f"{BASE}/images/{photo}", headers=headers).status_code == 204

    answers = [
        client.get(path) for path in (edited, revoked, gone, "/d/nothing", "/d/" + "a" * 500)
    ]

    assert [answer.status_code for answer in answers] == [404] * 5
    assert len({answer.json()["detail"] for answer in answers[:4]}) == 1


def test_a_derivative_not_made_in_time_is_503_and_not_cached(
    client: TestClient[Litestar],
) -> None:
    headers, photo = _owner(client)
    path = _link(client, headers, photo, transformation={"resize": {"width": 320}})
    answer = client.get(path)
    assert answer.status_code == 503
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["retry-after"] == "1"
    # The first use queued the derivative POST /transform would make: one image, PENDING.
    listed = client.get(f"{BASE}/images", headers=headers).json()
    assert sorted(image["status"] for image in listed["items"]) == ["PENDING", "READY"]


def test_the_first_use_waits_for_the_derivative_and_serves_it() -> None:
    for client in _client(queue="table", worker_threads=1, link_render_wait_seconds=10):
        headers, photo = _owner(client)
        path = _link(client, headers, photo, transformation={"resize": {"width": 320}})

        answer = client.get(path)

        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        derived = [
            image
            for image in client.get(f"{BASE}/images", headers=headers).json()["items"]
            if image["is_transformed"]
        ]
        assert [(image["status"], image["width"]) for image in derived] == [("READY", 320)]
        # Served from what exists from now on: the same bytes, no new job.
        assert client.get(path).content == answer.content


CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def test_format_auto_makes_one_derivative_per_choice_and_varies_with_accept() -> None:
    for client in _client(queue="table", worker_threads=1, link_render_wait_seconds=10):
        headers, photo = _owner(client)
        body = {"transformation": {"resize": {"width": 320}, "format": "auto"}}
        made = client.post(f"{BASE}/images/{photo}/links", json=body, headers=headers).json()
        assert made["auto_format"] is True
        path = made["url"].removeprefix("http://testserver.local")

        answers = {
            accept: client.get(path, headers={"Accept": accept})
            for accept in (CHROME, "image/webp,*/*", "*/*")
        }

        assert [answer.headers["content-type"] for answer in answers.values()] == [
            "image/avif",
            "image/webp",
            "image/jpeg",  # the source is opaque
        ]
        assert all(answer.headers["vary"] == "Accept" for answer in answers.values())
        derived = [
            image["format"]
            for image in client.get(f"{BASE}/images", headers=headers).json()["items"]
            if image["is_transformed"]
        ]
        assert sorted(derived) == ["avif", "jpeg", "webp"]

        clear = fake_image_bytes("png", 64, 64, transparent=True)
        files = {"file": ("clear.png", clear, "image/png")}
        transparent = client.post(f"{BASE}/images", files=files, headers=headers).json()["id"]
        made = client.post(f"{BASE}/images/{transparent}/links", json=body, headers=headers)
        old_client = made.json()["url"].removeprefix("http://testserver.local")
        answer = client.get(old_client, headers={"Accept": "*/*"})
        assert answer.headers["content-type"] == "image/png"


def test_ten_concurrent_first_uses_make_one_job() -> None:
    for client in _client(link_render_wait_seconds=0.3):
        headers, photo = _owner(client)
        path = _link(client, headers, photo, transformation={"resize": {"width": 200}})

        def first_use(_: int, client: TestClient[Litestar] = client, path: str = path) -> int:
            return client.get(path).status_code

        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(first_use, range(10)))

        assert statuses == [503] * 10
        derived = [
            image
            for image in client.get(f"{BASE}/images", headers=headers).json()["items"]
            if image["is_transformed"]
        ]
        assert len(derived) == 1


def test_renders_on_the_fly_count_against_the_owners_transform_rate() -> None:
    for client in _client(rate_limit_transform="2/minute", link_render_wait_seconds=0):
        headers, photo = _owner(client)
        paths = [
            _link(client, headers, photo, transformation={"resize": {"width": width}})
            for width in (100, 200, 300)
        ]
        assert [client.get(path).status_code for path in paths] == [503, 503, 429]
        # What exists is served whatever the rate: the first link's job is queued already.
        assert client.get(paths[0]).status_code == 503


def _sample(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        series, _, value = line.rpartition(" ")
        if series == name:
            return float(value)
    raise AssertionError(f"{name} is not in /metrics")


def test_link_hits_renders_and_waits_are_counted(client: TestClient[Litestar]) -> None:
    headers, photo = _owner(client)
    path = _link(client, headers, photo)
    etag = client.get(path).headers["etag"]
    client.get(path, headers={"If-None-Match": etag})
    client.get("/d/nothing")
    client.get(_link(client, headers, photo, transformation={"resize": {"width": 100}}))

    metrics = client.get("/metrics").text

    assert _sample(metrics, 'imgproc_link_hits_total{status="200"}') == 1
    assert _sample(metrics, 'imgproc_link_hits_total{status="304"}') == 1
    assert _sample(metrics, 'imgproc_link_hits_total{status="404"}') == 1
    assert _sample(metrics, 'imgproc_link_hits_total{status="503"}') == 1
    assert _sample(metrics, "imgproc_link_renders_total") == 1
    assert _sample(metrics, "imgproc_link_render_wait_seconds_count") == 1
    assert _sample(metrics, "imgproc_link_render_polls_total") >= 1


def test_the_local_folder_streams_the_file_with_the_same_headers(tmp_path: Path) -> None:
    for client in _client(storage="local", storage_dir=str(tmp_path / "blobs")):
        headers, photo = _owner(client)
        path = _link(client, headers, photo)

        answer = client.get(path)
        head = client.head(path)

        assert answer.status_code == 200
        assert answer.content == PHOTO
        assert answer.headers["etag"] == f'"{hashlib.sha256(PHOTO).hexdigest()}"'
        assert answer.headers["content-length"] == str(len(PHOTO))
        assert answer.headers["content-disposition"] == 'inline; filename="cat.png"'
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert (head.status_code, head.content) == (200, b"")
        assert head.headers["content-length"] == str(len(PHOTO))
        assert head.headers["etag"] == answer.headers["etag"]
        etag = answer.headers["etag"]
        assert client.get(path, headers={"If-None-Match": etag}).status_code == 304


def test_a_bucket_may_answer_with_a_redirect_to_a_signed_url() -> None:
    for client in _client(link_delivery="redirect"):
        headers, photo = _owner(client)
        path = _link(client, headers, photo)

        answer = client.get(path, follow_redirects=False)

        assert answer.status_code == 307
        assert answer.headers["location"].startswith("memory://")
        assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        "/d/",
        "/d/%00",
        "/d/..%2F..%2Fetc%2Fpasswd",
        "/d/" + "%C3%A9" * 40,
        "/d/" + "a" * 65_000,
        "/d/0123456789abcdef0123456789abcdef.%2E%2E",
        "/d/0123456789abcdef0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_hostile_tokens_answer_a_plain_404(client: TestClient[Litestar], path: str) -> None:
    for method in ("GET", "HEAD"):
        answer = client.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        assert (
            "cache-control" not in answer.headers
            or "immutable" not in answer.headers["cache-control"]
        )


def test_other_methods_on_a_link_are_refused(client: TestClient[Litestar]) -> None:
    headers, photo = _owner(client)
    path = _link(client, headers, photo)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert client.request(method, path).status_code == 405
    assert client.get(path).status_code == 200


def test_readers_waiting_for_one_derivative_share_one_read_of_its_state() -> None:
    made = datetime(2026, 1, 1, tzinfo=UTC)
    pending = Image(
        id="derived",
        user_id="alice",
        filename="cat.png",
        storage_key="k",
        mimetype="image/png",
        format="png",
        size_bytes=0,
        width=1,
        height=1,
        status=JobStatus.PENDING,
        created_at=made,
        updated_at=made,
    )
    link = Link(id="link", user_id="alice", image_id="photo", created_at=made)
    release = threading.Event()
    reads: list[ImageQuery] = []

    def reload(query: ImageQuery) -> Image:
        reads.append(query)
        release.wait()
        return replace(pending, status=JobStatus.READY)

    delivery = LinkDelivery(InMemoryBlobStorage(), reload, wait_seconds=60, now=lambda: made)
    target = LinkTarget(link, pending, render_started=False)
    with ThreadPoolExecutor(10) as pool:
        waits = [pool.submit(delivery.wait_for, target) for _ in range(10)]
        wait_until(
            lambda: delivery.readers_waiting("derived") == 10 and reads,
            timeout=30,
            message="ten readers waiting, one reading",
        )
        release.set()
        statuses = [wait.result().status for wait in waits]

    assert statuses == [JobStatus.READY] * 10
    assert reads == [ImageQuery("alice", "derived")]
    assert delivery.readers_waiting("derived") == 0


def test_a_file_gone_from_under_a_ready_image_is_the_same_404() -> None:
    container = build_test_container(settings_for_tests(public_base_url="http://testserver.local"))
    with TestClient(create_app(container), timeout=30) as client:
        headers, photo = _owner(client)
        path = _link(client, headers, photo)
        assert client.get(path).status_code == 200  # its ETag is remembered now
        storage = container.blob_storage()
        (key,) = storage.keys()
        storage.delete(key)

        answer = client.get(path)

        assert answer.status_code == 404
        assert answer.json()["detail"] == client.get("/d/nothing").json()["detail"]
