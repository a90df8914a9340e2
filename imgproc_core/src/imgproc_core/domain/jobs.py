"""The life of a derived image's job: PENDING -> PROCESSING -> READY or FAILED."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

import msgspec


class JobStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    READY = "READY"
    FAILED = "FAILED"

    def can_become(self, target: JobStatus) -> bool:
        return target in _TRANSITIONS[self]


#: READY is final. PROCESSING may go back to PENDING when a worker gives a job up (time limit,
#: shutdown, transient error); FAILED goes back to PENDING only when an operator retries it.
_TRANSITIONS: Final[dict[JobStatus, frozenset[JobStatus]]] = {
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.READY, JobStatus.FAILED, JobStatus.PENDING}),
    JobStatus.FAILED: frozenset({JobStatus.PENDING}),
    JobStatus.READY: frozenset(),
}


class TransformJob(msgspec.Struct, frozen=True, kw_only=True):
    """A request to render one derived image. The job's id is the derived image's id, so a job
    delivered twice is recognised as the same job."""

    image_id: str
    source_id: str
    user_id: str
    attempts: int = 0

    @property
    def id(self) -> str:
        return self.image_id
