"""Users, images and jobs in dictionaries, with transactions that behave like a database's.

A unit of work stages its writes and reads its own writes; others see them only after
:meth:`InMemoryUnitOfWork.commit`, which checks the unique keys again and then applies every
change at once, or none. Leaving the ``with`` block without committing throws the changes away.
Entities go in and come out as copies, so changing an entity read from a repository changes
nothing until it is written back with ``update`` and committed.

Unique keys are checked twice: at ``add`` against what this unit of work can see, and at
``commit`` against what others committed meanwhile. A collision raises
:class:`~imgproc_core.domain.errors.UsernameTaken` (a user's name) or
:class:`~imgproc_core.domain.errors.Conflict` (an id) from whichever comes first.

Isolation is "read committed": every read sees the latest committed state plus this unit of
work's own changes. Concurrent updates of one row: the last commit wins, as with plain SQL
``UPDATE`` statements. A claimed job is the exception, see :class:`InMemoryJobQueue`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Generic, Self, TypeVar

import msgspec

from imgproc_core.domain.errors import Conflict, ImageNotFound, UsernameTaken, UserNotFound
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.links import Link
from imgproc_core.domain.presets import Preset
from imgproc_core.domain.users import User
from imgproc_core.domain.webhook_records import (
    DeliveryAttempt,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
)
from imgproc_core.ports.clock import Clock
from imgproc_core.ports.persistence import (
    ImageRepository,
    ImageTotals,
    JobQueue,
    LinkRepository,
    PresetRepository,
    UserRepository,
    WebhookRepository,
)

_Row = TypeVar("_Row")


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job in the queue: due from ``due_at``, leased to ``leased_by`` until ``leased_until``."""

    job: TransformJob
    sequence: int
    enqueued_at: datetime
    due_at: datetime
    leased_by: str | None = None
    leased_until: datetime | None = None

    def claimable(self, now: datetime) -> bool:
        return self.due_at <= now and (self.leased_until is None or self.leased_until <= now)


