"""The messages on the job topic and on its dead-letter topic, as they travel: JSON objects with
a ``type`` field that names the message and its version; and :class:`Delivery`, a message as a
consumer received it.

They live beside the ports because the ports name them (a dead-letter publisher publishes a
:class:`DeadLetter`), and so that a worker shell reads and parks messages without importing an
adapter: the broker's adapter only moves their bytes.

A consumer that meets a ``type`` it does not know, a field it does not know, or a value of the
wrong type refuses the message whole (:class:`MalformedMessage`) rather than guess: a new
version gets a new tag, and old consumers park it instead of misreading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final

import msgspec

from imgproc_core.domain.errors import InvalidInput
from imgproc_core.domain.jobs import TransformJob

__all__ = [
    "DEAD_LETTER_TAG",
    "JOB_TAG",
    "DeadLetter",
    "DeadLetterCode",
    "Delivery",
    "MalformedMessage",
    "TransformRequested",
    "dead_letter_key",
    "decode_dead_letter",
    "decode_job",
    "encode_dead_letter",
    "encode_job",
    "job_key",
]

JOB_TAG: Final = "transform.v1"
DEAD_LETTER_TAG: Final = "transform.dead.v1"

#: Ids as the database stores them.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class MalformedMessage(InvalidInput):
    """A message that is not one this version understands; it goes to the dead-letter topic."""

    code = "malformed_message"


class TransformRequested(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag=JOB_TAG
):
    """Render the derived image ``image_id`` of ``source_id`` (the job's id is the image's)."""

    image_id: Id
    source_id: Id
    user_id: Id
    #: Attempts recorded on the outbox row when it was published (an operator's retries).
    attempts: Count = 0

    @classmethod
    def from_job(cls, job: TransformJob) -> TransformRequested:
        return cls(
            image_id=job.image_id,
            source_id=job.source_id,
            user_id=job.user_id,
            attempts=job.attempts,
        )

    def to_job(self) -> TransformJob:
        return TransformJob(
            image_id=self.image_id,
            source_id=self.source_id,
            user_id=self.user_id,
            attempts=self.attempts,
        )


class DeadLetterCode:
    """Why a message was parked; the ``code`` of a :class:`DeadLetter`."""

    #: Not a job message this version understands (not JSON, unknown type or field).
    MALFORMED = MalformedMessage.code
    #: The job failed for good (a corrupt source, say); its image is FAILED with the reason.
    FAILED = "job_failed"
    #: The job failed on every attempt (time limit, codec crash); its image is FAILED.
    GAVE_UP = "gave_up"


class DeadLetter(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag=DEAD_LETTER_TAG
):
    """A job message that will not be processed again unless an operator says so.

    ``value`` is the original message, byte for byte (base64 in JSON), so it can be published
    again as it was; ``job`` is what it said, when it could be read.
    """

    code: str
    reason: str
    topic: str
    partition: Count
    offset: Count
    key: str | None
    value: bytes
    job: TransformRequested | None = None
    #: Attempts this worker made before parking the job (0 for a message never run).
    attempts: Count = 0
    worker: str
    dead_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message as the consumer delivered it: where it was, and its bytes as they came."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


# A union of tagged structs makes the tag required: a message without ``type`` is refused
# rather than read as the newest version.
_decoder: Final[msgspec.json.Decoder[TransformRequested | DeadLetter]] = msgspec.json.Decoder(
    TransformRequested | DeadLetter
)
_encoder: Final = msgspec.json.Encoder()


def job_key(job: TransformJob) -> bytes:
    """The message key: the source image, so that the jobs of one image share a partition and
    keep their order."""
    return job.source_id.encode()


def encode_job(job: TransformJob) -> bytes:
    return _encoder.encode(TransformRequested.from_job(job))


def decode_job(value: bytes | None) -> TransformRequested:
    """The job in a message's value; :class:`MalformedMessage` naming what is wrong."""
    if value is None:
        raise MalformedMessage("the message has no value")
    message = _decode(value, JOB_TAG)
    if not isinstance(message, TransformRequested):
        raise MalformedMessage(f"a {DEAD_LETTER_TAG} message, not a {JOB_TAG} one")
    return message


def dead_letter_key(letter: DeadLetter) -> bytes | None:
    """The key a dead letter is stored under: its job's image id when the message could be
    read, else the original message's key (None when it had none)."""
    if letter.job is not None:
        return letter.job.image_id.encode()
    return None if letter.key is None else letter.key.encode()


def encode_dead_letter(letter: DeadLetter) -> bytes:
    return _encoder.encode(letter)


def decode_dead_letter(value: bytes) -> DeadLetter:
    message = _decode(value, DEAD_LETTER_TAG)
    if not isinstance(message, DeadLetter):
        raise MalformedMessage(f"a {JOB_TAG} message, not a {DEAD_LETTER_TAG} one")
    return message


def _decode(value: bytes, expected: str) -> TransformRequested | DeadLetter:
    try:
        return _decoder.decode(value)
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"not a {expected} message: {exc}") from None
