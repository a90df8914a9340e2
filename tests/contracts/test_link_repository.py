"""Contract of LinkRepository, run against every implementation in IMPLEMENTATIONS: links are
stored and read back whole, listed per image in order, deleted once, and deleted with their
image in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import Conflict, ImageNotFound
from imgproc_core.domain.images import Image
from imgproc_core.domain.links import Link
from imgproc_core.domain.users import User
from imgproc_core.ports.persistence import UnitOfWorkFactory
from tests.contracts.conftest import hex_id

UserBuilder = Callable[..., User]
ImageBuilder = Callable[..., Image]


@pytest.fixture
def image(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder, make_image: ImageBuilder
) -> Image:
    user = make_user()
    stored = make_image(user.id)
    with uow_factory() as uow:
        uow.users.add(user)
        uow.images.add(stored)
        uow.commit()
    return stored


def _link(image: Image, clock: ManualClock, n: int, **overrides: object) -> Link:
    fields: dict[str, object] = {
        "id": hex_id(0x3000 + n),
        "user_id": image.user_id,
        "image_id": image.id,
        "created_at": clock.now() + timedelta(seconds=n, microseconds=250_000),
    }
    fields.update(overrides)
    return Link(**fields)  # type: ignore[arg-type]


def test_a_link_reads_back_whole(
    uow_factory: UnitOfWorkFactory, image: Image, clock: ManualClock
) -> None:
    plain = _link(image, clock, 1)
    rich = _link(
        image,
        clock,
        2,
        transformation='{"resize":{"width":320},"format":"auto"}',
        expires_at=clock.now() + timedelta(hours=1, microseconds=1),
    )
    with uow_factory() as uow:
        uow.links.add(plain)
        uow.links.add(rich)
        uow.commit()
    with uow_factory() as uow:
        assert uow.links.get(plain.id) == plain
        assert uow.links.get(rich.id) == rich
        assert uow.links.get(hex_id(0x3999)) is None


def test_an_uncommitted_link_is_not_stored(
    uow_factory: UnitOfWorkFactory, image: Image, clock: ManualClock
) -> None:
    with uow_factory() as uow:
        uow.links.add(_link(image, clock, 1))
    with uow_factory() as uow:
        assert uow.links.get(hex_id(0x3001)) is None


def test_a_link_id_is_used_once(
    uow_factory: UnitOfWorkFactory, image: Image, clock: ManualClock
) -> None:
    with uow_factory() as uow:
        uow.links.add(_link(image, clock, 1))
        uow.commit()
    with uow_factory() as uow, pytest.raises(Conflict):
        uow.links.add(_link(image, clock, 1, created_at=clock.now() + timedelta(days=1)))


def test_a_link_needs_its_image(
    uow_factory: UnitOfWorkFactory, image: Image, clock: ManualClock
) -> None:
    with uow_factory() as uow, pytest.raises(ImageNotFound):
        uow.links.add(_link(image, clock, 1, image_id=hex_id(0x2999)))


def test_an_images_links_are_listed_oldest_first(
    uow_factory: UnitOfWorkFactory, image: Image, clock: ManualClock
) -> None:
    links = [_link(image, clock, n) for n in (3, 1, 2)]
    with uow_factory() as uow:
        for link in links:
            uow.links.add(link)
        uow.commit()
    with uow_factory() as uow:
        listed = uow.links.list_for_image(image.id)
        assert [link.id for link in listed] == [hex_id(0x3001), hex_id(0x3002), hex_id(0x3003)]
        assert uow.links.list_for_image(hex_id(0x2999)) == []


def test_a_link_is_deleted_once(
    uow_factory: UnitOfWorkFactory, image: Image, clock: ManualClock
) -> None:
    with uow_factory() as uow:
        uow.links.add(_link(image, clock, 1))
        uow.commit()
    with uow_factory() as uow:
        assert uow.links.delete(hex_id(0x3001))
        assert not uow.links.delete(hex_id(0x3001))
        uow.commit()
    with uow_factory() as uow:
        assert uow.links.get(hex_id(0x3001)) is None


def test_deleting_an_image_deletes_its_links(
    uow_factory: UnitOfWorkFactory, image: Image, clock: ManualClock
) -> None:
    with uow_factory() as uow:
        uow.links.add(_link(image, clock, 1))
        uow.links.add(_link(image, clock, 2))
        uow.commit()
    with uow_factory() as uow:
        uow.images.delete(image.id)
        uow.commit()
    with uow_factory() as uow:
        assert uow.links.list_for_image(image.id) == []
        assert uow.links.get(hex_id(0x3001)) is None


def test_a_link_is_read_with_the_image_it_serves(
    uow_factory: UnitOfWorkFactory, image: Image, clock: ManualClock
) -> None:
    link = _link(image, clock, 1)
    with uow_factory() as uow:
        uow.links.add(link)
        uow.commit()
    with uow_factory() as uow:
        assert uow.links.get_with_image(link.id) == (link, image)
        assert uow.links.get_with_image(hex_id(0x3999)) is None