class InMemoryDatabase:
    """The committed state that every unit of work made on it shares.

    ``lock`` guards every field; hold it to read them from outside a unit of work.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.images: dict[str, Image] = {}
        self.jobs: dict[str, QueuedJob] = {}
        self.links: dict[str, Link] = {}
        #: By ``preset_key(user_id, name)``.
        self.presets: dict[str, Preset] = {}
        self.webhook_endpoints: dict[str, WebhookEndpoint] = {}
        self.webhook_deliveries: dict[str, WebhookDelivery] = {}
        #: By ``delivery id/sequence``.
        self.webhook_attempts: dict[str, DeliveryAttempt] = {}
        #: Deliveries leased by a sender, and until when.
        self.webhook_leases: dict[str, tuple[str, datetime]] = {}
        #: Jobs claimed by a unit of work that has not ended, and which one: the others skip
        #: them, as ``SELECT ... FOR UPDATE SKIP LOCKED`` would.
        self.job_locks: dict[str, object] = {}
        self._sequence = itertools.count(1)

    def next_sequence(self) -> int:
        with self.lock:
            return next(self._sequence)


class _StagedTable(Generic[_Row]):
    """One table as a unit of work sees it: the committed rows under its own changes.

    Callers hold the database lock while they read, since ``committed`` is shared.
    """

    def __init__(self, committed: dict[str, _Row]) -> None:
        self.committed = committed
        #: Rows written in this unit of work; ``None`` marks a deleted row.
        self.changes: dict[str, _Row | None] = {}
        self.inserted: set[str] = set()

    def get(self, key: str) -> _Row | None:
        if key in self.changes:
            return self.changes[key]
        return self.committed.get(key)

    def rows(self) -> list[_Row]:
        return list(self.items().values())

    def items(self) -> dict[str, _Row]:
        merged = dict(self.committed)
        for key, row in self.changes.items():
            if row is None:
                merged.pop(key, None)
            else:
                merged[key] = row
        return merged

    def insert(self, key: str, row: _Row) -> None:
        self.changes[key] = row
        self.inserted.add(key)

    def write(self, key: str, row: _Row) -> None:
        self.changes[key] = row

    def remove(self, key: str) -> None:
        if key in self.inserted:
            self.inserted.discard(key)
            del self.changes[key]
        else:
            self.changes[key] = None

    def clear(self) -> None:
        self.changes.clear()
        self.inserted.clear()


def _require_aware(*moments: datetime) -> None:
    # Naive and aware datetimes cannot be compared, so one naive value would break every
    # later sort of the table; refuse it at the door.
    if any(moment.tzinfo is None or moment.utcoffset() is None for moment in moments):
        raise ValueError("datetimes stored in a repository are timezone-aware")


def _page(rows: Sequence[_Row], offset: int, limit: int) -> Sequence[_Row]:
    if offset < 0 or limit < 0:
        raise ValueError("offset and limit are not negative")
    return rows[offset : offset + limit]


class _Transaction:
    """The changes of one unit of work, and the job locks it holds."""

    def __init__(self, database: InMemoryDatabase, clock: Clock) -> None:
        self.database = database
        self.clock = clock
        self.users = _StagedTable(database.users)
        self.images = _StagedTable(database.images)
        self.jobs = _StagedTable(database.jobs)
        self.links = _StagedTable(database.links)
        self.presets = _StagedTable(database.presets)
        self.webhook_endpoints = _StagedTable(database.webhook_endpoints)
        self.webhook_deliveries = _StagedTable(database.webhook_deliveries)
        self.webhook_attempts = _StagedTable(database.webhook_attempts)
        #: Deliveries this unit of work leased, with the lease each had before (restored on
        #: rollback); and those it wrote back, whose lease goes at commit.
        self.webhook_leases_before: dict[str, tuple[str, datetime] | None] = {}
        self.webhook_released: set[str] = set()
        self.claimed: set[str] = set()

    def lock_job(self, job_id: str) -> None:
        if job_id in self.database.jobs:
            self.database.job_locks[job_id] = self
            self.claimed.add(job_id)

    def locked_by_other(self, job_id: str) -> bool:
        owner = self.database.job_locks.get(job_id)
        return owner is not None and owner is not self

    def commit(self) -> None:
        with self.database.lock:
            try:
                self._check_unique_keys()
            except (Conflict, UsernameTaken):
                self.rollback()
                raise
            self._apply(self.users, self.database.users, keep_existing_on_insert=False)
            self._apply(self.images, self.database.images, keep_existing_on_insert=False)
            self._apply(self.links, self.database.links, keep_existing_on_insert=False)
            self._apply(self.presets, self.database.presets, keep_existing_on_insert=False)
            for table in ("webhook_endpoints", "webhook_deliveries", "webhook_attempts"):
                self._apply(
                    getattr(self, table),
                    getattr(self.database, table),
                    keep_existing_on_insert=False,
                )
            for delivery_id in self.webhook_released:
                self.database.webhook_leases.pop(delivery_id, None)
            self.webhook_leases_before.clear()
            self._drop_orphans()
            # Enqueueing is idempotent: a job committed meanwhile by someone else stays as is.
            self._apply(self.jobs, self.database.jobs, keep_existing_on_insert=True)
            self._end()

    def rollback(self) -> None:
        with self.database.lock:
            for delivery_id, before in self.webhook_leases_before.items():
                if before is None:
                    self.database.webhook_leases.pop(delivery_id, None)
                else:
                    self.database.webhook_leases[delivery_id] = before
            self._end()

    def _end(self) -> None:
        for job_id in self.claimed:
            if self.database.job_locks.get(job_id) is self:
                del self.database.job_locks[job_id]
        self.claimed.clear()
        self.users.clear()
        self.images.clear()
        self.jobs.clear()
        self.links.clear()
        self.presets.clear()
        self.webhook_endpoints.clear()
        self.webhook_deliveries.clear()
        self.webhook_attempts.clear()
        self.webhook_leases_before.clear()
        self.webhook_released.clear()

    def _drop_orphans(self) -> None:
        """What a deleted endpoint leaves behind goes with it, as ON DELETE CASCADE does."""
        database = self.database
        live = database.webhook_endpoints
        for key, delivery in list(database.webhook_deliveries.items()):
            if delivery.endpoint_id not in live:
                del database.webhook_deliveries[key]
                database.webhook_leases.pop(key, None)
        for key, attempt in list(database.webhook_attempts.items()):
            if attempt.endpoint_id not in live:
                del database.webhook_attempts[key]

    def _check_unique_keys(self) -> None:
        database = self.database
        for user_id in self.users.inserted:
            if user_id in database.users:
                raise Conflict(f"a user with id {user_id} exists")
        for image_id in self.images.inserted:
            if image_id in database.images:
                raise Conflict(f"an image with id {image_id} exists")
        for link_id in self.links.inserted:
            if link_id in database.links:
                raise Conflict(f"a link with id {link_id} exists")
        for key in self.presets.inserted:
            if key in database.presets:
                raise Conflict(f"a preset {key} exists")
        owners = {user.username: user.id for user in database.users.values()}
        for user_id, user in self.users.changes.items():
            previous = database.users.get(user_id)
            if user is not None and previous is not None:
                # A renamed user frees the old name for the others changed here.
                del owners[previous.username]
        for user_id, user in self.users.changes.items():
            if user is None:
                continue
            owner = owners.setdefault(user.username, user_id)
            if owner != user_id:
                raise UsernameTaken(f"the username {user.username!r} is taken")

    @staticmethod
    def _apply(
        staged: _StagedTable[_Row], committed: dict[str, _Row], *, keep_existing_on_insert: bool
    ) -> None:
        for key, row in staged.changes.items():
            if row is None:
                committed.pop(key, None)
            elif key in staged.inserted:
                if not (keep_existing_on_insert and key in committed):
                    committed[key] = row
            elif key in committed:
                # A row deleted by another unit of work meanwhile stays deleted, as an UPDATE
                # that matches no row changes nothing.
                committed[key] = row


class InMemoryUserRepository:
    """:class:`~imgproc_core.ports.UserRepository` over one unit of work's view."""

    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction

    def add(self, user: User) -> None:
        _require_aware(user.created_at)
        with self._tx.database.lock:
            if self._tx.users.get(user.id) is not None:
                raise Conflict(f"a user with id {user.id} exists")
            if self._find_by_username(user.username) is not None:
                raise UsernameTaken(f"the username {user.username!r} is taken")
            self._tx.users.insert(user.id, replace(user))

    def get(self, user_id: str) -> User | None:
        with self._tx.database.lock:
            user = self._tx.users.get(user_id)
        return None if user is None else replace(user)

    def get_by_username(self, username: str) -> User | None:
        with self._tx.database.lock:
            user = self._find_by_username(username)
        return None if user is None else replace(user)

    def update(self, user: User) -> None:
        _require_aware(user.created_at)
        with self._tx.database.lock:
            if self._tx.users.get(user.id) is None:
                raise UserNotFound(f"no user with id {user.id}")
            holder = self._find_by_username(user.username)
            if holder is not None and holder.id != user.id:
                raise UsernameTaken(f"the username {user.username!r} is taken")
            self._tx.users.write(user.id, replace(user))

    def list(self, *, offset: int = 0, limit: int = 100) -> Sequence[User]:
        """Users in the order they registered (then by id)."""
        with self._tx.database.lock:
            rows = sorted(self._tx.users.rows(), key=lambda user: (user.created_at, user.id))
        return [replace(user) for user in _page(rows, offset, limit)]

    def count(self, *, disabled: bool | None = None) -> int:
        with self._tx.database.lock:
            rows = self._tx.users.rows()
        return sum(1 for user in rows if disabled is None or user.disabled == disabled)

    def _find_by_username(self, username: str) -> User | None:
        return next((u for u in self._tx.users.rows() if u.username == username), None)


