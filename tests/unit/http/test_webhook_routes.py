"""``/webhooks`` over HTTP on the fakes: made with a secret shown once, listed, read, tested
and deleted by their owner only; malformed and unauthorized requests refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_http import create_app

BASE = "/api/v1"
HOOK = {"url": "https://hooks.example/imgproc", "events": ["image.ready", "image.uploaded"]}


@pytest.fixture
def client() -> Iterator[TestClient[Litestar]]:
    container = build_test_container(settings_for_tests())
    with TestClient(create_app(container)) as test_client:
        yield test_client


def _user(client: TestClient[Litestar], name: str) -> dict[str, str]:
    answer = client.post(f"{BASE}/register", json={"username": name, "password": "correct horse"})
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture
def alice(client: TestClient[Litestar]) -> dict[str, str]:
    return _user(client, "alice")


def test_an_endpoint_is_made_shown_tested_and_deleted(
    client: TestClient[Litestar], alice: dict[str, str]
) -> None:
    made = client.post(f"{BASE}/webhooks", json=HOOK, headers=alice)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["secret"].startswith("whsec_")
    assert (body["url"], body["events"], body["disabled_at"]) == (
        HOOK["url"],
        HOOK["events"],
        None,
    )
    hook = f"{BASE}/webhooks/{body['id']}"

    shown = client.get(hook, headers=alice).json()
    listed = client.get(f"{BASE}/webhooks", headers=alice).json()["items"]
    assert "secret" not in shown
    assert listed == [shown]
    tested = client.post(f"{hook}/test", headers=alice)
    assert tested.status_code == 202
    assert tested.json()["delivery_id"].startswith("msg_")
    assert client.get(f"{hook}/deliveries", headers=alice).json() == {"items": []}
    assert client.delete(hook, headers=alice).status_code == 204
    assert client.get(hook, headers=alice).status_code == 404


def test_another_users_endpoint_is_not_found(
    client: TestClient[Litestar], alice: dict[str, str]
) -> None:
    bob = _user(client, "bob")
    hook = (
        f"{BASE}/webhooks/{client.post(f'{BASE}/webhooks', json=HOOK, headers=alice).json()['id']}"
    )
    for method, path in (
        ("GET", hook),
        ("DELETE", hook),
        ("POST", f"{hook}/test"),
        ("GET", f"{hook}/deliveries"),
    ):
        answer = client.request(method, path, headers=bob)
        assert (answer.status_code, answer.json()["code"]) == (404, "webhook_not_found")
    assert client.get(f"{BASE}/webhooks", headers=bob).json() == {"items": []}


def test_without_a_token_nothing_is_done(client: TestClient[Litestar]) -> None:
    assert client.post(f"{BASE}/webhooks", json=HOOK).status_code == 401
    assert client.get(f"{BASE}/webhooks").status_code == 401
    assert client.get(f"{BASE}/webhooks/x").status_code == 401
    assert client.delete(f"{BASE}/webhooks/x").status_code == 401
    assert client.post(f"{BASE}/webhooks/x/test").status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.example/", "events": ["image.ready"]}, "url"),
        ({"url": "javascript:alert(1)", "events": ["image.ready"]}, "url"),
        ({"url": "https://hooks.example/" + "a" * 3000, "events": ["image.ready"]}, "url"),
        ({"url": "https://hooks.example/", "events": []}, "events"),
        ({"url": "https://hooks.example/", "events": ["image.gone"]}, "events"),
        ({"url": "https://hooks.example/", "events": "image.ready"}, "events"),
        ({"url": "https://hooks.example/"}, "events"),
        ({"url": "https://hooks.example/", "events": ["image.ready"], "x": 1}, "x"),
    ],
)
def test_a_malformed_endpoint_is_refused_naming_its_field(
    client: TestClient[Litestar], alice: dict[str, str], body: Any, field: str
) -> None:
    answer = client.post(f"{BASE}/webhooks", json=body, headers=alice)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field
