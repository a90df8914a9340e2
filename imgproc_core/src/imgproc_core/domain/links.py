"""Delivery links: an image (or one transformation of it) that anyone holding the link may
read, owned by the image's user, until it expires or is revoked.

A link's URL carries its id and an HMAC of it under a key of its own, so that a URL cannot be
guessed or edited into another link's: :func:`link_token` makes the token and
:func:`link_id_of` reads it back, answering None for anything that is not a token this key
made (an edited byte, a truncated one, another key's).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

#: A link's id: 32 lowercase hex digits (128 random bits), like an image's.
LINK_ID_PATTERN: Final = re.compile(r"[0-9a-f]{32}")
#: The signature's length in base64url characters (the first 192 bits of HMAC-SHA256).
SIGNATURE_CHARS: Final = 32
_TOKEN_PATTERN: Final = re.compile(rf"([0-9a-f]{{32}})\.([A-Za-z0-9_-]{{{SIGNATURE_CHARS}}})")
_DOMAIN: Final = b"imgproc-link\x00"


@dataclass(slots=True)
class Link:
    """A delivery link to ``image_id``: the original when ``transformation`` is None, else the
    transformation as the owner wrote it (JSON), resolved again on each use so that
    ``"format": "auto"`` can follow the reader's ``Accept``."""

    id: str
    user_id: str
    image_id: str
    created_at: datetime
    transformation: str | None = None
    expires_at: datetime | None = None
    #: ``"format": "auto"``: the output format follows each reader's ``Accept``
    #: (:func:`format_for_reader`), each choice a derivative of its own.
    auto_format: bool = False

    def is_live(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


def format_for_reader(accept: str | None, *, transparent: bool) -> str:
    """The output format of ``"format": "auto"`` for a reader whose ``Accept`` is ``accept``:
    AVIF when it lists ``image/avif``, else WebP when it lists ``image/webp``, else JPEG, or PNG
    for a source with transparency (JPEG has none). A type listed with ``q=0`` is refused, not
    listed (RFC 9110, 12.4.2)."""
    listed = {
        media_type
        for media_type, quality in map(_media_range, (accept or "").split(","))
        if media_type and quality > 0
    }
    if "image/avif" in listed:
        return "avif"
    if "image/webp" in listed:
        return "webp"
    return "png" if transparent else "jpeg"


def _media_range(part: str) -> tuple[str, float]:
    """One element of ``Accept``: its media type, lowercased, and its ``q`` (1 when absent;
    0 when unreadable, so a garbled element counts as refused)."""
    media_type, *parameters = part.split(";")
    quality = 1.0
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                quality = 0.0
    return media_type.strip().lower(), quality


def _signature(key: bytes, link_id: str) -> str:
    digest = hmac.new(key, _DOMAIN + link_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def link_token(key: bytes, link_id: str) -> str:
    """The token of ``link_id`` in a link's URL: ``<id>.<signature>``."""
    if not LINK_ID_PATTERN.fullmatch(link_id):
        raise ValueError(f"not a link id: {link_id!r}")
    return f"{link_id}.{_signature(key, link_id)}"


def link_id_of(key: bytes, token: str) -> str | None:
    """The link id ``token`` carries when ``key`` signed it; None for anything else."""
    match = _TOKEN_PATTERN.fullmatch(token)
    if match is None:
        return None
    link_id, signature = match.groups()
    if not hmac.compare_digest(signature, _signature(key, link_id)):
        return None
    return link_id