class InMemoryImageRepository:
    """:class:`~imgproc_core.ports.ImageRepository` over one unit of work's view."""

    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction

    def add(self, image: Image) -> None:
        _require_aware(image.created_at, image.updated_at)
        with self._tx.database.lock:
            if self._tx.images.get(image.id) is not None:
                raise Conflict(f"an image with id {image.id} exists")
            self._tx.images.insert(image.id, replace(image))

    def get(self, image_id: str) -> Image | None:
        with self._tx.database.lock:
            image = self._tx.images.get(image_id)
        return None if image is None else replace(image)

    def update(self, image: Image) -> None:
        _require_aware(image.created_at, image.updated_at)
        with self._tx.database.lock:
            if self._tx.images.get(image.id) is None:
                raise ImageNotFound(f"no image with id {image.id}")
            self._tx.images.write(image.id, replace(image))

    def delete(self, image_id: str) -> None:
        with self._tx.database.lock:
            if self._tx.images.get(image_id) is not None:
                self._tx.images.remove(image_id)
                # As the links table's foreign key cascades.
                for link in self._tx.links.rows():
                    if link.image_id == image_id:
                        self._tx.links.remove(link.id)

    def list_for_user(
        self, user_id: str, *, offset: int, limit: int, originals_only: bool = False
    ) -> tuple[Sequence[Image], int]:
        """Newest first; images created at the same moment by descending id."""
        mine = self._select(
            lambda image: (
                image.user_id == user_id and not (originals_only and image.source_id is not None)
            )
        )
        mine.sort(key=lambda image: (image.created_at, image.id), reverse=True)
        return [replace(image) for image in _page(mine, offset, limit)], len(mine)

    def list_derivatives(self, source_id: str) -> Sequence[Image]:
        """Oldest first, then by id."""
        found = self._select(lambda image: image.source_id == source_id)
        found.sort(key=lambda image: (image.created_at, image.id))
        return [replace(image) for image in found]

    def list_by_status(self, status: JobStatus, *, limit: int = 100) -> Sequence[Image]:
        """Oldest first, then by id."""
        found = self._select(lambda image: image.status == status)
        found.sort(key=lambda image: (image.created_at, image.id))
        return [replace(image) for image in _page(found, 0, limit)]

    def count_by_status(self) -> dict[JobStatus, int]:
        """Every status, those with no image included (as 0)."""
        counts = dict.fromkeys(JobStatus, 0)
        for image in self._select(lambda _: True):
            counts[image.status] += 1
        return counts

    def list_derived(
        self, *, status: JobStatus | None = None, offset: int = 0, limit: int = 100
    ) -> Sequence[Image]:
        """Oldest first, then by id."""
        found = self._select(
            lambda image: image.source_id is not None and (status is None or image.status == status)
        )
        found.sort(key=lambda image: (image.created_at, image.id))
        return [replace(image) for image in _page(found, offset, limit)]

    def totals(self) -> ImageTotals:
        images = self._select(lambda _: True)
        originals = [image for image in images if image.source_id is None]
        derived = [image for image in images if image.source_id is not None]
        by_status = dict.fromkeys(JobStatus, 0)
        for image in derived:
            by_status[image.status] += 1
        return ImageTotals(
            originals=len(originals),
            original_bytes=sum(image.size_bytes for image in originals),
            derived=len(derived),
            derived_bytes=sum(image.size_bytes for image in derived),
            derived_by_status=by_status,
        )

    def _select(self, keep: Callable[[Image], bool]) -> list[Image]:
        with self._tx.database.lock:
            return [image for image in self._tx.images.rows() if keep(image)]


