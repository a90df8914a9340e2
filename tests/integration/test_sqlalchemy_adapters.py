"""What the SQL adapters must get right beyond the shared port contracts, on SQLite and on
PostgreSQL: concurrent claims, duplicate keys, timestamps, foreign keys and a database that is
down or locked."""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, make_url

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.adapters.sqlalchemy import (
    SqlAlchemyUnitOfWork,
    create_engine_from_url,
    session_factory,
)
from imgproc_core.adapters.sqlalchemy.schema import upgrade
from imgproc_core.domain.errors import Conflict, DependencyUnavailable, UsernameTaken
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.transformations import parse_transformation
from imgproc_core.domain.users import User
from tests.support.sql import migrated_unit_of_work_factory

logger = logging.getLogger(__name__)

UnitOfWorkFactory = Callable[[], SqlAlchemyUnitOfWork]

#: Not UTC on purpose: every timestamp must come back as the same instant, in UTC.
KOLKATA = timezone(timedelta(hours=5, minutes=30))
LOS_ANGELES = timezone(timedelta(hours=-8))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC))


@pytest.fixture
def uow_factory(database_url: str, clock: ManualClock) -> Iterator[UnitOfWorkFactory]:
    with migrated_unit_of_work_factory(database_url, clock) as factory:
        yield factory


def _id() -> str:
    return uuid.uuid4().hex


def _user(clock: ManualClock, username: str | None = None, **overrides: Any) -> User:
    fields: dict[str, Any] = {
        "id": _id(),
        "username": username or f"user-{uuid.uuid4().hex[:8]}",
        "password_hash": "fake$hash",
        "created_at": clock.now(),
    }
    fields.update(overrides)
    return User(**fields)


def _image(clock: ManualClock, user_id: str, **overrides: Any) -> Image:
    image_id = overrides.pop("id", None) or _id()
    fields: dict[str, Any] = {
        "id": image_id,
        "user_id": user_id,
        "filename": "photo.jpg",
        "storage_key": f"{user_id}/{image_id}.jpg",
        "mimetype": "image/jpeg",
        "format": "jpeg",
        "size_bytes": 1234,
        "width": 640,
        "height": 480,
        "status": JobStatus.READY,
        "created_at": clock.now(),
        "updated_at": clock.now(),
    }
    fields.update(overrides)
    return Image(**fields)


def _commit(
    uow_factory: UnitOfWorkFactory, change: Callable[[SqlAlchemyUnitOfWork], object]
) -> None:
    """One unit of work that makes ``change`` and commits."""
    with uow_factory() as uow:
        change(uow)
        uow.commit()


def _store(uow_factory: UnitOfWorkFactory, *entities: User | Image) -> None:
    with uow_factory() as uow:
        for entity in entities:
            if isinstance(entity, User):
                uow.users.add(entity)
            else:
                uow.images.add(entity)
        uow.commit()


def _queue_jobs(uow_factory: UnitOfWorkFactory, clock: ManualClock, n: int) -> list[str]:
    owner = _user(clock)
    source = _image(clock, owner.id)
    derivatives = [
        _image(clock, owner.id, source_id=source.id, status=JobStatus.PENDING) for _ in range(n)
    ]
    with uow_factory() as uow:
        uow.users.add(owner)
        uow.images.add(source)
        for derivative in derivatives:
            uow.images.add(derivative)
            uow.jobs.enqueue(
                TransformJob(image_id=derivative.id, source_id=source.id, user_id=owner.id)
            )
        uow.commit()
    return [derivative.id for derivative in derivatives]


def _claim(uow_factory: UnitOfWorkFactory, worker: str, lease: float = 600) -> TransformJob | None:
    with uow_factory() as uow:
        job = uow.jobs.claim(worker, lease)
        uow.commit()
    return job


# -- claims ----------------------------------------------------------------------------------


def test_threads_claiming_together_never_get_the_same_job(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    job_ids = _queue_jobs(uow_factory, clock, 120)
    workers = 8
    start = threading.Barrier(workers)

    def work(worker: str) -> list[str]:
        taken: list[str] = []
        start.wait(timeout=30)
        while (job := _claim(uow_factory, worker)) is not None:
            taken.append(job.id)
        return taken

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(work, [f"worker-{n}" for n in range(workers)]))

    claimed = Counter(job_id for taken in results for job_id in taken)
    logger.info("jobs claimed per worker: %s", [len(taken) for taken in results])
    assert [job_id for job_id, times in claimed.items() if times > 1] == []
    assert set(claimed) == set(job_ids)


