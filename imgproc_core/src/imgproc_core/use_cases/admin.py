"""What an operator does: manage accounts, clear out a user's images, look at jobs and queue
failed ones again, and count what the service holds.

These run on the same ports as the service's own use cases, so they work the same on every
profile: the queue table and the production profile's outbox are both ``uow.jobs``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from imgproc_core.domain.errors import (
    InvalidStateTransition,
    InvalidUsername,
    JobNotFound,
    UserNotFound,
)
from imgproc_core.domain.images import Image, Page, page_offset
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.users import User, normalize_username
from imgproc_core.ports import (
    BlobStorage,
    Clock,
    ImageTotals,
    UnitOfWork,
    UnitOfWorkFactory,
    UrlCache,
    UserRepository,
)
from imgproc_core.use_cases.images import ImageRemoval
from imgproc_core.use_cases.webhooks import WebhookEvents

__all__ = [
    "ADMIN_PAGE_LIMIT",
    "TOKENS_REFUSED_WITHIN_SECONDS",
    "DisableUser",
    "DisableUserCommand",
    "GetServiceStats",
    "ListJobs",
    "ListJobsQuery",
    "ListUserImages",
    "ListUsers",
    "ListUsersQuery",
    "PurgeReport",
    "PurgeUserImages",
    "PurgeUserImagesCommand",
    "RetryFailedJobs",
    "RetryFailedJobsCommand",
    "RetryJob",
    "RetryJobCommand",
    "ServiceStats",
    "ServiceStatsQuery",
    "UserImagesQuery",
    "user_named",
]

logger = logging.getLogger(__name__)

#: The longest page an operator's listing returns.
ADMIN_PAGE_LIMIT: Final = 1000
#: How many images one transaction of a purge deletes, and how many jobs one of a retry queues.
BATCH_SIZE: Final = 100


def user_named(users: UserRepository, username: str) -> User:
    """The user called ``username`` (compared as registration stores it, case-insensitively);
    :class:`UserNotFound` otherwise, also for a name no user could have."""
    try:
        normalized = normalize_username(username)
    except InvalidUsername:
        raise UserNotFound(f"no user {username!r}") from None
    user = users.get_by_username(normalized)
    if user is None:
        raise UserNotFound(f"no user {username!r}")
    return user


# -- accounts ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListUsersQuery:
    page: int = 1
    limit: int = 100


class ListUsers:
    """A page of the accounts, in the order they registered, with how many there are."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: ListUsersQuery) -> Page[User]:
        offset = page_offset(query.page, query.limit, ADMIN_PAGE_LIMIT)
        with self._uow_factory() as uow:
            users = uow.users.list(offset=offset, limit=query.limit)
            total = uow.users.count()
        return Page(items=list(users), page=query.page, limit=query.limit, total=total)


#: How soon a disabled user's tokens are refused, at the latest. A shell may take a token it
#: has checked as good for this long without asking again (the HTTP API does: a check is a
#: database query, several times what the request it guards costs), never longer.
TOKENS_REFUSED_WITHIN_SECONDS: Final = 2


@dataclass(frozen=True, slots=True)
class DisableUserCommand:
    username: str


class DisableUser:
    """Lock an account: from now on its password does not log in, and the tokens it holds are
    refused within :data:`TOKENS_REFUSED_WITHIN_SECONDS` (a token checked just before may be
    taken as good until then). Its images stay where they are.

    Disabling a disabled account changes nothing. Returns the account as it is now.
    """

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, command: DisableUserCommand) -> User:
        with self._uow_factory() as uow:
            user = user_named(uow.users, command.username)
            if not user.disabled:
                user.disabled = True
                uow.users.update(user)
                uow.commit()
        return user


# -- a user's images -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserImagesQuery:
    username: str
    page: int = 1
    limit: int = 100


class ListUserImages:
    """A page of one user's images, originals and derivatives, newest first."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: UserImagesQuery) -> Page[Image]:
        offset = page_offset(query.page, query.limit, ADMIN_PAGE_LIMIT)
        with self._uow_factory() as uow:
            user = user_named(uow.users, query.username)
            items, total = uow.images.list_for_user(user.id, offset=offset, limit=query.limit)
        return Page(items=list(items), page=query.page, limit=query.limit, total=total)


@dataclass(frozen=True, slots=True)
class PurgeUserImagesCommand:
    username: str


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge removed; ``size_bytes`` is what the removed images held."""

    user: User
    originals: int
    derived: int
    size_bytes: int
    #: Blobs whose removal failed after their rows were gone (logged, with their keys).
    blobs_left: int


