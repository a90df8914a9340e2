"""The routes that manage delivery links, on the API's app over the fakes: made, listed and
revoked by the image's owner, 404 for anyone else, 422 for a malformed body, 401 without a
token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from imgproc_core.adapters.memory import fake_image_bytes
from imgproc_core.container import Container
from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_http import create_app

BASE = "/api/v1"


@pytest.fixture
def container() -> Container:
    return build_test_container(settings_for_tests(public_base_url="https://img.example"))


@pytest.fixture
def client(container: Container) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(container), timeout=30) as test_client:
        yield test_client


def _session(client: TestClient[Litestar], name: str) -> dict[str, str]:
    answer = client.post(f"{BASE}/register", json={"username": name, "password": "correct horse"})
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _upload(client: TestClient[Litestar], headers: dict[str, str]) -> str:
    files = {"file": ("cat.png", fake_image_bytes("png", 640, 480), "image/png")}
    answer = client.post(f"{BASE}/images", files=files, headers=headers)
    assert answer.status_code == 201, answer.text
    image_id: str = answer.json()["id"]
    return image_id


@pytest.fixture
def alice(client: TestClient[Litestar]) -> dict[str, str]:
    return _session(client, "alice")


@pytest.fixture
def photo(client: TestClient[Litestar], alice: dict[str, str]) -> str:
    return _upload(client, alice)


def test_a_link_is_made_listed_and_revoked(
    client: TestClient[Litestar], container: Container, alice: dict[str, str], photo: str
) -> None:
    body: dict[str, Any] = {"transformation": {"resize": {"width": 320}}, "expires_in": 3600}
    made = client.post(f"{BASE}/images/{photo}/links", json=body, headers=alice)
    assert made.status_code == 201, made.text
    link = made.json()
    assert set(link) == {
        "id",
        "url",
        "image_id",
        "transformation",
        "expires_at",
        "created_at",
        "auto_format",
    }
    assert link["url"].startswith("https://img.example/d/")
    assert link["image_id"] == photo
    assert link["transformation"]["resize"]["width"] == 320
    assert link["expires_at"] is not None

    container.clock().advance(1)
    plain = client.post(f"{BASE}/images/{photo}/links", json={}, headers=alice).json()
    assert (plain["transformation"], plain["expires_at"]) == (None, None)

    listed = client.get(f"{BASE}/images/{photo}/links", headers=alice)
    assert [each["id"] for each in listed.json()["items"]] == [link["id"], plain["id"]]

    assert client.delete(f"{BASE}/links/{link['id']}", headers=alice).status_code == 204
    assert client.delete(f"{BASE}/links/{link['id']}", headers=alice).status_code == 404
    listed = client.get(f"{BASE}/images/{photo}/links", headers=alice)
    assert [each["id"] for each in listed.json()["items"]] == [plain["id"]]


def test_another_users_image_and_link_are_not_found(
    client: TestClient[Litestar], alice: dict[str, str], photo: str
) -> None:
    bob = _session(client, "bob")
    link = client.post(f"{BASE}/images/{photo}/links", json={}, headers=alice).json()
    assert client.post(f"{BASE}/images/{photo}/links", json={}, headers=bob).status_code == 404
    assert client.get(f"{BASE}/images/{photo}/links", headers=bob).status_code == 404
    assert client.delete(f"{BASE}/links/{link['id']}", headers=bob).status_code == 404
    assert client.get(f"{BASE}/images/{photo}/links", headers=alice).json()["items"]


def test_without_a_token_nothing_is_done(client: TestClient[Litestar], photo: str) -> None:
    assert client.post(f"{BASE}/images/{photo}/links", json={}).status_code == 401
    assert client.get(f"{BASE}/images/{photo}/links").status_code == 401
    assert client.delete(f"{BASE}/links/0123").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": "soon"}, "expires_in"),
        ({"transformation": {"resize": {"width": -1}}}, "transformation.resize.width"),
        ({"transformation": {"spin": 3}}, "transformation.spin"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_malformed_body_is_refused_naming_its_field(
    client: TestClient[Litestar], alice: dict[str, str], photo: str, body: Any, field: str
) -> None:
    answer = client.post(f"{BASE}/images/{photo}/links", json=body, headers=alice)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
