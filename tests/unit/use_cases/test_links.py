"""Delivery links on the in-memory fakes: made, listed and revoked by the image's owner only,
and resolved from their URL's token until they expire, are revoked, or lose their image."""

from __future__ import annotations

from datetime import timedelta

import pytest

from imgproc_core.adapters.memory import ManualClock, fake_image_bytes
from imgproc_core.container import Container
from imgproc_core.domain.errors import (
    ImageNotFound,
    InvalidInput,
    InvalidTransformation,
    LinkNotFound,
)
from imgproc_core.domain.images import Image
from imgproc_core.domain.transformations import parse_transformation
from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_core.use_cases import (
    MAX_LINK_TTL_SECONDS,
    CreateLinkCommand,
    ImageQuery,
    LinkQuery,
    RegisterUserCommand,
    RequestTransformCommand,
    RevokeLinkCommand,
    UploadImageCommand,
)

BASE_URL = "https://img.example"
THUMB = parse_transformation({"resize": {"width": 320}, "format": "webp"})


@pytest.fixture
def container() -> Container:
    return build_test_container(settings_for_tests(public_base_url=f"{BASE_URL}/"))


def _user(container: Container, name: str) -> str:
    return container.register_user()(RegisterUserCommand(name, "correct horse")).user.id


@pytest.fixture
def alice(container: Container) -> str:
    return _user(container, "alice")


@pytest.fixture
def photo(container: Container, alice: str) -> Image:
    image: Image = container.upload_image()(
        UploadImageCommand(alice, "cat.png", fake_image_bytes("png", 640, 480))
    )
    return image


def _token(url: str) -> str:
    assert url.startswith(f"{BASE_URL}/d/")
    return url.removeprefix(f"{BASE_URL}/d/")


def test_a_link_to_a_transformation_resolves_to_its_image_and_transformation(
    container: Container, alice: str, photo: Image
) -> None:
    link = container.create_link()(CreateLinkCommand(alice, photo.id, THUMB))
    assert (link.image_id, link.transformation, link.expires_at) == (photo.id, THUMB, None)

    resolved = container.resolve_link()(_token(link.url))
    assert (resolved.image.id, resolved.transformation, resolved.link.id) == (
        photo.id,
        THUMB,
        link.id,
    )


def test_a_link_without_a_transformation_serves_the_image_itself(
    container: Container, alice: str, photo: Image
) -> None:
    link = container.create_link()(CreateLinkCommand(alice, photo.id))
    assert container.resolve_link()(_token(link.url)).transformation is None


def test_an_edited_token_is_no_link(container: Container, alice: str, photo: Image) -> None:
    token = _token(container.create_link()(CreateLinkCommand(alice, photo.id)).url)
    edited = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(LinkNotFound):
        container.resolve_link()(edited)


def test_a_link_expires(container: Container, alice: str, photo: Image) -> None:
    clock: ManualClock = container.clock()
    link = container.create_link()(CreateLinkCommand(alice, photo.id, expires_in=60))
    assert link.expires_at == link.created_at + timedelta(seconds=60)
    container.resolve_link()(_token(link.url))
    clock.advance(60)
    with pytest.raises(LinkNotFound):
        container.resolve_link()(_token(link.url))


@pytest.mark.parametrize("expires_in", [0, -1, MAX_LINK_TTL_SECONDS + 1])
def test_a_lifetime_out_of_bounds_is_refused(
    container: Container, alice: str, photo: Image, expires_in: int
) -> None:
    with pytest.raises(InvalidInput) as refused:
        container.create_link()(CreateLinkCommand(alice, photo.id, expires_in=expires_in))
    assert refused.value.field == "expires_in"


def test_a_revoked_link_is_no_link_and_is_revoked_once(
    container: Container, alice: str, photo: Image
) -> None:
    link = container.create_link()(CreateLinkCommand(alice, photo.id))
    container.revoke_link()(RevokeLinkCommand(alice, link.id))
    with pytest.raises(LinkNotFound):
        container.resolve_link()(_token(link.url))
    with pytest.raises(LinkNotFound):
        container.revoke_link()(RevokeLinkCommand(alice, link.id))


def test_deleting_the_image_revokes_its_links(
    container: Container, alice: str, photo: Image
) -> None:
    link = container.create_link()(CreateLinkCommand(alice, photo.id, THUMB))
    container.delete_image()(ImageQuery(alice, photo.id))
    with pytest.raises(LinkNotFound):
        container.resolve_link()(_token(link.url))


def test_another_users_image_and_link_are_unknown(
    container: Container, alice: str, photo: Image
) -> None:
    bob = _user(container, "bob")
    link = container.create_link()(CreateLinkCommand(alice, photo.id))
    with pytest.raises(ImageNotFound):
        container.create_link()(CreateLinkCommand(bob, photo.id))
    with pytest.raises(ImageNotFound):
        container.list_links()(LinkQuery(bob, photo.id))
    with pytest.raises(LinkNotFound):
        container.revoke_link()(RevokeLinkCommand(bob, link.id))
    container.resolve_link()(_token(link.url))


def test_an_images_links_are_listed_oldest_first(
    container: Container, alice: str, photo: Image
) -> None:
    clock: ManualClock = container.clock()
    first = container.create_link()(CreateLinkCommand(alice, photo.id))
    clock.advance(1)
    second = container.create_link()(CreateLinkCommand(alice, photo.id, THUMB))
    assert container.list_links()(LinkQuery(alice, photo.id)) == [first, second]


def test_a_transformation_is_checked_when_the_link_is_made(
    container: Container, alice: str, photo: Image
) -> None:
    too_far = parse_transformation({"crop": {"x": 600, "y": 0, "width": 100, "height": 100}})
    with pytest.raises(InvalidTransformation):
        container.create_link()(CreateLinkCommand(alice, photo.id, too_far))
    derived = container.request_transform()(RequestTransformCommand(alice, photo.id, THUMB))
    with pytest.raises(InvalidTransformation, match="derived image"):
        container.create_link()(CreateLinkCommand(alice, derived.id, THUMB))
    # A derivative itself may be linked.
    container.create_link()(CreateLinkCommand(alice, derived.id))
