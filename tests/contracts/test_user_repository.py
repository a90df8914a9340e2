"""Contract of UserRepository, run against every implementation in IMPLEMENTATIONS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import UsernameTaken, UserNotFound
from imgproc_core.domain.users import User
from imgproc_core.ports.persistence import UnitOfWork, UnitOfWorkFactory

UserBuilder = Callable[..., User]


def _add(uow_factory: UnitOfWorkFactory, *users: User) -> None:
    with uow_factory() as uow:
        for user in users:
            uow.users.add(user)
        uow.commit()


def _commit(uow_factory: UnitOfWorkFactory, change: Callable[[UnitOfWork], object]) -> None:
    """One unit of work that makes ``change`` and commits; whichever of the two raises."""
    with uow_factory() as uow:
        change(uow)
        uow.commit()


def _get(uow_factory: UnitOfWorkFactory, user_id: str) -> User | None:
    with uow_factory() as uow:
        return uow.users.get(user_id)


def test_a_user_round_trips_every_field(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder
) -> None:
    user = make_user(username="alice", password_hash="$2b$12$" + "a" * 53, disabled=True)
    _add(uow_factory, user)

    with uow_factory() as uow:
        by_id = uow.users.get(user.id)
        by_name = uow.users.get_by_username("alice")

    assert by_id == user
    assert by_name == user
    assert by_id is not None
    assert by_id.created_at.utcoffset() == timedelta(0)
    assert by_id.created_at.microsecond == user.created_at.microsecond


def test_unknown_users_are_none(uow_factory: UnitOfWorkFactory, make_user: UserBuilder) -> None:
    _add(uow_factory, make_user(username="alice"))
    with uow_factory() as uow:
        assert uow.users.get(make_user().id) is None
        assert uow.users.get_by_username("bob") is None


def test_username_lookup_is_exact(uow_factory: UnitOfWorkFactory, make_user: UserBuilder) -> None:
    _add(uow_factory, make_user(username="alice"))
    with uow_factory() as uow:
        assert uow.users.get_by_username("ALICE") is None
        assert uow.users.get_by_username("alic") is None
        assert uow.users.get_by_username("alice") is not None


def test_users_come_out_as_copies(uow_factory: UnitOfWorkFactory, make_user: UserBuilder) -> None:
    user = make_user(username="alice")
    _add(uow_factory, user)
    user.disabled = True

    with uow_factory() as uow:
        first = uow.users.get(user.id)
        assert first is not None
        first.password_hash = "changed"
        second = uow.users.get(user.id)

    assert second is not None
    assert second is not first
    assert second.password_hash != "changed"
    assert second.disabled is False


def test_a_taken_username_is_refused(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder
) -> None:
    first = make_user(username="alice")
    second = make_user(username="alice")
    _add(uow_factory, first)

    with pytest.raises(UsernameTaken):
        _commit(uow_factory, lambda uow: uow.users.add(second))

    assert _get(uow_factory, second.id) is None
    with uow_factory() as uow:
        assert uow.users.get_by_username("alice") == first


def test_a_username_taken_in_the_same_unit_of_work_is_refused(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder
) -> None:
    first, second = make_user(username="alice"), make_user(username="alice")

    def add_both(uow: UnitOfWork) -> None:
        uow.users.add(first)
        uow.users.add(second)

    with pytest.raises(UsernameTaken):
        _commit(uow_factory, add_both)
    assert _get(uow_factory, first.id) is None


def test_a_username_taken_by_a_concurrent_commit_is_refused(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder
) -> None:
    winner = make_user(username="alice")
    loser = make_user(username="alice")

    def race() -> None:
        with uow_factory() as late:
            late.users.add(loser)
            _add(uow_factory, winner)
            late.commit()

    with pytest.raises(UsernameTaken):
        race()

    assert _get(uow_factory, winner.id) == winner
    assert _get(uow_factory, loser.id) is None


def test_update_writes_back_every_field(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder
) -> None:
    user = make_user(username="alice")
    _add(uow_factory, user)
    changed = replace(user, username="alice2", password_hash="fake$new$hash", disabled=True)

    with uow_factory() as uow:
        uow.users.update(changed)
        uow.commit()

    assert _get(uow_factory, user.id) == changed
    with uow_factory() as uow:
        assert uow.users.get_by_username("alice") is None
        assert uow.users.get_by_username("alice2") == changed


def test_update_to_a_taken_username_is_refused(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder
) -> None:
    alice, bob = make_user(username="alice"), make_user(username="bob")
    _add(uow_factory, alice, bob)

    with pytest.raises(UsernameTaken):
        _commit(uow_factory, lambda uow: uow.users.update(replace(bob, username="alice")))

    assert _get(uow_factory, bob.id) == bob


def test_update_of_an_unknown_user_raises(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder
) -> None:
    ghost = make_user()
    with pytest.raises(UserNotFound):
        _commit(uow_factory, lambda uow: uow.users.update(ghost))
    assert _get(uow_factory, ghost.id) is None


def test_list_pages_in_order_of_registration(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder, clock: ManualClock
) -> None:
    same_moment = clock.now() + timedelta(days=1)
    users = [make_user() for _ in range(5)]
    # Two users registered at the same moment come in the order of their ids.
    users += [make_user(id="f" * 32, created_at=same_moment), make_user(created_at=same_moment)]
    _add(uow_factory, *reversed(users))
    expected = [*users[:5], users[6], users[5]]

    with uow_factory() as uow:
        assert list(uow.users.list()) == expected
        assert list(uow.users.list(offset=0, limit=3)) == expected[:3]
        assert list(uow.users.list(offset=3, limit=3)) == expected[3:6]
        assert list(uow.users.list(offset=6, limit=3)) == expected[6:]
        assert list(uow.users.list(offset=7, limit=3)) == []


def test_list_of_no_users_is_empty(uow_factory: UnitOfWorkFactory) -> None:
    with uow_factory() as uow:
        assert list(uow.users.list()) == []


def test_count_counts_every_user_or_only_the_disabled_or_enabled(
    uow_factory: UnitOfWorkFactory, make_user: UserBuilder
) -> None:
    with uow_factory() as uow:
        assert uow.users.count() == 0
        assert uow.users.count(disabled=True) == 0
    _add(uow_factory, make_user(), make_user(disabled=True), make_user())

    with uow_factory() as uow:
        assert uow.users.count() == 3
        assert uow.users.count(disabled=True) == 1
        assert uow.users.count(disabled=False) == 2
        # A unit of work counts its own changes before they are committed.
        uow.users.add(make_user(disabled=True))
        assert uow.users.count() == 4
        assert uow.users.count(disabled=True) == 2
    with uow_factory() as uow:
        assert uow.users.count() == 3
