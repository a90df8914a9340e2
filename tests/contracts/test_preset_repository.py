"""The preset repository's contract, on every database: a user's presets and the service's
are kept apart, one of each name per owner, replaced in place, listed by name."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import Conflict, UserNotFound
from imgproc_core.domain.presets import Preset
from imgproc_core.domain.transformations import parse_transformation
from imgproc_core.domain.users import User
from imgproc_core.ports.persistence import UnitOfWorkFactory
from tests.contracts.conftest import hex_id

THUMB = parse_transformation({"resize": {"width": 320}, "format": "webp", "quality": 70})
HERO = parse_transformation(
    {"resize": {"width": 1600, "height": 900, "fit": "cover"}, "sharpen": 0.5}
)


@pytest.fixture
def owner(uow_factory: UnitOfWorkFactory, make_user: Callable[..., User]) -> User:
    user = make_user()
    with uow_factory() as uow:
        uow.users.add(user)
        uow.commit()
    return user


def _preset(clock: ManualClock, name: str, user_id: str | None, **overrides: Any) -> Preset:
    fields: dict[str, Any] = {
        "name": name,
        "transformation": THUMB,
        "created_at": clock.now() + timedelta(microseconds=250_000),
        "updated_at": clock.now() + timedelta(microseconds=250_000),
        "user_id": user_id,
        "eager": False,
    }
    fields.update(overrides)
    return Preset(**fields)


def test_a_preset_reads_back_whole(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    own = _preset(clock, "thumb", owner.id, eager=True, transformation=HERO)
    service = _preset(clock, "thumb", None)
    with uow_factory() as uow:
        assert uow.presets.put(own)
        assert uow.presets.put(service)
        uow.commit()
    with uow_factory() as uow:
        assert uow.presets.get(owner.id, "thumb") == own
        assert uow.presets.get(None, "thumb") == service
        assert uow.presets.get(owner.id, "hero") is None
        assert uow.presets.get(hex_id(0x1999), "thumb") is None


def test_putting_a_name_again_replaces_it_and_keeps_when_it_was_made(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    first = _preset(clock, "thumb", owner.id)
    with uow_factory() as uow:
        uow.presets.put(first)
        uow.commit()
    later = first.updated_at + timedelta(hours=1)
    with uow_factory() as uow:
        assert not uow.presets.put(
            _preset(clock, "thumb", owner.id, transformation=HERO, eager=True, updated_at=later)
        )
        uow.commit()
    with uow_factory() as uow:
        assert uow.presets.get(owner.id, "thumb") == Preset(
            name="thumb",
            transformation=HERO,
            created_at=first.created_at,
            updated_at=later,
            user_id=owner.id,
            eager=True,
        )
        assert uow.presets.count(owner.id) == 1


def test_an_uncommitted_preset_is_not_stored(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    with uow_factory() as uow:
        uow.presets.put(_preset(clock, "thumb", owner.id))
    with uow_factory() as uow:
        assert uow.presets.get(owner.id, "thumb") is None


def test_a_users_preset_needs_the_user(uow_factory: UnitOfWorkFactory, clock: ManualClock) -> None:
    with uow_factory() as uow, pytest.raises(UserNotFound):
        uow.presets.put(_preset(clock, "thumb", hex_id(0x1999)))


def test_two_transactions_making_one_name_conflict(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    def race() -> None:
        with uow_factory() as late:
            late.presets.put(_preset(clock, "thumb", owner.id))
            with uow_factory() as first:
                first.presets.put(_preset(clock, "thumb", owner.id, transformation=HERO))
                first.commit()
            late.commit()

    with pytest.raises(Conflict):
        race()
    with uow_factory() as uow:
        stored = uow.presets.get(owner.id, "thumb")
        assert stored is not None
        assert stored.transformation == HERO


def test_presets_are_listed_by_owner_and_name(
    uow_factory: UnitOfWorkFactory,
    owner: User,
    make_user: Callable[..., User],
    clock: ManualClock,
) -> None:
    other = make_user()
    with uow_factory() as uow:
        uow.users.add(other)
        for name in ("small", "hero", "thumb"):
            uow.presets.put(_preset(clock, name, owner.id, eager=name != "hero"))
        uow.presets.put(_preset(clock, "avatar", other.id, eager=True))
        uow.presets.put(_preset(clock, "banner", None))
        uow.commit()
    with uow_factory() as uow:
        assert [p.name for p in uow.presets.list(owner.id)] == ["hero", "small", "thumb"]
        assert [p.name for p in uow.presets.eager(owner.id)] == ["small", "thumb"]
        assert [p.name for p in uow.presets.list(None)] == ["banner"]
        assert [p.name for p in uow.presets.eager(other.id)] == ["avatar"]
        assert uow.presets.count(owner.id) == 3
        assert uow.presets.count(hex_id(0x1999)) == 0


def test_a_preset_is_deleted_once_and_only_its_owners(
    uow_factory: UnitOfWorkFactory, owner: User, clock: ManualClock
) -> None:
    with uow_factory() as uow:
        uow.presets.put(_preset(clock, "thumb", owner.id))
        uow.presets.put(_preset(clock, "thumb", None))
        uow.commit()
    with uow_factory() as uow:
        assert uow.presets.delete(owner.id, "thumb")
        assert not uow.presets.delete(owner.id, "thumb")
        uow.commit()
    with uow_factory() as uow:
        assert uow.presets.get(owner.id, "thumb") is None
        assert uow.presets.get(None, "thumb") is not None
        assert uow.presets.delete(None, "thumb")
        uow.commit()
    with uow_factory() as uow:
        assert uow.presets.list(None) == []