class InMemoryLinkRepository:
    """:class:`~imgproc_core.ports.LinkRepository` over one unit of work's view."""

    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction

    def add(self, link: Link) -> None:
        _require_aware(link.created_at, *([link.expires_at] if link.expires_at else []))
        with self._tx.database.lock:
            if self._tx.links.get(link.id) is not None:
                raise Conflict(f"a link with id {link.id} exists")
            if self._tx.images.get(link.image_id) is None:
                raise ImageNotFound(f"no image with id {link.image_id}")
            self._tx.links.insert(link.id, replace(link))

    def get(self, link_id: str) -> Link | None:
        with self._tx.database.lock:
            link = self._tx.links.get(link_id)
        return None if link is None else replace(link)

    def get_with_image(self, link_id: str) -> tuple[Link, Image] | None:
        with self._tx.database.lock:
            link = self._tx.links.get(link_id)
            image = self._tx.images.get(link.image_id) if link is not None else None
        if link is None or image is None:
            return None
        return replace(link), replace(image)

    def list_for_image(self, image_id: str) -> Sequence[Link]:
        with self._tx.database.lock:
            found = [link for link in self._tx.links.rows() if link.image_id == image_id]
        found.sort(key=lambda link: (link.created_at, link.id))
        return [replace(link) for link in found]

    def delete(self, link_id: str) -> bool:
        with self._tx.database.lock:
            if self._tx.links.get(link_id) is None:
                return False
            self._tx.links.remove(link_id)
            return True


