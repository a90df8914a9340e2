"""What the pool and its worker processes hand each other.

A job goes out as one :class:`TransformRequest`, which pebble pickles (a struct of known shape:
bytes, the ``Transformation`` and ``Limits`` structs). One :data:`Reply` comes back, encoded by
the worker with msgpack into bytes, so that the parent never unpickles an object that a worker
made: only values of known shapes cross (the ``EncodedImage`` dataclass, plain attribute
values). pebble takes a reply that it cannot unpickle for its whole pool broken.

Domain errors cannot be pickled back as they are (a subclass with its own ``__init__``, such as
``ImageTooLarge(message, limit_bytes)``, does not unpickle), so an error travels as its class's
ancestry, its message and its plain attributes, and is rebuilt on the other side as the same
class without calling its ``__init__``. Only subclasses of
:class:`~imgproc_core.domain.errors.DomainError` are rebuilt; the child names a class, it never
makes the parent import anything.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from imgproc_core.domain.errors import DomainError
from imgproc_core.domain.limits import Limits
from imgproc_core.domain.transformations import Transformation
from imgproc_core.ports.codec import EncodedImage

#: Attribute values that survive the trip unchanged; others are left behind.
_PLAIN_TYPES: Final = (str, int, float, bool, bytes, type(None))


class TransformRequest(msgspec.Struct, frozen=True, array_like=True):
    data: bytes
    transformation: Transformation
    limits: Limits
    watermark: bytes | None


class Transformed(msgspec.Struct, frozen=True, tag="transformed"):
    image: EncodedImage


class Rejected(msgspec.Struct, frozen=True, tag="rejected"):
    """A domain error: ``lineage`` is the class and its ancestors up to ``DomainError``, each
    as ``module:qualname``, most specific first."""

    lineage: list[str]
    message: str
    attributes: dict[str, Any]


class Failed(msgspec.Struct, frozen=True, tag="failed"):
    """Any other exception: a bug, reported with the child's traceback."""

    error_type: str
    message: str
    traceback: str


Reply = Transformed | Rejected | Failed

_reply_decoder: Final[msgspec.msgpack.Decoder[Reply]] = msgspec.msgpack.Decoder(Reply)
_encoder: Final = msgspec.msgpack.Encoder()


def encode(message: Reply) -> bytes:
    return _encoder.encode(message)


def decode_reply(payload: bytes) -> Reply:
    return _reply_decoder.decode(payload)


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def rejected(error: DomainError) -> Rejected:
    lineage = [
        _class_name(cls)
        for cls in type(error).__mro__
        if isinstance(cls, type) and issubclass(cls, DomainError)
    ]
    attributes = {
        name: value for name, value in vars(error).items() if isinstance(value, _PLAIN_TYPES)
    }
    message = getattr(error, "message", None)
    if not isinstance(message, str):
        message = str(error)
    return Rejected(lineage=lineage, message=message, attributes=attributes)


def _domain_error_classes() -> dict[str, type[DomainError]]:
    """Every subclass of DomainError this process has imported, by ``module:qualname``."""
    found: dict[str, type[DomainError]] = {}
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        name = _class_name(cls)
        if name not in found:
            found[name] = cls
            pending.extend(cls.__subclasses__())
    return found


def rebuild(reply: Rejected) -> DomainError:
    """The error ``reply`` describes, as the most specific class of its lineage known here
    (``DomainError`` at worst), with the same message and attributes."""
    known = _domain_error_classes()
    cls = next((known[name] for name in reply.lineage if name in known), DomainError)
    error = cls.__new__(cls)
    Exception.__init__(error, reply.message)
    error.message = reply.message
    for name, value in reply.attributes.items():
        setattr(error, name, value)
    return error
