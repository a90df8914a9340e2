"""Repositories, the job queue and the unit of work that holds them in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, Self

from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus, TransformJob
from imgproc_core.domain.users import User


class UserRepository(Protocol):
    def add(self, user: User) -> None:
        """Add a new user; :class:`~imgproc_core.domain.errors.UsernameTaken` if the name is."""
        ...

    def get(self, user_id: str) -> User | None: ...

    def get_by_username(self, username: str) -> User | None: ...

    def update(self, user: User) -> None: ...

    def list(self, *, offset: int = 0, limit: int = 100) -> Sequence[User]: ...


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

    def pending_count(self) -> int: ...


class UnitOfWork(Protocol):
    """One transaction over users, images and jobs. Leaving the ``with`` block without
    :meth:`commit` rolls back."""

    users: UserRepository
    images: ImageRepository
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
