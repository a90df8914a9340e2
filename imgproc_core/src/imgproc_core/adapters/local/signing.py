"""HMAC signatures for URLs that grant access until they expire, with no other credential.

The signature covers a canonical, unambiguous encoding of the path, the expiry (Unix seconds)
and any extra query parameters that change the response (a download filename, say), so none of
them can be altered without invalidating the URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from typing import Final

from imgproc_core.ports.clock import Clock

MIN_SECRET_BYTES: Final = 32
#: Distinguishes these signatures from anything else the same secret might ever sign.
_CONTEXT: Final = "imgproc.signed-url.v1"
#: Unix seconds as the signer writes them: ASCII digits, no sign, no leading zero, no spaces.
_EXPIRES: Final = re.compile(r"0|[1-9][0-9]{0,11}")
#: 32 bytes of HMAC-SHA256 in URL-safe base64 without padding.
_SIGNATURE_CHARS: Final = 43


class UrlSigner:
    """Signs and verifies ``(path, expires, extra)`` with HMAC-SHA256 and a secret key."""

    def __init__(self, secret: bytes, clock: Clock) -> None:
        if not isinstance(secret, bytes | bytearray):
            raise TypeError(f"the URL signing secret must be bytes, not {type(secret).__name__}")
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the URL signing secret is {len(secret)} bytes; it needs at least "
                f"{MIN_SECRET_BYTES} random bytes, or anyone could forge signed URLs"
            )
        self._secret = bytes(secret)
        self._clock = clock

    def expiry(self, expires_in_seconds: int) -> int:
        """The Unix time ``expires_in_seconds`` from now (rounded up), as it goes into a URL."""
        return math.ceil(self._clock.now().timestamp() + expires_in_seconds)

    def sign(self, path: str, expires: int, extra: Mapping[str, str] | None = None) -> str:
        """The signature of ``path`` valid until ``expires``, URL-safe base64 without padding."""
        if isinstance(expires, bool) or not isinstance(expires, int) or expires < 0:
            raise ValueError(f"expires must be a non-negative Unix time, not {expires!r}")
        digest = hmac.new(self._secret, _canonical(path, expires, extra), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def verify(
        self,
        path: str,
        expires: str | int,
        signature: str,
        extra: Mapping[str, str] | None = None,
    ) -> bool:
        """True when ``signature`` was made by :meth:`sign` for these values and ``expires`` is
        still in the future. Malformed input of any kind is simply False."""
        expires_at = _parse_expires(expires)
        if expires_at is None or not isinstance(signature, str):
            return False
        if len(signature) != _SIGNATURE_CHARS or not signature.isascii():
            return False
        expected = self.sign(path, expires_at, extra)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
            return False
        return self._clock.now().timestamp() < expires_at


def _canonical(path: str, expires: int, extra: Mapping[str, str] | None) -> bytes:
    # JSON with escaped non-ASCII text keeps every field's boundaries unambiguous, whatever the
    # values contain (newlines, '=', '&', NUL, lone surrogates).
    fields = sorted((extra or {}).items())
    return json.dumps([_CONTEXT, path, expires, fields], separators=(",", ":")).encode("ascii")


def _parse_expires(expires: str | int) -> int | None:
    if isinstance(expires, bool):
        return None
    if isinstance(expires, int):
        return expires if expires >= 0 else None
    if isinstance(expires, str) and _EXPIRES.fullmatch(expires):
        return int(expires)
    return None