def _preset_key(user_id: str | None, name: str) -> str:
    return f"{user_id or ''}/{name}"


class InMemoryPresetRepository:
    """:class:`~imgproc_core.ports.PresetRepository` over one unit of work's view."""

    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction

    def put(self, preset: Preset) -> bool:
        _require_aware(preset.created_at, preset.updated_at)
        key = _preset_key(preset.user_id, preset.name)
        with self._tx.database.lock:
            if preset.user_id is not None and self._tx.users.get(preset.user_id) is None:
                raise UserNotFound(f"no user with id {preset.user_id}")
            existing = self._tx.presets.get(key)
            if existing is None:
                self._tx.presets.insert(key, preset)
                return True
            self._tx.presets.write(key, replace(preset, created_at=existing.created_at))
            return False

    def get(self, user_id: str | None, name: str) -> Preset | None:
        with self._tx.database.lock:
            return self._tx.presets.get(_preset_key(user_id, name))

    def list(self, user_id: str | None) -> Sequence[Preset]:
        with self._tx.database.lock:
            found = [preset for preset in self._tx.presets.rows() if preset.user_id == user_id]
        return sorted(found, key=lambda preset: preset.name)

    def count(self, user_id: str) -> int:
        return len(self.list(user_id))

    def eager(self, user_id: str) -> Sequence[Preset]:
        return [preset for preset in self.list(user_id) if preset.eager]

    def delete(self, user_id: str | None, name: str) -> bool:
        key = _preset_key(user_id, name)
        with self._tx.database.lock:
            if self._tx.presets.get(key) is None:
                return False
            self._tx.presets.remove(key)
            return True


