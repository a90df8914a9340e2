"""Repositories, the job queue and the unit of work that holds them in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.links import Link
from imgproc_core.domain.presets import Preset
from imgproc_core.domain.users import User
from imgproc_core.domain.webhook_records import DeliveryAttempt, WebhookDelivery, WebhookEndpoint


class UserRepository(Protocol):
    def add(self, user: User) -> None:
        """Add a new user; :class:`~imgproc_core.domain.errors.UsernameTaken` if the name is."""
        ...

    def get(self, user_id: str) -> User | None: ...

    def get_by_username(self, username: str) -> User | None: ...

    def update(self, user: User) -> None: ...

    def list(self, *, offset: int = 0, limit: int = 100) -> Sequence[User]: ...

    def count(self, *, disabled: bool | None = None) -> int:
        """How many users there are; only the disabled (True) or enabled (False) ones if asked."""
        ...


@dataclass(frozen=True, slots=True)
class ImageTotals:
    """Counts and sizes over every user's images. A derived image counts its bytes once its
    job has written them (0 before)."""

    originals: int
    original_bytes: int
    derived: int
    derived_bytes: int
    #: Derived images (one job each) by status; every status is a key, 0 when none has it.
    derived_by_status: Mapping[JobStatus, int]


class ImageRepository(Protocol):
    def add(self, image: Image) -> None:
        """Add a new image; :class:`~imgproc_core.domain.errors.Conflict` if the id exists."""
        ...

    def get(self, image_id: str) -> Image | None: ...

    def update(self, image: Image) -> None:
        """Write back an image read from this repository."""
        ...

    def delete(self, image_id: str) -> None: ...

    def list_for_user(
        self, user_id: str, *, offset: int, limit: int, originals_only: bool = False
    ) -> tuple[Sequence[Image], int]:
        """A page of the user's images, newest first, and how many there are in all."""
        ...

    def list_derivatives(self, source_id: str) -> Sequence[Image]: ...

    def list_by_status(self, status: JobStatus, *, limit: int = 100) -> Sequence[Image]: ...

    def count_by_status(self) -> dict[JobStatus, int]: ...

    def list_derived(
        self, *, status: JobStatus | None = None, offset: int = 0, limit: int = 100
    ) -> Sequence[Image]:
        """Derived images (the jobs that render them), oldest first, then by id; only those
        in ``status`` when given."""
        ...

    def totals(self) -> ImageTotals: ...


class JobQueue(Protocol):
    """Jobs written in the same transaction as the images they render.

    The embedded profile's workers claim jobs straight from this queue; in the production profile
    it is the outbox that the relay claims from and publishes to Kafka.
    """

    def enqueue(self, job: TransformJob) -> None:
        """Queue ``job``; a job whose id is already queued is left as it is."""
        ...

    def claim(self, worker: str, lease_seconds: float) -> TransformJob | None:
        """Take the oldest job that is due and not leased; its lease ends after
        ``lease_seconds``, after which another worker may claim it (a crashed worker's job)."""
        ...

    def claim_batch(self, worker: str, lease_seconds: float, limit: int) -> list[TransformJob]:
        """Take up to ``limit`` of the oldest jobs that are due and not leased, oldest first,
        with one lease, as :meth:`claim` takes one. Concurrent claimers never get the same job.
        """
        ...

    def ack(self, job_id: str) -> None:
        """The job is done (or parked for good): remove it."""
        ...

    def retry(self, job_id: str, delay_seconds: float) -> None:
        """Give the job back, due again after ``delay_seconds``, with one more attempt counted."""
        ...

    def renew_lease(self, job_id: str, worker: str, lease_seconds: float) -> bool:
        """Keep holding a job that ``worker`` claimed: its lease now ends ``lease_seconds``
        from now (0 lets it go at once, for any worker to claim), its attempts untouched.

        True while the job is still ``worker``'s, even if its lease ran out meanwhile and no
        one else claimed it; False, changing nothing, once it is not (acknowledged, given
        back, or claimed by another worker after the lease ran out).
        """

    def release(self, worker: str, job_ids: Sequence[str]) -> None:
        """Give back the jobs of ``job_ids`` that ``worker`` still holds, claimable at once as
        they were, no attempt counted (a relay whose batch did not reach the broker). Jobs
        gone, or leased by another worker since, are left as they are."""
        ...

    def pending_count(self) -> int: ...

    def oldest_enqueued_at(self) -> datetime | None:
        """When the job that has been in the queue longest was queued, leased or not (a retry
        keeps the job's first time); None when the queue is empty."""
        ...


