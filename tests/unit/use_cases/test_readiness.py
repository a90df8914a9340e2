"""Readiness: one cheap question to one dependency a call."""

from __future__ import annotations

from unittest.mock import Mock

import pytest

from imgproc_core.adapters.memory import InMemoryBlobStorage, InMemoryUrlCache, ManualClock
from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.ports import UnitOfWork, UnitOfWorkFactory, UrlCache
from imgproc_core.use_cases import CheckReadiness, Dependency, ReadinessQuery
from imgproc_core.use_cases.readiness import PROBE_KEY


class Asked(InMemoryBlobStorage):
    """Notes the keys it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def exists(self, key: str) -> bool:
        self.asked.append(key)
        return super().exists(key)


def down_database() -> UnitOfWork:
    raise DependencyUnavailable("the database is down", "database")


def test_every_dependency_that_answers_is_ready(uow_factory: UnitOfWorkFactory) -> None:
    storage = Asked()
    check = CheckReadiness(uow_factory, storage, InMemoryUrlCache(ManualClock()))

    for dependency in Dependency:
        check(ReadinessQuery(dependency))

    assert storage.asked == [PROBE_KEY]


@pytest.mark.parametrize(
    ("dependency", "database", "down"),
    [(Dependency.DATABASE, True, "database"), (Dependency.CACHE, False, "cache")],
)
def test_a_dependency_that_does_not_answer_raises_what_it_raised(
    uow_factory: UnitOfWorkFactory, dependency: Dependency, database: bool, down: str
) -> None:
    # A cache that does not answer: a failure no working fake has.
    down_cache = Mock(spec=UrlCache)
    down_cache.get.side_effect = DependencyUnavailable("redis is down", "cache")
    check = CheckReadiness(
        down_database if database else uow_factory, InMemoryBlobStorage(), down_cache
    )
    with pytest.raises(DependencyUnavailable) as raised:
        check(ReadinessQuery(dependency))
    assert raised.value.dependency == down
    # The others are asked nothing of the one that is down.
    check(ReadinessQuery(Dependency.STORAGE))