class InMemoryWebhookRepository:
    """:class:`~imgproc_core.ports.WebhookRepository` over one unit of work's view. A claim
    leases deliveries for the unit of work's life at once (others skip them, as ``SKIP LOCKED``
    would), and for ``lease_seconds`` once committed."""

    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction

    def add_endpoint(self, endpoint: WebhookEndpoint) -> None:
        _require_aware(endpoint.created_at)
        with self._tx.database.lock:
            if self._tx.webhook_endpoints.get(endpoint.id) is not None:
                raise Conflict(f"a webhook endpoint with id {endpoint.id} exists")
            if self._tx.users.get(endpoint.user_id) is None:
                raise UserNotFound(f"no user with id {endpoint.user_id}")
            self._tx.webhook_endpoints.insert(endpoint.id, endpoint)

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        with self._tx.database.lock:
            return self._tx.webhook_endpoints.get(endpoint_id)

    def update_endpoint(self, endpoint: WebhookEndpoint) -> None:
        with self._tx.database.lock:
            if self._tx.webhook_endpoints.get(endpoint.id) is not None:
                self._tx.webhook_endpoints.write(endpoint.id, endpoint)

    def delete_endpoint(self, endpoint_id: str) -> bool:
        with self._tx.database.lock:
            if self._tx.webhook_endpoints.get(endpoint_id) is None:
                return False
            self._tx.webhook_endpoints.remove(endpoint_id)
            for delivery in self._tx.webhook_deliveries.rows():
                if delivery.endpoint_id == endpoint_id:
                    self._tx.webhook_deliveries.remove(delivery.id)
            return True

    def endpoints_of(self, user_id: str) -> Sequence[WebhookEndpoint]:
        with self._tx.database.lock:
            found = [e for e in self._tx.webhook_endpoints.rows() if e.user_id == user_id]
        return sorted(found, key=lambda endpoint: (endpoint.created_at, endpoint.id))

    def add_delivery(self, delivery: WebhookDelivery) -> None:
        _require_aware(delivery.created_at, delivery.next_attempt_at)
        with self._tx.database.lock:
            if self._tx.webhook_deliveries.get(delivery.id) is not None:
                raise Conflict(f"a webhook delivery with id {delivery.id} exists")
            if self._tx.webhook_endpoints.get(delivery.endpoint_id) is None:
                raise Conflict(f"no webhook endpoint with id {delivery.endpoint_id}")
            self._tx.webhook_deliveries.insert(delivery.id, delivery)

    def get_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        with self._tx.database.lock:
            return self._tx.webhook_deliveries.get(delivery_id)

    def update_delivery(self, delivery: WebhookDelivery) -> None:
        with self._tx.database.lock:
            if self._tx.webhook_deliveries.get(delivery.id) is not None:
                self._tx.webhook_deliveries.write(delivery.id, delivery)
                self._tx.webhook_released.add(delivery.id)

    def claim_due(self, sender: str, lease_seconds: float, limit: int) -> Sequence[WebhookDelivery]:
        if limit < 1:
            raise ValueError("a claim takes at least one delivery")
        now = self._tx.clock.now()
        until = now + timedelta(seconds=lease_seconds)
        with self._tx.database.lock:
            leases = self._tx.database.webhook_leases
            due = [
                delivery
                for delivery in self._tx.webhook_deliveries.rows()
                if delivery.status is DeliveryStatus.PENDING
                and delivery.next_attempt_at <= now
                and (delivery.id not in leases or leases[delivery.id][1] <= now)
            ]
            due.sort(key=lambda d: (d.next_attempt_at, d.created_at, d.id))
            claimed = due[:limit]
            for delivery in claimed:
                # Held from now, by this unit of work, as a row lock would be.
                self._tx.webhook_leases_before.setdefault(delivery.id, leases.get(delivery.id))
                leases[delivery.id] = (sender, until)
        return claimed

    def add_attempt(self, attempt: DeliveryAttempt) -> None:
        _require_aware(attempt.attempted_at)
        with self._tx.database.lock:
            key = f"{attempt.delivery_id}/{self._tx.database.next_sequence():012d}"
            self._tx.webhook_attempts.insert(key, attempt)

    def attempts_of(self, endpoint_id: str, limit: int) -> Sequence[DeliveryAttempt]:
        with self._tx.database.lock:
            found = [
                (key, attempt)
                for key, attempt in self._tx.webhook_attempts.items().items()
                if attempt.endpoint_id == endpoint_id
            ]
        found.sort(
            key=lambda pair: (pair[1].attempted_at, pair[0].rpartition("/")[2]), reverse=True
        )
        return [attempt for _, attempt in found[:limit]]

    def oldest_pending_created_at(self) -> datetime | None:
        with self._tx.database.lock:
            return min(
                (
                    d.created_at
                    for d in self._tx.webhook_deliveries.rows()
                    if d.status is DeliveryStatus.PENDING
                ),
                default=None,
            )


