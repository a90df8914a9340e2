"""Contract of UnitOfWork (commit, rollback, isolation, atomicity), run against every
implementation in IMPLEMENTATIONS."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import Conflict
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.users import User
from imgproc_core.ports.persistence import UnitOfWork, UnitOfWorkFactory

UserBuilder = Callable[..., User]
ImageBuilder = Callable[..., Image]


class BoomError(Exception):
    pass


def _snapshot(uow_factory: UnitOfWorkFactory, user: User, image: Image) -> tuple[bool, ...]:
    """Whether each of the user, the image and a job for the image is stored, as others see."""
    with uow_factory() as uow:
        return (
            uow.users.get(user.id) is not None,
            uow.images.get(image.id) is not None,
            uow.jobs.pending_count() > 0,
        )


def _write_all(uow: UnitOfWork, user: User, image: Image) -> None:
    uow.users.add(user)
    uow.images.add(image)
    uow.jobs.enqueue(TransformJob(image_id=image.id, source_id=image.id, user_id=user.id))


@pytest.fixture
def user(make_user: UserBuilder) -> User:
    return make_user(username="alice")


@pytest.fixture
def image(make_image: ImageBuilder, user: User) -> Image:
    return make_image(user.id)


def test_commit_makes_every_change_visible(
    uow_factory: UnitOfWorkFactory, user: User, image: Image
) -> None:
    with uow_factory() as uow:
        _write_all(uow, user, image)
        uow.commit()

    assert _snapshot(uow_factory, user, image) == (True, True, True)


def test_leaving_without_commit_discards_every_change(
    uow_factory: UnitOfWorkFactory, user: User, image: Image
) -> None:
    with uow_factory() as uow:
        _write_all(uow, user, image)

    assert _snapshot(uow_factory, user, image) == (False, False, False)


def test_an_exception_rolls_back_and_propagates(
    uow_factory: UnitOfWorkFactory, user: User, image: Image
) -> None:
    def fail_midway() -> None:
        with uow_factory() as uow:
            _write_all(uow, user, image)
            raise BoomError

    with pytest.raises(BoomError):
        fail_midway()

    assert _snapshot(uow_factory, user, image) == (False, False, False)


def test_rollback_discards_only_what_came_before_it(
    uow_factory: UnitOfWorkFactory, user: User, image: Image, make_user: UserBuilder
) -> None:
    other = make_user(username="bob")
    with uow_factory() as uow:
        _write_all(uow, user, image)
        uow.rollback()
        uow.users.add(other)
        uow.commit()

    assert _snapshot(uow_factory, user, image) == (False, False, False)
    with uow_factory() as uow:
        assert uow.users.get(other.id) == other


def test_changes_after_a_commit_need_another_commit(
    uow_factory: UnitOfWorkFactory, user: User, image: Image
) -> None:
    with uow_factory() as uow:
        uow.users.add(user)
        uow.commit()
        uow.images.add(image)

    assert _snapshot(uow_factory, user, image) == (True, False, False)


def test_a_unit_of_work_reads_its_own_writes(
    uow_factory: UnitOfWorkFactory, user: User, image: Image, clock: ManualClock
) -> None:
    with uow_factory() as uow:
        _write_all(uow, user, image)
        assert uow.users.get(user.id) == user
        assert uow.users.get_by_username(user.username) == user
        assert uow.images.get(image.id) == image
        assert uow.images.list_for_user(user.id, offset=0, limit=10) == ([image], 1)
        assert uow.images.count_by_status()[JobStatus.READY] == 1
        assert uow.jobs.pending_count() == 1
        stored = uow.images.get(image.id)
        assert stored is not None
        stored.filename = "renamed.jpg"
        uow.images.update(stored)
        assert uow.images.get(image.id) == stored
        uow.images.delete(image.id)
        assert uow.images.get(image.id) is None


def test_uncommitted_changes_are_invisible_to_others(
    uow_factory: UnitOfWorkFactory, user: User, image: Image
) -> None:
    with uow_factory() as writer:
        _write_all(writer, user, image)
        assert writer.users.get(user.id) is not None
        assert _snapshot(uow_factory, user, image) == (False, False, False)
        writer.commit()
        assert _snapshot(uow_factory, user, image) == (True, True, True)


def test_uncommitted_updates_and_deletes_are_invisible_to_others(
    uow_factory: UnitOfWorkFactory, user: User, image: Image
) -> None:
    with uow_factory() as uow:
        _write_all(uow, user, image)
        uow.commit()

    with uow_factory() as writer:
        stored = writer.images.get(image.id)
        assert stored is not None
        stored.filename = "renamed.jpg"
        writer.images.update(stored)
        writer.jobs.ack(image.id)
        with uow_factory() as reader:
            assert reader.images.get(image.id) == image
            assert reader.jobs.pending_count() == 1
        writer.images.delete(image.id)
        with uow_factory() as reader:
            assert reader.images.get(image.id) == image

    assert _snapshot(uow_factory, user, image) == (True, True, True)


def test_a_failed_commit_applies_nothing(
    uow_factory: UnitOfWorkFactory,
    user: User,
    image: Image,
    make_user: UserBuilder,
    make_image: ImageBuilder,
) -> None:
    with uow_factory() as uow:
        uow.users.add(user)
        uow.images.add(image)
        uow.commit()
    newcomer = make_user(username="bob")
    fresh = make_image(newcomer.id)
    duplicate = make_image(newcomer.id, id=image.id)

    def add_with_a_duplicate() -> None:
        with uow_factory() as uow:
            uow.users.add(newcomer)
            uow.images.add(fresh)
            uow.images.add(duplicate)
            uow.commit()

    with pytest.raises(Conflict):
        add_with_a_duplicate()

    with uow_factory() as uow:
        assert uow.users.get(newcomer.id) is None
        assert uow.images.get(fresh.id) is None
        assert uow.images.get(image.id) == image
