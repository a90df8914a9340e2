"""One user's images are invisible to every other user: 404 where they exist, never 403.

Alice owns an original and a derivative of it; Bob, with a valid token of his own, tries every
endpoint on their ids and gets the answer an unknown id gets. Afterwards Alice's images are
untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.e2e.conftest import Api

pytestmark = pytest.mark.e2e

UNKNOWN_ID = "0" * 32


class Alice:
    def __init__(self, api: Api, corpus_dir: Path) -> None:
        self.headers = api.register()
        self.original = api.upload(corpus_dir / "pillow" / "flower.jpg", self.headers)
        derived = api.transform(self.original["id"], {"resize": {"width": 100}}, self.headers)
        self.derivative = api.wait_until_ready(derived["id"], self.headers)
        self.mark = api.upload(corpus_dir / "pillow" / "hopper.png", self.headers)

    @property
    def ids(self) -> list[str]:
        return [self.original["id"], self.derivative["id"], self.mark["id"]]


@pytest.fixture
def alice(api: Api, corpus_dir: Path) -> Alice:
    return Alice(api, corpus_dir)


@pytest.fixture
def bob(api: Api) -> dict[str, str]:
    return api.register()


def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "image_not_found"


def attempts(image_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every endpoint that takes an image id, with a request body that would be valid."""
    return [
        ("GET", f"/images/{image_id}", {"follow_redirects": False}),
        ("GET", f"/images/{image_id}/metadata", {}),
        ("POST", f"/images/{image_id}/transform", {"json": {"rotate": 90}}),
        ("DELETE", f"/images/{image_id}", {}),
    ]


def test_another_users_ids_answer_exactly_like_unknown_ones(
    api: Api, alice: Alice, bob: dict[str, str]
) -> None:
    for image_id in (alice.original["id"], alice.derivative["id"]):
        for (method, path, options), (_, unknown_path, _) in zip(
            attempts(image_id), attempts(UNKNOWN_ID), strict=True
        ):
            unknown = api.call(method, unknown_path, headers=bob, **options)
            response = api.call(method, path, headers=bob, **options)
            assert_not_found(unknown)
            assert_not_found(response)
            # The same answer but for the id: nothing tells "someone else's" from "none".
            assert response.json() == {
                **unknown.json(),
                "detail": unknown.json()["detail"].replace(UNKNOWN_ID, image_id),
            }

    # Alice's images are all still there, unchanged, and nothing was queued for Bob.
    assert api.metadata(alice.original["id"], alice.headers) == alice.original
    assert api.metadata(alice.derivative["id"], alice.headers) == alice.derivative
    api.download(alice.original["id"], alice.headers)
    api.download(alice.derivative["id"], alice.headers)
    listed = api.call("GET", "/images", headers=bob, expect=200).json()
    assert listed["total"] == 0


def test_a_stripped_signed_url_is_404_for_everyone_but_the_full_one_works(
    api: Api, alice: Alice, bob: dict[str, str]
) -> None:
    for image_id in (alice.original["id"], alice.derivative["id"]):
        location = api.redirect(image_id, alice.headers).headers["location"]
        parts = urlsplit(location)
        stripped = urlunsplit(parts._replace(query=""))
        for headers in (bob, {}, alice.headers):
            response = api.http.get(stripped, headers=headers)
            assert response.status_code == 404, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
        # The signature alone, without its expiry, is refused too (403: a URL was given and
        # it is not valid), and reveals no more than the stripped one.
        signature_only = urlunsplit(parts._replace(query=parts.query.split("&", 1)[1]))
        assert api.http.get(signature_only, headers=bob).status_code == 403
        assert api.http.get(location).status_code == 200


def test_bobs_list_never_contains_alices_images(
    api: Api, alice: Alice, bob: dict[str, str], corpus_dir: Path
) -> None:
    bobs = api.upload(corpus_dir / "pillow" / "hopper.gif", bob)
    bobs_derived = api.transform(bobs["id"], {"grayscale": True}, bob)
    seen: list[str] = []
    page = 1
    while True:
        listed = api.call(
            "GET", "/images", params={"page": page, "limit": 1}, headers=bob, expect=200
        ).json()
        if not listed["items"]:
            break
        seen.extend(item["id"] for item in listed["items"])
        assert all(item["user_id"] == bobs["user_id"] for item in listed["items"])
        page += 1
    assert sorted(seen) == sorted([bobs["id"], bobs_derived["id"]])
    assert listed["total"] == 2

    alices = api.call("GET", "/images?limit=100", headers=alice.headers, expect=200).json()
    assert {item["id"] for item in alices["items"]} == set(alice.ids)


def test_bob_cannot_use_alices_image_as_a_watermark(
    api: Api, alice: Alice, bob: dict[str, str], corpus_dir: Path
) -> None:
    bobs = api.upload(corpus_dir / "pillow" / "flower.jpg", bob)
    for mark_id in (alice.mark["id"], alice.derivative["id"]):
        body = {"watermark": {"image_id": mark_id, "opacity": 1.0}}
        response = api.call("POST", f"/images/{bobs['id']}/transform", json=body, headers=bob)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "watermark_not_found"
        assert problem["field"] == "watermark.image_id"
    # Nor can he put his own watermark on her image.
    body = {"watermark": {"image_id": bobs["id"]}}
    response = api.call("POST", f"/images/{alice.original['id']}/transform", json=body, headers=bob)
    assert_not_found(response)
    listed = api.call("GET", "/images", headers=bob, expect=200).json()
    assert [item["id"] for item in listed["items"]] == [bobs["id"]]
