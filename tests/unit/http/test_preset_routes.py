"""``/presets`` and ``{"preset": NAME}`` over HTTP on the fakes: made (201) and replaced
(200), listed with their scope, read and deleted by their owner only; taken by
``/transform``, links and the upload form's ``variants``; refused with 422 naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from imgproc_core.adapters.memory import fake_image_bytes
from imgproc_core.container import Container
from imgproc_core.domain.transformations import parse_transformation
from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_core.use_cases import PresetCommand
from imgproc_http import create_app

BASE = "/api/v1"
PHOTO = fake_image_bytes("png", 640, 480)
THUMB = {"resize": {"width": 320}, "format": "webp"}


def _client(**settings: Any) -> Iterator[tuple[TestClient[Litestar], Container]]:
    container = build_test_container(settings_for_tests(**settings))
    with TestClient(create_app(container)) as test_client:
        yield test_client, container


@pytest.fixture
def served() -> Iterator[tuple[TestClient[Litestar], Container]]:
    yield from _client()


@pytest.fixture
def client(served: tuple[TestClient[Litestar], Container]) -> TestClient[Litestar]:
    return served[0]


def _user(client: TestClient[Litestar], name: str) -> dict[str, str]:
    answer = client.post(f"{BASE}/register", json={"username": name, "password": "correct horse"})
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture
def alice(client: TestClient[Litestar]) -> dict[str, str]:
    return _user(client, "alice")


def _upload(client: TestClient[Litestar], headers: dict[str, str], **form: str) -> Any:
    files = {"file": ("cat.png", PHOTO, "image/png")}
    return client.post(f"{BASE}/images", files=files, data=form, headers=headers)


def test_a_preset_is_made_replaced_read_listed_and_deleted(
    served: tuple[TestClient[Litestar], Container], alice: dict[str, str]
) -> None:
    client, container = served
    container.put_preset()(PresetCommand(None, "banner", parse_transformation({"rotate": 90})))

    made = client.put(f"{BASE}/presets/thumb", json={"transformation": THUMB}, headers=alice)
    replaced = client.put(
        f"{BASE}/presets/thumb",
        json={"transformation": {"transformations": THUMB}, "eager": True},
        headers=alice,
    )
    assert (made.status_code, replaced.status_code) == (201, 200), replaced.text
    assert replaced.json()["eager"] is True
    assert replaced.json()["created_at"] == made.json()["created_at"]

    listed = client.get(f"{BASE}/presets", headers=alice).json()["items"]
    assert [(item["name"], item["scope"]) for item in listed] == [
        ("thumb", "user"),
        ("banner", "service"),
    ]
    assert client.get(f"{BASE}/presets/banner", headers=alice).json()["scope"] == "service"
    assert client.delete(f"{BASE}/presets/thumb", headers=alice).status_code == 204
    assert client.get(f"{BASE}/presets/thumb", headers=alice).status_code == 404
    assert client.delete(f"{BASE}/presets/banner", headers=alice).status_code == 404


def test_another_users_preset_is_not_found(
    client: TestClient[Litestar], alice: dict[str, str]
) -> None:
    bob = _user(client, "bob")
    client.put(f"{BASE}/presets/mine", json={"transformation": THUMB}, headers=alice)
    photo = _upload(client, bob).json()["id"]

    assert client.get(f"{BASE}/presets/mine", headers=bob).status_code == 404
    assert client.delete(f"{BASE}/presets/mine", headers=bob).status_code == 404
    assert client.get(f"{BASE}/presets", headers=bob).json() == {"items": []}
    used = client.post(f"{BASE}/images/{photo}/transform", json={"preset": "mine"}, headers=bob)
    assert (used.status_code, used.json()["code"]) == (422, "unknown_preset")


def test_without_a_token_nothing_is_done(client: TestClient[Litestar]) -> None:
    assert client.put(f"{BASE}/presets/x", json={"transformation": THUMB}).status_code == 401
    assert client.get(f"{BASE}/presets").status_code == 401
    assert client.get(f"{BASE}/presets/x").status_code == 401
    assert client.delete(f"{BASE}/presets/x").status_code == 401


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("Thumb", {"transformation": THUMB}, "name"),
        ("a" * 65, {"transformation": THUMB}, "name"),
        ("thumb", {}, "transformation"),
        ("thumb", {"transformation": {"preset": "other"}}, "preset"),
        ("thumb", {"transformation": {"spin": 1}}, "transformation.spin"),
        ("thumb", {"transformation": {}}, None),
        ("thumb", {"transformation": THUMB, "lazy": True}, "lazy"),
        ("thumb", {"transformation": THUMB, "eager": "yes"}, "eager"),
    ],
)
def test_a_malformed_preset_is_refused_naming_its_field(
    client: TestClient[Litestar], alice: dict[str, str], name: str, body: Any, field: str | None
) -> None:
    answer = client.put(f"{BASE}/presets/{name}", json=body, headers=alice)
    assert answer.status_code == 422, answer.text
    assert answer.json().get("field") == field


def test_transform_and_links_take_a_preset_and_make_one_derivative(
    client: TestClient[Litestar], alice: dict[str, str]
) -> None:
    client.put(f"{BASE}/presets/thumb", json={"transformation": THUMB}, headers=alice)
    photo = _upload(client, alice).json()["id"]

    through_preset = client.post(
        f"{BASE}/images/{photo}/transform", json={"preset": "thumb"}, headers=alice
    )
    written_out = client.post(f"{BASE}/images/{photo}/transform", json=THUMB, headers=alice)
    link = client.post(
        f"{BASE}/images/{photo}/links",
        json={"transformation": {"preset": "thumb", "format": "auto"}},
        headers=alice,
    )

    assert through_preset.json()["id"] == written_out.json()["id"]
    assert through_preset.json()["format"] == "webp"
    assert link.status_code == 201, link.text
    assert (link.json()["transformation"], link.json()["auto_format"]) == (
        {"resize": {"width": 320}},
        True,
    )
    alone = client.post(
        f"{BASE}/images/{photo}/transform", json={"preset": "thumb", "rotate": 90}, headers=alice
    )
    assert (alone.status_code, alone.json()["field"]) == (422, "rotate")


def test_an_upload_lists_the_variants_it_queued(
    client: TestClient[Litestar], alice: dict[str, str]
) -> None:
    client.put(f"{BASE}/presets/thumb", json={"transformation": THUMB}, headers=alice)
    client.put(
        f"{BASE}/presets/small",
        json={"transformation": {"resize": {"width": 100}}, "eager": True},
        headers=alice,
    )

    answer = _upload(client, alice, variants="thumb")
    plain = _upload(client, alice)
    refused = _upload(client, alice, variants="thumb,nope")

    assert answer.status_code == 201, answer.text
    assert [(v["preset"], v["status"]) for v in answer.json()["variants"]] == [
        ("thumb", "PENDING"),
        ("small", "PENDING"),
    ]
    assert [v["preset"] for v in plain.json()["variants"]] == ["small"]
    assert (refused.status_code, refused.json()["field"]) == (422, "variants")
    listed = client.get(f"{BASE}/images", headers=alice).json()
    assert listed["total"] == 2 + 3  # two uploads, three variants; the refused upload: none
    # Without variants, the answer is the image's metadata, as before presets.
    bob = _user(client, "bob")
    alone = _upload(client, bob).json()
    assert "variants" not in alone
    assert client.get(f"{BASE}/images/{alone['id']}/metadata", headers=bob).json() == alone


def test_presets_only_refuses_what_is_not_a_service_preset() -> None:
    for client, container in _client(presets_only=True):
        alice = _user(client, "alice")
        container.put_preset()(PresetCommand(None, "thumb", parse_transformation(THUMB)))
        photo = _upload(client, alice).json()["id"]

        refused = [
            client.post(f"{BASE}/images/{photo}/transform", json=THUMB, headers=alice),
            client.post(
                f"{BASE}/images/{photo}/links", json={"transformation": THUMB}, headers=alice
            ),
            client.put(f"{BASE}/presets/mine", json={"transformation": THUMB}, headers=alice),
        ]
        taken = client.post(
            f"{BASE}/images/{photo}/transform", json={"preset": "thumb"}, headers=alice
        )

        assert [(r.status_code, r.json()["code"]) for r in refused] == [(422, "presets_only")] * 3
        assert taken.status_code in (200, 202), taken.text
