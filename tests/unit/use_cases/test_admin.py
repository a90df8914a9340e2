"""An operator's use cases: accounts, purging a user's images, failed jobs, totals."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imgproc_core.adapters.memory import (
    InMemoryBlobStorage,
    InMemoryDatabase,
    InMemoryPasswordHasher,
    InMemoryTokenIssuer,
    InMemoryUnitOfWork,
    InMemoryUrlCache,
    ManualClock,
    fake_image_bytes,
)
from imgproc_core.domain.errors import (
    DependencyUnavailable,
    InvalidCredentials,
    InvalidPagination,
    InvalidStateTransition,
    InvalidToken,
    JobNotFound,
    UserNotFound,
)
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.transformations import Resize, Transformation
from imgproc_core.ports import JobQueue, UnitOfWork, UnitOfWorkFactory
from imgproc_core.use_cases import (
    ADMIN_PAGE_LIMIT,
    Authenticate,
    AuthenticateCommand,
    DisableUser,
    DisableUserCommand,
    GetServiceStats,
    ListJobs,
    ListJobsQuery,
    ListUserImages,
    ListUsers,
    ListUsersQuery,
    LogIn,
    LogInCommand,
    ProcessTransformJob,
    PurgeUserImages,
    PurgeUserImagesCommand,
    RegisterUser,
    RegisterUserCommand,
    RequestTransform,
    RequestTransformCommand,
    RetryFailedJobs,
    RetryFailedJobsCommand,
    RetryJob,
    RetryJobCommand,
    ServiceStatsQuery,
    UserImagesQuery,
    download_cache_key,
)

Upload = Callable[..., Image]


def stored(uow_factory: UnitOfWorkFactory, image_id: str) -> Image | None:
    with uow_factory() as uow:
        return uow.images.get(image_id)


def claim_all(uow_factory: UnitOfWorkFactory) -> list[TransformJob]:
    with uow_factory() as uow:
        jobs = uow.jobs.claim_batch("test", 60, 1000)
        uow.commit()
    return jobs


def ack_all(uow_factory: UnitOfWorkFactory) -> None:
    """What a worker does once it has run the jobs: take them off the queue."""
    with uow_factory() as uow:
        for job in uow.jobs.claim_batch("test", 60, 1000):
            uow.jobs.ack(job.id)
        uow.commit()


def job_for(image: Image) -> TransformJob:
    assert image.source_id is not None
    return TransformJob(image_id=image.id, source_id=image.source_id, user_id=image.user_id)


Derive = Callable[[Image, int], Image]


@pytest.fixture
def derive(request_transform: RequestTransform, clock: ManualClock) -> Derive:
    """Ask for a derivative of ``source`` resized to ``width``, a second after the last."""

    def request(source: Image, width: int) -> Image:
        clock.advance(1)
        return request_transform(
            RequestTransformCommand(
                source.user_id, source.id, Transformation(resize=Resize(width=width))
            )
        )

    return request


@pytest.fixture
def failed_job(
    derive: Derive, process: ProcessTransformJob, storage: InMemoryBlobStorage
) -> Derive:
    """A derivative whose job ran on a corrupt source and failed for good; the source's bytes
    are restored afterwards, so a retry can succeed."""

    def fail(source: Image, width: int) -> Image:
        derived = derive(source, width)
        good = storage.get(source.storage_key)
        storage.put(source.storage_key, good[:-7], source.mimetype)
        outcome = process(job_for(derived))
        storage.put(source.storage_key, good, source.mimetype)
        assert outcome.image is not None
        assert outcome.image.status is JobStatus.FAILED
        return outcome.image

    return fail


# -- accounts ------------------------------------------------------------------------------------


def test_users_are_listed_in_order_of_registration_with_a_total(
    uow_factory: UnitOfWorkFactory, register_user: RegisterUser, clock: ManualClock
) -> None:
    for name in ("carol", "alice", "bob"):
        clock.advance(1)
        register_user(RegisterUserCommand(name, "correct horse"))
    list_users = ListUsers(uow_factory)

    first = list_users(ListUsersQuery(page=1, limit=2))
    second = list_users(ListUsersQuery(page=2, limit=2))

    assert [user.username for user in first.items] == ["carol", "alice"]
    assert [user.username for user in second.items] == ["bob"]
    assert (first.total, second.total) == (3, 3)


@pytest.mark.parametrize(("page", "limit"), [(0, 10), (1, 0), (1, ADMIN_PAGE_LIMIT + 1)])
def test_a_page_out_of_range_is_refused(
    uow_factory: UnitOfWorkFactory, page: int, limit: int
) -> None:
    with pytest.raises(InvalidPagination):
        ListUsers(uow_factory)(ListUsersQuery(page=page, limit=limit))
    with pytest.raises(InvalidPagination):
        ListJobs(uow_factory)(ListJobsQuery(page=page, limit=limit))


def test_a_disabled_user_can_neither_log_in_nor_use_a_token_issued_before(
    uow_factory: UnitOfWorkFactory,
    register_user: RegisterUser,
    hasher: InMemoryPasswordHasher,
    tokens: InMemoryTokenIssuer,
) -> None:
    session = register_user(RegisterUserCommand("alice", "correct horse"))
    log_in = LogIn(uow_factory, hasher, tokens)
    authenticate = Authenticate(uow_factory, tokens)
    assert authenticate(AuthenticateCommand(session.token.token)).user.id == session.user.id

    # Names are looked up as registration stores them.
    disabled = DisableUser(uow_factory)(DisableUserCommand("  ALICE "))

    assert disabled.disabled
    assert disabled.id == session.user.id
    with pytest.raises(InvalidCredentials):
        log_in(LogInCommand("alice", "correct horse"))
    with pytest.raises(InvalidToken):
        authenticate(AuthenticateCommand(session.token.token))
    with uow_factory() as uow:
        assert uow.users.count(disabled=True) == 1


def test_disabling_twice_changes_nothing_more(
    uow_factory: UnitOfWorkFactory, alice: str, bob: str
) -> None:
    disable = DisableUser(uow_factory)
    disable(DisableUserCommand("alice"))

    again = disable(DisableUserCommand("alice"))

    assert again.disabled
    with uow_factory() as uow:
        users = {user.username: user.disabled for user in uow.users.list()}
    assert users == {"alice": True, "bob": False}


@pytest.mark.parametrize("name", ["nobody", "no such name!", ""])
def test_an_unknown_user_is_not_found(uow_factory: UnitOfWorkFactory, name: str) -> None:
    with pytest.raises(UserNotFound):
        DisableUser(uow_factory)(DisableUserCommand(name))
    with pytest.raises(UserNotFound):
        ListUserImages(uow_factory)(UserImagesQuery(name))
    with pytest.raises(UserNotFound):
        PurgeUserImages(uow_factory, InMemoryBlobStorage(), InMemoryUrlCache(ManualClock()))(
            PurgeUserImagesCommand(name)
        )


# -- a user's images -----------------------------------------------------------------------------


def test_a_users_images_are_listed_newest_first_with_their_derivatives(
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    derive: Derive,
    alice: str,
    bob: str,
) -> None:
    first, second = upload(alice), upload(alice)
    derived = derive(first, 100)
    upload(bob)
    list_images = ListUserImages(uow_factory)

    page = list_images(UserImagesQuery("alice", page=1, limit=2))
    rest = list_images(UserImagesQuery("alice", page=2, limit=2))

    assert [image.id for image in page.items] == [derived.id, second.id]
    assert [image.id for image in rest.items] == [first.id]
    assert page.total == 3


def test_a_purge_removes_every_row_and_blob_of_one_user_only(
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    derive: Derive,
    process: ProcessTransformJob,
    storage: InMemoryBlobStorage,
    cache: InMemoryUrlCache,
    alice: str,
    bob: str,
) -> None:
    originals = [upload(alice) for _ in range(3)]
    rendered = process(job_for(derive(originals[0], 100))).image
    assert rendered is not None
    assert rendered.status is JobStatus.READY
    pending = derive(originals[2], 50)
    bobs = upload(bob)
    bobs_derived = process(job_for(derive(bobs, 80))).image
    assert bobs_derived is not None
    cache.set(download_cache_key(alice, rendered.id), "cached-url", 60)
    alices = [*originals, rendered, pending]

    # Batches of one: the derivatives of an original go with it, whatever the batch size.
    report = PurgeUserImages(uow_factory, storage, cache, batch_size=1)(
        PurgeUserImagesCommand("alice")
    )

    assert (report.originals, report.derived, report.blobs_left) == (3, 2, 0)
    assert report.size_bytes == sum(image.size_bytes for image in alices)
    assert report.user.id == alice
    assert all(stored(uow_factory, image.id) is None for image in alices)
    assert not any(storage.exists(image.storage_key) for image in alices)
    assert cache.get(download_cache_key(alice, rendered.id)) is None
    assert stored(uow_factory, bobs.id) is not None
    assert storage.exists(bobs.storage_key)
    assert storage.exists(bobs_derived.storage_key)
    with uow_factory() as uow:
        assert uow.users.get(alice) is not None


def test_purging_a_user_without_images_removes_nothing(
    uow_factory: UnitOfWorkFactory,
    storage: InMemoryBlobStorage,
    cache: InMemoryUrlCache,
    upload: Upload,
    alice: str,
    bob: str,
) -> None:
    bobs = upload(bob)

    report = PurgeUserImages(uow_factory, storage, cache)(PurgeUserImagesCommand("alice"))

    assert (report.originals, report.derived, report.size_bytes) == (0, 0, 0)
    assert storage.exists(bobs.storage_key)


class BrokenDeletes(InMemoryBlobStorage):
    """Storage that stores and reads but cannot delete: a service that refuses deletes."""

    def delete(self, key: str) -> None:
        raise DependencyUnavailable("storage refuses deletes", "storage")

    def delete_prefix(self, prefix: str) -> int:
        raise DependencyUnavailable("storage refuses deletes", "storage")


def test_blobs_a_purge_cannot_remove_are_counted_and_the_rows_still_go(
    uow_factory: UnitOfWorkFactory, cache: InMemoryUrlCache, alice: str
) -> None:
    storage = BrokenDeletes()
    clock = ManualClock()
    image = Image(
        id="a" * 32,
        user_id=alice,
        filename="a.png",
        storage_key=f"{alice}/{'a' * 32}.png",
        mimetype="image/png",
        format="png",
        size_bytes=10,
        width=1,
        height=1,
        status=JobStatus.READY,
        created_at=clock.now(),
        updated_at=clock.now(),
    )
    storage.put(image.storage_key, fake_image_bytes("png", 1, 1), "image/png")
    with uow_factory() as uow:
        uow.images.add(image)
        uow.commit()

    report = PurgeUserImages(uow_factory, storage, cache)(PurgeUserImagesCommand("alice"))

    # The original's blob and its (empty) derivative folder.
    assert report.blobs_left == 2
    assert stored(uow_factory, image.id) is None
    assert storage.exists(image.storage_key)


# -- jobs ----------------------------------------------------------------------------------------


def test_jobs_are_the_derived_images_oldest_first_by_status(
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    derive: Derive,
    failed_job: Derive,
    process: ProcessTransformJob,
    alice: str,
) -> None:
    source = upload(alice)
    ready = process(job_for(derive(source, 100))).image
    failed = failed_job(source, 90)
    pending = derive(source, 80)
    assert ready is not None
    list_jobs = ListJobs(uow_factory)

    every = list_jobs(ListJobsQuery())
    dead = list_jobs(ListJobsQuery(status=JobStatus.FAILED))
    processing = list_jobs(ListJobsQuery(status=JobStatus.PROCESSING))

    assert [image.id for image in every.items] == [ready.id, failed.id, pending.id]
    assert every.total == 3
    assert [image.id for image in dead.items] == [failed.id]
    assert dead.total == 1
    assert dead.items[0].failure_reason is not None
    assert dead.items[0].failure_reason.startswith("corrupt_image")
    assert (processing.items, processing.total) == ([], 0)


def test_a_retried_job_is_pending_queued_again_and_renders(
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    failed_job: Derive,
    process: ProcessTransformJob,
    storage: InMemoryBlobStorage,
    clock: ManualClock,
    alice: str,
) -> None:
    source = upload(alice)
    failed = failed_job(source, 100)
    ack_all(uow_factory)

    retried = RetryJob(uow_factory, clock)(RetryJobCommand(failed.id))

    assert retried.status is JobStatus.PENDING
    again = stored(uow_factory, failed.id)
    assert again is not None
    assert again.status is JobStatus.PENDING
    jobs = claim_all(uow_factory)
    assert jobs == [job_for(failed)]
    assert jobs[0].attempts == 0
    outcome = process(jobs[0])
    assert outcome.image is not None
    assert outcome.image.status is JobStatus.READY
    assert storage.exists(outcome.image.storage_key)


def test_only_a_failed_job_is_retried(
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    derive: Derive,
    clock: ManualClock,
    alice: str,
) -> None:
    source = upload(alice)
    pending = derive(source, 100)
    retry = RetryJob(uow_factory, clock)

    with pytest.raises(InvalidStateTransition, match="PENDING"):
        retry(RetryJobCommand(pending.id))
    # An original is no job; nor is an id that names nothing.
    with pytest.raises(JobNotFound):
        retry(RetryJobCommand(source.id))
    with pytest.raises(JobNotFound):
        retry(RetryJobCommand("0" * 32))


class FailingEnqueue:
    """A job queue whose enqueue fails: the database gone between two statements."""

    def __init__(self, inner: JobQueue) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def enqueue(self, job: TransformJob) -> None:
        raise DependencyUnavailable("the database went away", "database")


def test_a_retry_whose_job_cannot_be_queued_leaves_the_image_failed(
    database: InMemoryDatabase,
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    failed_job: Derive,
    clock: ManualClock,
    alice: str,
) -> None:
    failed = failed_job(upload(alice), 100)
    ack_all(uow_factory)

    def broken_queue() -> UnitOfWork:
        uow = InMemoryUnitOfWork(database, clock)
        uow.jobs = FailingEnqueue(uow.jobs)  # type: ignore[assignment]
        return uow

    with pytest.raises(DependencyUnavailable):
        RetryJob(broken_queue, clock)(RetryJobCommand(failed.id))

    still = stored(uow_factory, failed.id)
    assert still is not None
    assert still.status is JobStatus.FAILED
    assert claim_all(uow_factory) == []


def test_every_failed_job_is_retried_once(
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    derive: Derive,
    failed_job: Derive,
    clock: ManualClock,
    alice: str,
    bob: str,
) -> None:
    failed = [
        failed_job(upload(owner), width) for owner, width in ((alice, 100), (bob, 90), (alice, 80))
    ]
    pending = derive(upload(bob), 70)
    ack_all(uow_factory)
    retry_all = RetryFailedJobs(uow_factory, clock, batch_size=2)

    retried = retry_all(RetryFailedJobsCommand())

    assert sorted(image.id for image in retried) == sorted(image.id for image in failed)
    assert all(image.status is JobStatus.PENDING for image in retried)
    assert sorted(job.id for job in claim_all(uow_factory)) == sorted(image.id for image in failed)
    pending_now = stored(uow_factory, pending.id)
    assert pending_now is not None
    assert pending_now.status is JobStatus.PENDING
    assert retry_all(RetryFailedJobsCommand()) == []


# -- totals --------------------------------------------------------------------------------------


def test_stats_count_users_images_bytes_and_jobs(
    uow_factory: UnitOfWorkFactory,
    upload: Upload,
    derive: Derive,
    failed_job: Derive,
    process: ProcessTransformJob,
    alice: str,
    bob: str,
) -> None:
    empty = GetServiceStats(uow_factory)(ServiceStatsQuery())
    assert (empty.images.originals, empty.images.derived, empty.queued_jobs) == (0, 0, 0)

    sources = [upload(alice), upload(bob)]
    ready = process(job_for(derive(sources[0], 100))).image
    assert ready is not None
    ack_all(uow_factory)
    failed_job(sources[1], 100)
    derive(sources[1], 50)
    DisableUser(uow_factory)(DisableUserCommand("bob"))

    stats = GetServiceStats(uow_factory)(ServiceStatsQuery())

    assert (stats.users, stats.disabled_users) == (2, 1)
    assert stats.images.originals == 2
    assert stats.images.original_bytes == sum(source.size_bytes for source in sources)
    assert stats.images.derived == 3
    assert stats.images.derived_bytes == ready.size_bytes > 0
    assert dict(stats.images.derived_by_status) == {
        JobStatus.PENDING: 1,
        JobStatus.PROCESSING: 0,
        JobStatus.READY: 1,
        JobStatus.FAILED: 1,
    }
    # The failed job and the pending one are still in the queue: nothing acknowledged them.
    assert stats.queued_jobs == 2
    # Every image by status, as the API's /metrics exports them: the originals are READY.
    assert stats.images_by_status == {
        JobStatus.PENDING: 1,
        JobStatus.PROCESSING: 0,
        JobStatus.READY: 3,
        JobStatus.FAILED: 1,
    }
    with uow_factory() as uow:
        assert stats.images_by_status == uow.images.count_by_status()