@pytest.mark.integration
def test_postgres_connections_holding_open_claims_each_get_their_own_job(
    postgres_database_url: str, clock: ManualClock
) -> None:
    # Every claimer keeps its transaction open until all have claimed: the rows leased by the
    # others are locked, and SKIP LOCKED must step over them rather than wait or share.
    holders = 6
    with migrated_unit_of_work_factory(postgres_database_url, clock) as uow_factory:
        job_ids = _queue_jobs(uow_factory, clock, holders + 2)
        all_claimed = threading.Barrier(holders)

        def hold(worker: str) -> str | None:
            with uow_factory() as uow:
                job = uow.jobs.claim(worker, 600)
                all_claimed.wait(timeout=30)
                uow.commit()
            return job.id if job is not None else None

        with ThreadPoolExecutor(max_workers=holders) as pool:
            claimed = list(pool.map(hold, [f"holder-{n}" for n in range(holders)]))

        assert None not in claimed
        assert len(set(claimed)) == holders
        assert set(claimed) <= set(job_ids)
        left = {job.id for job in iter(lambda: _claim(uow_factory, "late"), None)}
        assert left == set(job_ids) - set(claimed)


class ZonedClock:
    """The instants of another clock, told in another time zone."""

    def __init__(self, clock: ManualClock, zone: timezone) -> None:
        self._clock = clock
        self._zone = zone

    def now(self) -> datetime:
        return self._clock.now().astimezone(self._zone)