class PurgeUserImages:
    """Delete every image of one user, originals and derivatives, rows and blobs; the account
    stays.

    It goes through the images a batch at a time, with the :class:`ImageRemoval` that
    ``DeleteImage`` deletes one with: each batch's rows (an original's derivatives with it) go
    in one transaction, then their blobs, so no row is ever left pointing at missing bytes. A
    blob (or cache entry) that cannot be removed after its row is gone is logged and counted in
    :attr:`PurgeReport.blobs_left`; it is unreachable and lies under the user's prefix. Images
    uploaded while the purge runs may be purged too.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        storage: BlobStorage,
        cache: UrlCache,
        batch_size: int = BATCH_SIZE,
        events: WebhookEvents | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._uow_factory = uow_factory
        self._removal = ImageRemoval(storage, cache, events)
        self._batch_size = batch_size

    def __call__(self, command: PurgeUserImagesCommand) -> PurgeReport:
        with self._uow_factory() as uow:
            user = user_named(uow.users, command.username)
        originals = derived = size_bytes = blobs_left = 0
        while removed := self._delete_rows(user.id):
            blobs_left += self._removal.remove_files(removed)
            for image in removed:
                size_bytes += image.size_bytes
                if image.is_transformed:
                    derived += 1
                else:
                    originals += 1
        return PurgeReport(
            user=user,
            originals=originals,
            derived=derived,
            size_bytes=size_bytes,
            blobs_left=blobs_left,
        )

    def _delete_rows(self, user_id: str) -> list[Image]:
        with self._uow_factory() as uow:
            batch, _ = uow.images.list_for_user(user_id, offset=0, limit=self._batch_size)
            removed = self._removal.delete_rows(uow, batch)
            uow.commit()
        return removed


# -- jobs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListJobsQuery:
    status: JobStatus | None = None
    page: int = 1
    limit: int = 100


class ListJobs:
    """A page of jobs, as the derived images they render, oldest first: every one, or those in
    one status. The FAILED ones are the parked jobs, each with the reason it failed."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: ListJobsQuery) -> Page[Image]:
        offset = page_offset(query.page, query.limit, ADMIN_PAGE_LIMIT)
        with self._uow_factory() as uow:
            items = uow.images.list_derived(status=query.status, offset=offset, limit=query.limit)
            totals = uow.images.totals()
        total = totals.derived if query.status is None else totals.derived_by_status[query.status]
        return Page(items=list(items), page=query.page, limit=query.limit, total=total)


def _queue_again(uow: UnitOfWork, image: Image, clock: Clock) -> None:
    """Back to PENDING, and a fresh job with its attempts counted from zero, in ``uow``."""
    assert image.source_id is not None
    image.requeue(clock.now())
    uow.images.update(image)
    uow.jobs.enqueue(
        TransformJob(image_id=image.id, source_id=image.source_id, user_id=image.user_id)
    )


@dataclass(frozen=True, slots=True)
class RetryJobCommand:
    #: The job's id, which is the id of the derived image it renders.
    job_id: str


class RetryJob:
    """Queue a failed job again: its image goes from FAILED back to PENDING and the job is
    enqueued, in one transaction, so neither exists without the other. The job starts over
    with all its attempts.

    The embedded profile's worker threads take it from the queue table; in the production
    profile the same table is the outbox, which the relay publishes to the job topic.
    :class:`JobNotFound` for an id that names no derived image; :class:`InvalidStateTransition`
    for a job that is not FAILED (waiting, running or done).
    """

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    def __call__(self, command: RetryJobCommand) -> Image:
        with self._uow_factory() as uow:
            image = uow.images.get(command.job_id)
            if image is None or not image.is_transformed:
                raise JobNotFound(f"no job {command.job_id!r}")
            if image.status is not JobStatus.FAILED:
                raise InvalidStateTransition(
                    f"job {image.id} is {image.status.value}; only a FAILED job is retried"
                )
            _queue_again(uow, image, self._clock)
            uow.commit()
        return image


@dataclass(frozen=True, slots=True)
class RetryFailedJobsCommand:
    """Every job that is FAILED when the call starts."""


class RetryFailedJobs:
    """Queue every failed job again, as :class:`RetryJob` does one; returns the images retried.

    The failed jobs are listed first and then retried a batch per transaction, so a job that
    fails again while the call runs is not retried twice, and one retried or deleted by
    someone else meanwhile is skipped.
    """

    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, batch_size: int = BATCH_SIZE
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._uow_factory = uow_factory
        self._clock = clock
        self._batch_size = batch_size

    def __call__(self, command: RetryFailedJobsCommand) -> list[Image]:
        failed = self._failed_ids()
        retried: list[Image] = []
        for start in range(0, len(failed), self._batch_size):
            with self._uow_factory() as uow:
                for job_id in failed[start : start + self._batch_size]:
                    image = uow.images.get(job_id)
                    if image is None or image.status is not JobStatus.FAILED:
                        continue
                    _queue_again(uow, image, self._clock)
                    retried.append(image)
                uow.commit()
        return retried

    def _failed_ids(self) -> list[str]:
        ids: list[str] = []
        with self._uow_factory() as uow:
            while True:
                page = uow.images.list_derived(
                    status=JobStatus.FAILED, offset=len(ids), limit=self._batch_size
                )
                ids.extend(image.id for image in page)
                if len(page) < self._batch_size:
                    return ids


# -- totals --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceStatsQuery:
    """Everything the service holds, counted now."""


@dataclass(frozen=True, slots=True)
class ServiceStats:
    users: int
    disabled_users: int
    images: ImageTotals
    #: Jobs in the queue table (the outbox, in the production profile), leased or not.
    queued_jobs: int

    @property
    def images_by_status(self) -> dict[JobStatus, int]:
        """Every image by status, originals (always READY) and derived ones alike; every
        status is a key."""
        counts = {status: self.images.derived_by_status.get(status, 0) for status in JobStatus}
        counts[JobStatus.READY] += self.images.originals
        return counts


class GetServiceStats:
    """Accounts, images, their bytes and the jobs by status, read in one transaction: what an
    operator's ``imgproc stats`` shows and what the API's ``/metrics`` exports."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, query: ServiceStatsQuery) -> ServiceStats:
        with self._uow_factory() as uow:
            return ServiceStats(
                users=uow.users.count(),
                disabled_users=uow.users.count(disabled=True),
                images=uow.images.totals(),
                queued_jobs=uow.jobs.pending_count(),
            )
