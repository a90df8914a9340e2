"""Fast stand-ins for password hashing and access tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from datetime import datetime, timedelta
from typing import Final

from imgproc_core.domain.errors import InvalidToken
from imgproc_core.domain.users import MAX_PASSWORD_BYTES
from imgproc_core.ports.auth import AccessToken, TokenClaims
from imgproc_core.ports.clock import Clock

_SCHEME: Final = "fake"
_SALT_HEX_CHARS: Final = 32
_DIGEST_HEX_CHARS: Final = 64
_HEX_DIGITS: Final = frozenset("0123456789abcdef")


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and set(text) <= _HEX_DIGITS


class InMemoryPasswordHasher:
    """:class:`~imgproc_core.ports.PasswordHasher` with one salted SHA-256: fast, so tests with
    many users stay quick, and not for production. Hashes look like ``fake$<salt>$<digest>``.

    It keeps bcrypt's rule on length, so code tested against it behaves the same in production:
    more than 72 bytes in UTF-8 raises ``ValueError`` from :meth:`hash`, and never verifies.
    """

    def hash(self, password: str) -> str:
        secret = password.encode()
        if len(secret) > MAX_PASSWORD_BYTES:
            raise ValueError(f"a password is at most {MAX_PASSWORD_BYTES} bytes")
        salt = secrets.token_hex(_SALT_HEX_CHARS // 2)
        return f"{_SCHEME}${salt}${self._digest(salt, secret)}"

    def verify(self, password: str, password_hash: str) -> bool:
        parts = password_hash.split("$")
        if len(parts) != 3:
            return False
        scheme, salt, digest = parts
        if (
            scheme != _SCHEME
            or not _is_hex(salt, _SALT_HEX_CHARS)
            or not _is_hex(digest, _DIGEST_HEX_CHARS)
        ):
            return False
        try:
            secret = password.encode()
        except UnicodeEncodeError:
            return False
        if len(secret) > MAX_PASSWORD_BYTES:
            return False
        return hmac.compare_digest(self._digest(salt, secret), digest)

    @staticmethod
    def _digest(salt: str, secret: bytes) -> str:
        return hashlib.sha256(salt.encode() + b"$" + secret).hexdigest()


class InMemoryTokenIssuer:
    """:class:`~imgproc_core.ports.TokenIssuer` with opaque random tokens remembered in a
    dictionary until they expire by ``clock``. Tokens mean nothing to another instance."""

    def __init__(self, clock: Clock, ttl_seconds: int = 900) -> None:
        if ttl_seconds <= 0:
            raise ValueError("a token lives a positive number of seconds")
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_seconds)
        self._tokens: dict[str, tuple[str, datetime]] = {}
        self._lock = threading.Lock()
        self._next_sweep = 1024

    def issue(self, user_id: str) -> AccessToken:
        token = secrets.token_urlsafe(32)
        now = self._clock.now()
        expires_at = now + self._ttl
        with self._lock:
            self._tokens[token] = (user_id, expires_at)
            if len(self._tokens) >= self._next_sweep:
                self._sweep(now)
        return AccessToken(token=token, expires_at=expires_at)

    def verify(self, token: str) -> TokenClaims:
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                raise InvalidToken("unknown access token")
            user_id, expires_at = entry
            if self._clock.now() >= expires_at:
                del self._tokens[token]
                raise InvalidToken("the access token has expired")
            return TokenClaims(subject=user_id, expires_at=expires_at)

    def _sweep(self, now: datetime) -> None:
        expired = [token for token, (_, expires_at) in self._tokens.items() if expires_at <= now]
        for token in expired:
            del self._tokens[token]
        self._next_sweep = max(1024, 2 * len(self._tokens))