class InMemoryJobQueue:
    """:class:`~imgproc_core.ports.JobQueue` over one unit of work's view.

    A claim locks the job until the unit of work ends, the way ``SELECT ... FOR UPDATE SKIP
    LOCKED`` does: other units of work skip it even before the lease is committed, so two
    workers claiming at once never get the same job. Committing keeps the lease; rolling back
    releases the job as it was.

    "Oldest" means the earliest due time, then the order of enqueueing. :meth:`ack` and
    :meth:`retry` of a job that is not queued (acknowledged already, by this worker or by one
    that claimed it after the lease ran out) do nothing.
    """

    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction

    def enqueue(self, job: TransformJob) -> None:
        with self._tx.database.lock:
            if self._tx.jobs.get(job.id) is not None:
                return
            now = self._tx.clock.now()
            sequence = self._tx.database.next_sequence()
            queued = QueuedJob(job=job, sequence=sequence, enqueued_at=now, due_at=now)
            self._tx.jobs.insert(job.id, queued)

    def claim(self, worker: str, lease_seconds: float) -> TransformJob | None:
        claimed = self.claim_batch(worker, lease_seconds, 1)
        return claimed[0] if claimed else None

    def claim_batch(self, worker: str, lease_seconds: float, limit: int) -> list[TransformJob]:
        if lease_seconds <= 0:
            raise ValueError("a lease lasts a positive number of seconds")
        if limit < 1:
            raise ValueError("a batch holds at least one job")
        with self._tx.database.lock:
            now = self._tx.clock.now()
            candidates = [
                row
                for row in self._tx.jobs.rows()
                if row.claimable(now) and not self._tx.locked_by_other(row.job.id)
            ]
            candidates.sort(key=lambda row: (row.due_at, row.sequence))
            lease_until = now + timedelta(seconds=lease_seconds)
            claimed: list[TransformJob] = []
            for row in candidates[:limit]:
                self._tx.jobs.write(
                    row.job.id, replace(row, leased_by=worker, leased_until=lease_until)
                )
                self._tx.lock_job(row.job.id)
                claimed.append(row.job)
            return claimed

    def ack(self, job_id: str) -> None:
        with self._tx.database.lock:
            if self._tx.jobs.get(job_id) is not None:
                self._tx.jobs.remove(job_id)

    def retry(self, job_id: str, delay_seconds: float) -> None:
        if delay_seconds < 0:
            raise ValueError("a retry is due now or later, not in the past")
        with self._tx.database.lock:
            row = self._tx.jobs.get(job_id)
            if row is None:
                return
            job = msgspec.structs.replace(row.job, attempts=row.job.attempts + 1)
            due_at = self._tx.clock.now() + timedelta(seconds=delay_seconds)
            retried = replace(row, job=job, due_at=due_at, leased_by=None, leased_until=None)
            self._tx.jobs.write(job_id, retried)

    def renew_lease(self, job_id: str, worker: str, lease_seconds: float) -> bool:
        if lease_seconds < 0:
            raise ValueError("a lease ends now or later, not in the past")
        with self._tx.database.lock:
            row = self._tx.jobs.get(job_id)
            if row is None or row.leased_by != worker:
                return False
            leased_until = self._tx.clock.now() + timedelta(seconds=lease_seconds)
            self._tx.jobs.write(job_id, replace(row, leased_until=leased_until))
            return True

    def release(self, worker: str, job_ids: Sequence[str]) -> None:
        with self._tx.database.lock:
            for job_id in job_ids:
                row = self._tx.jobs.get(job_id)
                if row is not None and row.leased_by == worker:
                    self._tx.jobs.write(job_id, replace(row, leased_by=None, leased_until=None))

    def pending_count(self) -> int:
        """Jobs not acknowledged yet, leased or not."""
        with self._tx.database.lock:
            return len(self._tx.jobs.rows())

    def oldest_enqueued_at(self) -> datetime | None:
        with self._tx.database.lock:
            return min((row.enqueued_at for row in self._tx.jobs.rows()), default=None)


class InMemoryUnitOfWork:
    """:class:`~imgproc_core.ports.UnitOfWork` on an :class:`InMemoryDatabase`.

    ``clock`` dates the job queue's due times and leases. A unit of work may be entered again
    after it ended; each ``with`` block starts clean.
    """

    def __init__(self, database: InMemoryDatabase, clock: Clock) -> None:
        self._tx = _Transaction(database, clock)
        self.users: UserRepository = InMemoryUserRepository(self._tx)
        self.images: ImageRepository = InMemoryImageRepository(self._tx)
        self.jobs: JobQueue = InMemoryJobQueue(self._tx)
        self.links: LinkRepository = InMemoryLinkRepository(self._tx)
        self.presets: PresetRepository = InMemoryPresetRepository(self._tx)
        self.webhooks: WebhookRepository = InMemoryWebhookRepository(self._tx)

    def __enter__(self) -> Self:
        self._tx.rollback()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._tx.rollback()

    def commit(self) -> None:
        self._tx.commit()

    def rollback(self) -> None:
        self._tx.rollback()


class InMemorySchema:
    """:class:`~imgproc_core.ports.DatabaseSchema` of a database in memory: there is no schema,
    so there is nothing to migrate and every revision is None."""

    def current(self) -> None:
        return None

    def expected(self) -> None:
        return None

    def upgrade(self) -> None:
        return None


def in_memory_unit_of_work_factory(
    database: InMemoryDatabase, clock: Clock
) -> Callable[[], InMemoryUnitOfWork]:
    """A :data:`~imgproc_core.ports.UnitOfWorkFactory` whose units of work share ``database``."""
    return lambda: InMemoryUnitOfWork(database, clock)