class LinkRepository(Protocol):
    """Delivery links. Deleting an image deletes its links, in the same transaction."""

    def add(self, link: Link) -> None:
        """Add a new link; :class:`~imgproc_core.domain.errors.Conflict` if its id is taken."""
        ...

    def get(self, link_id: str) -> Link | None: ...

    def get_with_image(self, link_id: str) -> tuple[Link, Image] | None:
        """The link and the image it serves, read at once (every use of a link asks for
        both); None when there is no such link."""
        ...

    def list_for_image(self, image_id: str) -> Sequence[Link]:
        """The image's links, oldest first, then by id."""
        ...

    def delete(self, link_id: str) -> bool:
        """Remove the link; whether there was one."""
        ...


class PresetRepository(Protocol):
    """Named transformations: a user's own (``user_id`` set) and the service's (``user_id``
    None), one of each name per owner."""

    def put(self, preset: Preset) -> bool:
        """Add the preset, or replace the one of its owner and name (keeping when that was
        made); whether it is new. :class:`~imgproc_core.domain.errors.Conflict` when another
        transaction added the same owner and name first."""
        ...

    def get(self, user_id: str | None, name: str) -> Preset | None:
        """The preset of exactly that owner (None: the service's) and name."""
        ...

    def list(self, user_id: str | None) -> Sequence[Preset]:
        """The owner's presets (None: the service's), by name."""
        ...

    def count(self, user_id: str) -> int: ...

    def eager(self, user_id: str) -> Sequence[Preset]:
        """The user's presets made for every upload, by name."""
        ...

    def delete(self, user_id: str | None, name: str) -> bool:
        """Remove the preset; whether there was one."""
        ...


class WebhookRepository(Protocol):
    """A user's webhook endpoints, the deliveries of events to them (the events' outbox) and
    the attempts at sending those. Deleting an endpoint deletes its deliveries and attempts."""

    def add_endpoint(self, endpoint: WebhookEndpoint) -> None: ...

    def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None: ...

    def update_endpoint(self, endpoint: WebhookEndpoint) -> None: ...

    def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove the endpoint and all it was sent; whether there was one."""
        ...

    def endpoints_of(self, user_id: str) -> Sequence[WebhookEndpoint]:
        """The user's endpoints, oldest first."""
        ...

    def add_delivery(self, delivery: WebhookDelivery) -> None: ...

    def get_delivery(self, delivery_id: str) -> WebhookDelivery | None: ...

    def update_delivery(self, delivery: WebhookDelivery) -> None:
        """Write the delivery back, and release its lease."""
        ...

    def claim_due(self, sender: str, lease_seconds: float, limit: int) -> Sequence[WebhookDelivery]:
        """Lease up to ``limit`` pending deliveries due now, oldest due first, that no other
        sender holds (``SKIP LOCKED``): each is sent by one sender at a time."""
        ...

    def add_attempt(self, attempt: DeliveryAttempt) -> None: ...

    def attempts_of(self, endpoint_id: str, limit: int) -> Sequence[DeliveryAttempt]:
        """The endpoint's latest attempts, newest first."""
        ...

    def oldest_pending_created_at(self) -> datetime | None:
        """When the oldest event not delivered yet happened; None when none waits."""
        ...


class UnitOfWork(Protocol):
    """One transaction over users, images, links, presets and jobs. Leaving the ``with`` block
    without :meth:`commit` rolls back."""

    users: UserRepository
    images: ImageRepository
    links: LinkRepository
    presets: PresetRepository
    webhooks: WebhookRepository
    jobs: JobQueue

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class DatabaseSchema(Protocol):
    """The version of the database's schema, and the migrations that bring it up to date.

    A database that keeps no schema (in memory) has nothing to migrate: every revision is None.
    """

    def current(self) -> str | None:
        """The revision the database is at; None before its first migration."""
        ...

    def expected(self) -> str | None:
        """The revision this version of the service needs; None when there is no schema."""
        ...

    def upgrade(self) -> str | None:
        """Bring the database to :meth:`expected`; the revision it is at afterwards."""
        ...
