"""Builders shared by the contract tests of the persistence ports, and the databases they run on.

Ids are 32 lowercase hex digits, like the service's own, so that a SQL adapter with a UUID or
fixed-width column accepts them. Times are aware, in UTC, with microseconds, and distinct unless
a test makes them equal on purpose.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from imgproc_core.adapters.memory import InMemoryDatabase, InMemoryUnitOfWork, ManualClock
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.users import User
from imgproc_core.ports.persistence import UnitOfWorkFactory
from tests.support.sql import postgres_unit_of_work_factory, sqlite_unit_of_work_factory

UserBuilder = Callable[..., User]
ImageBuilder = Callable[..., Image]
Implementation = Callable[[pytest.FixtureRequest, ManualClock], UnitOfWorkFactory]


def hex_id(number: int) -> str:
    return uuid.UUID(int=number).hex


def _memory_database(request: pytest.FixtureRequest, clock: ManualClock) -> UnitOfWorkFactory:
    database = InMemoryDatabase()
    return lambda: InMemoryUnitOfWork(database, clock)


#: The databases every persistence port's contract runs on.
DATABASES = [
    pytest.param(_memory_database, id="memory"),
    pytest.param(sqlite_unit_of_work_factory, id="sqlite"),
    pytest.param(postgres_unit_of_work_factory, id="postgres", marks=pytest.mark.integration),
]


@pytest.fixture(params=DATABASES)
def uow_factory(request: pytest.FixtureRequest, clock: ManualClock) -> UnitOfWorkFactory:
    """A unit of work on each database in turn: memory, SQLite, PostgreSQL."""
    implementation: Implementation = request.param
    return implementation(request, clock)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_user(clock: ManualClock) -> UserBuilder:
    numbers = itertools.count(1)

    def build(**overrides: Any) -> User:
        n = next(numbers)
        fields: dict[str, Any] = {
            "id": hex_id(0x1000 + n),
            "username": f"user{n:03d}",
            "password_hash": f"fake${n:032x}${n:064x}",
            "created_at": clock.now() + timedelta(seconds=n, microseconds=123_456),
            "disabled": False,
        }
        fields.update(overrides)
        return User(**fields)

    return build


@pytest.fixture
def make_image(clock: ManualClock) -> ImageBuilder:
    numbers = itertools.count(1)

    def build(user_id: str, **overrides: Any) -> Image:
        n = next(numbers)
        created = clock.now() + timedelta(minutes=n, microseconds=654_321)
        fields: dict[str, Any] = {
            "id": hex_id(0x2000 + n),
            "user_id": user_id,
            "filename": f"photo-{n}.jpg",
            "storage_key": f"{user_id}/{hex_id(0x2000 + n)}.jpg",
            "mimetype": "image/jpeg",
            "format": "jpeg",
            "size_bytes": 1000 + n,
            "width": 1600,
            "height": 1200,
            "status": JobStatus.READY,
            "created_at": created,
            "updated_at": created,
        }
        fields.update(overrides)
        return Image(**fields)

    return build