def test_leases_follow_the_injected_clock_whatever_its_time_zone(
    database_url: str, uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    (job_id,) = _queue_jobs(uow_factory, clock, 1)

    with (
        migrated_unit_of_work_factory(database_url, ZonedClock(clock, KOLKATA)) as in_kolkata,
        migrated_unit_of_work_factory(database_url, ZonedClock(clock, LOS_ANGELES)) as in_la,
    ):
        first = _claim(in_kolkata, "w1", lease=30)
        clock.advance(29)
        too_early = _claim(in_la, "w2", lease=30)
        clock.advance(2)
        again = _claim(in_la, "w2", lease=30)

    assert first is not None
    assert first.id == job_id
    assert too_early is None
    assert again is not None
    assert again.id == job_id


# -- duplicate keys and foreign keys -------------------------------------------------------------


def test_a_taken_username_is_username_taken_and_a_taken_id_a_conflict(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    alice = _user(clock, "alice")
    _store(uow_factory, alice)

    with pytest.raises(UsernameTaken) as taken:
        _commit(uow_factory, lambda uow: uow.users.add(_user(clock, "alice")))
    with pytest.raises(Conflict) as same_id:
        _commit(uow_factory, lambda uow: uow.users.add(replace(alice, username="alice2")))

    assert type(taken.value) is UsernameTaken
    assert type(same_id.value) is Conflict
    with uow_factory() as uow:
        assert uow.users.get_by_username("alice2") is None


def test_registrations_racing_for_one_name_leave_exactly_one_winner(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    racers = 4
    ready = threading.Barrier(racers)

    def register(n: int) -> str:
        try:
            with uow_factory() as uow:
                uow.users.add(_user(clock, "popular", password_hash=f"hash-{n}"))
                ready.wait(timeout=30)
                uow.commit()
        except UsernameTaken:
            return "taken"
        return "registered"

    with ThreadPoolExecutor(max_workers=racers) as pool:
        outcomes = sorted(pool.map(register, range(racers)))

    assert outcomes == ["registered"] + ["taken"] * (racers - 1)


def test_a_duplicate_image_is_a_conflict_even_when_already_loaded(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    owner = _user(clock)
    image = _image(clock, owner.id)
    _store(uow_factory, owner, image)

    duplicate = replace(image, filename="again.jpg")

    def read_then_add(uow: SqlAlchemyUnitOfWork) -> None:
        # The duplicate meets the copy the session holds rather than the database's row.
        assert uow.images.get(image.id) is not None
        uow.images.add(duplicate)

    with pytest.raises(Conflict):
        _commit(uow_factory, lambda uow: uow.images.add(duplicate))
    with pytest.raises(Conflict):
        _commit(uow_factory, read_then_add)
    with uow_factory() as uow:
        assert uow.images.get(image.id) == image


def test_rows_must_name_rows_that_exist(uow_factory: UnitOfWorkFactory, clock: ManualClock) -> None:
    owner = _user(clock)
    _store(uow_factory, owner)

    orphan_job = TransformJob(image_id=_id(), source_id=_id(), user_id=owner.id)

    with pytest.raises(Conflict):
        _commit(uow_factory, lambda uow: uow.images.add(_image(clock, _id())))
    with pytest.raises(Conflict):
        _commit(uow_factory, lambda uow: uow.images.add(_image(clock, owner.id, source_id=_id())))
    with pytest.raises(Conflict):
        _commit(uow_factory, lambda uow: uow.jobs.enqueue(orphan_job))
    with uow_factory() as uow:
        assert uow.images.list_for_user(owner.id, offset=0, limit=10) == ([], 0)
        assert uow.jobs.pending_count() == 0


def test_deleting_an_original_takes_its_derivatives_and_their_queued_jobs(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    job_ids = _queue_jobs(uow_factory, clock, 3)
    with uow_factory() as uow:
        derivative = uow.images.get(job_ids[0])
        assert derivative is not None
        assert derivative.source_id is not None
        source_id = derivative.source_id
        other_owner = _user(clock)
        uow.users.add(other_owner)
        untouched = _image(clock, other_owner.id)
        uow.images.add(untouched)
        uow.commit()

    with uow_factory() as uow:
        uow.images.delete(source_id)
        uow.commit()

    with uow_factory() as uow:
        assert [uow.images.get(job_id) for job_id in job_ids] == [None, None, None]
        assert uow.jobs.pending_count() == 0
        assert uow.images.get(untouched.id) == untouched


# -- timestamps and transformations ------------------------------------------------------------


def test_timestamps_come_back_as_the_same_instant_in_utc(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    moment = datetime(2026, 7, 4, 23, 59, 58, 123_456, tzinfo=KOLKATA)
    user = _user(clock, created_at=moment)
    image = _image(clock, user.id, created_at=moment, updated_at=moment + timedelta(hours=1))
    _store(uow_factory, user, image)

    with uow_factory() as uow:
        stored_user = uow.users.get(user.id)
        stored_image = uow.images.get(image.id)

    assert stored_user is not None
    assert stored_image is not None
    for stored, expected in [
        (stored_user.created_at, moment),
        (stored_image.created_at, moment),
        (stored_image.updated_at, moment + timedelta(hours=1)),
    ]:
        assert stored == expected
        assert stored.tzinfo is not None
        assert stored.utcoffset() == timedelta(0)
        assert stored.microsecond == expected.microsecond


def test_newest_first_holds_across_time_zones(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    # Told in local time, the older image reads later: 10:00+05:30 is 04:30 UTC, 06:00 UTC is
    # later. Comparing the written text instead of the instants would get the order wrong.
    owner = _user(clock)
    older = _image(clock, owner.id, created_at=datetime(2026, 5, 1, 10, 0, tzinfo=KOLKATA))
    newer = _image(clock, owner.id, created_at=datetime(2026, 5, 1, 6, 0, tzinfo=UTC))
    _store(uow_factory, owner, older, newer)

    with uow_factory() as uow:
        images, total = uow.images.list_for_user(owner.id, offset=0, limit=10)

    assert [image.id for image in images] == [newer.id, older.id]
    assert total == 2


def test_a_naive_timestamp_is_refused_before_it_reaches_the_database(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    naive = _user(clock, created_at=datetime(2026, 1, 1, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        _commit(uow_factory, lambda uow: uow.users.add(naive))


def test_a_transformation_comes_back_equal_from_its_canonical_json(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    owner = _user(clock)
    source = _image(clock, owner.id)
    transformation = parse_transformation(
        b'{"transformations": {"resize": {"width": 300}, "rotate": -90,'
        b' "filters": {"sepia": true, "blur": 2.5},'
        b' "watermark": {"text": "\\u00a9 \\u00e9t\\u00e9", "position": "top"}}}'
    ).resolved("jpeg")
    derivative = _image(
        clock,
        owner.id,
        source_id=source.id,
        transformation=transformation,
        status=JobStatus.PENDING,
    )
    _store(uow_factory, owner, source, derivative)

    with uow_factory() as uow:
        stored = uow.images.get(derivative.id)

    assert stored is not None
    assert stored.transformation == transformation


# -- a database that is down, gone or locked ---------------------------------------------------


def _uow_factory_on(engine: Engine, clock: ManualClock) -> UnitOfWorkFactory:
    sessions = session_factory(engine)
    return lambda: SqlAlchemyUnitOfWork(sessions, clock)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_postgres_that_does_not_answer_is_a_dependency_error(clock: ManualClock) -> None:
    engine = create_engine_from_url(f"postgres://postgres@127.0.0.1:{_closed_port()}/imgproc")
    uow_factory = _uow_factory_on(engine, clock)
    try:
        with pytest.raises(DependencyUnavailable) as on_read:
            _commit(uow_factory, lambda uow: uow.users.get(_id()))
        with pytest.raises(DependencyUnavailable) as on_commit:
            _commit(uow_factory, lambda uow: uow.users.add(_user(clock)))
        with pytest.raises(DependencyUnavailable) as on_claim:
            _commit(uow_factory, lambda uow: uow.jobs.claim("w", 30))
    finally:
        engine.dispose()

    for raised in (on_read, on_commit, on_claim):
        assert raised.value.dependency == "database"
        assert raised.value.retry_after > 0


@pytest.mark.integration
def test_a_connection_lost_mid_transaction_is_a_dependency_error_and_then_heals(
    postgres_database_url: str, postgres_url: str, clock: ManualClock
) -> None:
    admin = create_engine_from_url(postgres_url, isolation_level="AUTOCOMMIT")
    database = make_url(postgres_database_url).database
    with migrated_unit_of_work_factory(postgres_database_url, clock) as uow_factory:
        user = _user(clock)
        _store(uow_factory, user)

        def lose_the_connection_midway(uow: SqlAlchemyUnitOfWork) -> None:
            assert uow.users.get(user.id) == user
            with admin.connect() as connection:
                connection.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
                )
            uow.users.list()

        try:
            with pytest.raises(DependencyUnavailable) as raised:
                _commit(uow_factory, lose_the_connection_midway)
        finally:
            admin.dispose()

        assert raised.value.dependency == "database"
        # The pool replaces the dead connection: the next unit of work just works.
        with uow_factory() as uow:
            assert uow.users.get(user.id) == user


def test_a_sqlite_file_that_cannot_be_opened_is_a_dependency_error(
    tmp_path: Path, clock: ManualClock
) -> None:
    (tmp_path / "a-folder.db").mkdir()
    engine = create_engine_from_url(f"sqlite:///{tmp_path / 'a-folder.db'}")
    try:
        with pytest.raises(DependencyUnavailable):
            _commit(_uow_factory_on(engine, clock), lambda uow: uow.images.get(_id()))
    finally:
        engine.dispose()


def test_sqlite_locked_past_the_busy_timeout_is_a_dependency_error(
    sqlite_url: str, clock: ManualClock
) -> None:
    upgrade(sqlite_url)
    engine = create_engine_from_url(sqlite_url, sqlite_busy_timeout_ms=200)
    uow_factory = _uow_factory_on(engine, clock)
    blocker = sqlite3.connect(make_url(sqlite_url).database or "", isolation_level=None)
    seen_while_locked: list[list[User]] = []

    def read_then_write(uow: SqlAlchemyUnitOfWork) -> None:
        # Readers still read while another connection writes (WAL).
        seen_while_locked.append(list(uow.users.list()))
        uow.users.add(_user(clock))

    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(DependencyUnavailable) as raised:
            _commit(uow_factory, read_then_write)
        blocker.execute("ROLLBACK")
        _commit(uow_factory, lambda uow: uow.users.add(_user(clock, "after")))
        with uow_factory() as uow:
            assert [user.username for user in uow.users.list()] == ["after"]
    finally:
        blocker.close()
        engine.dispose()

    assert seen_while_locked == [[]]
    assert raised.value.dependency == "database"
    assert "locked" in raised.value.message


def test_a_sqlite_engine_keeps_a_connection_for_every_server_thread(sqlite_url: str) -> None:
    """The HTTP server runs handlers on up to 40 threads at once (anyio's default): each gets
    a connection without waiting, and the next burst reuses them instead of opening more."""
    threads = 40
    engine = create_engine_from_url(sqlite_url)
    opened: list[object] = []
    event.listen(engine, "connect", lambda connection, record: opened.append(connection))
    all_holding = threading.Barrier(threads, timeout=20)

    def hold_a_connection(_: int) -> int:
        with engine.connect() as connection:
            all_holding.wait()
            return int(connection.exec_driver_sql("SELECT 1").scalar_one())

    try:
        with ThreadPoolExecutor(threads) as pool:
            first = list(pool.map(hold_a_connection, range(threads)))
            opened_by_the_first = len(opened)
            all_holding.reset()
            second = list(pool.map(hold_a_connection, range(threads)))
    finally:
        engine.dispose()

    assert first == second == [1] * threads
    assert opened_by_the_first == threads
    assert len(opened) == threads


def test_sqlite_writers_of_one_process_queue_and_all_get_in(
    sqlite_url: str, clock: ManualClock
) -> None:
    """Threads writing at once (a burst of uploads) queue on the engine's writer lock rather
    than in SQLite's busy handler: every one of them commits, and the lock is free after."""
    upgrade(sqlite_url)
    engine = create_engine_from_url(sqlite_url, sqlite_busy_timeout_ms=2000)
    uow_factory = _uow_factory_on(engine, clock)
    writers = 24
    start = threading.Barrier(writers, timeout=20)

    def register(index: int) -> None:
        start.wait()
        _commit(uow_factory, lambda uow: uow.users.add(_user(clock, f"writer-{index}")))

    try:
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(register, range(writers)))
        with uow_factory() as uow:
            assert uow.users.count() == writers
        with engine.connect() as connection:
            dbapi = connection.connection.dbapi_connection
            assert dbapi is not None
            assert not dbapi.writer.locked()
    finally:
        engine.dispose()


def test_the_sqlite_writer_lock_is_given_back_by_commit_rollback_and_failure(
    sqlite_url: str, clock: ManualClock
) -> None:
    upgrade(sqlite_url)
    engine = create_engine_from_url(sqlite_url)
    uow_factory = _uow_factory_on(engine, clock)
    taken: list[bool] = []

    def note_lock() -> None:
        with engine.connect() as connection:
            dbapi = connection.connection.dbapi_connection
            taken.append(bool(dbapi is not None and dbapi.writer.locked()))

    try:
        _commit(uow_factory, lambda uow: uow.users.add(_user(clock, "committed")))
        note_lock()
        with uow_factory() as uow:
            uow.users.add(_user(clock, "rolled-back"))
            uow.jobs.pending_count()  # flushes: the write transaction holds the lock
            note_lock()
        note_lock()
        with pytest.raises(UsernameTaken):
            _commit(uow_factory, lambda uow: uow.users.add(_user(clock, "committed")))
        note_lock()
        _commit(uow_factory, lambda uow: uow.users.add(_user(clock, "last")))
        with uow_factory() as uow:
            names = sorted(user.username for user in uow.users.list())
    finally:
        engine.dispose()

    assert taken == [False, True, False, False]
    assert names == ["committed", "last"]


# -- transactions ------------------------------------------------------------------------------


def test_a_unit_of_work_that_read_before_another_committed_can_still_write(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    # SQLite cannot move an old read snapshot forward to write; the adapter must begin the
    # writing transaction afresh rather than fail with "database is locked".
    owner = _user(clock)
    _store(uow_factory, owner)

    with uow_factory() as slow:
        assert slow.users.get(owner.id) == owner
        _store(uow_factory, _image(clock, owner.id))
        slow.images.add(_image(clock, owner.id))
        slow.commit()

    with uow_factory() as uow:
        _, total = uow.images.list_for_user(owner.id, offset=0, limit=10)
    assert total == 2


def test_readers_do_not_wait_for_an_open_writer(
    uow_factory: UnitOfWorkFactory, clock: ManualClock
) -> None:
    owner = _user(clock)
    _store(uow_factory, owner)

    with uow_factory() as writer:
        writer.users.add(_user(clock))
        writer.jobs.pending_count()  # flushes: the writer now holds its locks
        with ThreadPoolExecutor(max_workers=1) as pool:
            seen = pool.submit(lambda: _list_usernames(uow_factory)).result(timeout=30)
        writer.commit()

    assert seen == [owner.username]


def _list_usernames(uow_factory: UnitOfWorkFactory) -> list[str]:
    with uow_factory() as uow:
        return [user.username for user in uow.users.list()]
