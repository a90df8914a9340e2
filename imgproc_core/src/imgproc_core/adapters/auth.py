"""Passwords with bcrypt and access tokens as JWTs (HS256); the ``auth`` extra."""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime
from typing import Any, Final

import bcrypt
import jwt

from imgproc_core.domain.errors import InvalidToken
from imgproc_core.domain.users import MAX_PASSWORD_BYTES
from imgproc_core.ports.auth import AccessToken, TokenClaims
from imgproc_core.ports.clock import Clock

DEFAULT_BCRYPT_ROUNDS: Final = 12
#: RFC 7518 section 3.2: an HS256 key is at least as long as the hash, 256 bits.
MIN_SECRET_BYTES: Final = 32
#: How far the clocks of the issuing and the verifying process may disagree.
LEEWAY_SECONDS: Final = 5
_ALGORITHM: Final = "HS256"
_REQUIRED_CLAIMS: Final = ("exp", "iat", "sub", "iss", "aud")


class WeakSecret(ValueError):
    """A signing secret too short to resist guessing."""


class BcryptPasswordHasher:
    """:class:`~imgproc_core.ports.PasswordHasher` with bcrypt at cost ``rounds``.

    Passwords longer than 72 bytes in UTF-8 raise ``ValueError`` from :meth:`hash` (bcrypt would
    read only their start) and never verify. :meth:`verify` answers False for a malformed hash
    instead of raising.
    """

    def __init__(self, rounds: int = DEFAULT_BCRYPT_ROUNDS) -> None:
        if not 4 <= rounds <= 31:
            raise ValueError(f"bcrypt's cost is between 4 and 31, not {rounds}")
        self._rounds = rounds

    def hash(self, password: str) -> str:
        secret = password.encode()
        if len(secret) > MAX_PASSWORD_BYTES:
            raise ValueError(f"a password is at most {MAX_PASSWORD_BYTES} bytes")
        return bcrypt.hashpw(secret, bcrypt.gensalt(self._rounds)).decode("ascii")

    def verify(self, password: str, password_hash: str) -> bool:
        try:
            return bcrypt.checkpw(password.encode(), password_hash.encode())
        except ValueError:
            # bcrypt's answer to a malformed hash ("Invalid salt") and to a password over 72
            # bytes; UnicodeEncodeError (a lone surrogate) is a ValueError too.
            return False


class JwtTokenIssuer:
    """:class:`~imgproc_core.ports.TokenIssuer` with JWTs signed by HS256, and nothing else.

    Tokens carry ``sub``, ``iat``, ``nbf``, ``exp``, ``iss``, ``aud`` and a random ``jti``.
    Verification pins the algorithm, requires the claims the service relies on and checks
    issuer and audience.

    The times (``exp``, ``nbf``, ``iat``) are checked here against the injected clock rather
    than by PyJWT, which would read the system time: issuing and verifying then agree on what
    "now" is, in production (where the clock is the system's) and in tests (where it is moved
    by hand).
    """

    def __init__(
        self,
        secret: str,
        clock: Clock,
        issuer: str = "imgproc",
        audience: str = "imgproc-api",
        ttl_seconds: int = 900,
    ) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise WeakSecret(f"the token secret must be at least {MIN_SECRET_BYTES} bytes long")
        if ttl_seconds <= 0:
            raise ValueError("a token lives a positive number of seconds")
        self._secret = secret
        self._clock = clock
        self._issuer = issuer
        self._audience = audience
        self._ttl_seconds = ttl_seconds

    def issue(self, user_id: str) -> AccessToken:
        issued_at = math.floor(self._clock.now().timestamp())
        expires = issued_at + self._ttl_seconds
        claims = {
            "sub": user_id,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": expires,
            "iss": self._issuer,
            "aud": self._audience,
            "jti": secrets.token_urlsafe(16),
        }
        token = jwt.encode(claims, self._secret, algorithm=_ALGORITHM)
        return AccessToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC))

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid access token: {exc}") from None
        expires_at = self._check_times(claims)
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("invalid access token: no subject")
        return TokenClaims(subject=subject, expires_at=expires_at)

    def _check_times(self, claims: dict[str, Any]) -> datetime:
        """The token's expiry, once its times have been checked against the clock."""
        now = self._clock.now().timestamp()
        expires = _timestamp(claims, "exp")
        issued_at = _timestamp(claims, "iat")
        not_before = _timestamp(claims, "nbf") if "nbf" in claims else issued_at
        if expires is None or issued_at is None or not_before is None:
            raise InvalidToken("invalid access token: a time claim is not a number")
        if expires <= now - LEEWAY_SECONDS:
            raise InvalidToken("the access token has expired")
        if issued_at > now + LEEWAY_SECONDS or not_before > now + LEEWAY_SECONDS:
            raise InvalidToken("the access token is not valid yet")
        try:
            return datetime.fromtimestamp(expires, UTC)
        except (OverflowError, OSError, ValueError):
            # Past the year 9999: not a token this issuer made.
            raise InvalidToken("invalid access token: the expiry is out of range") from None


def _timestamp(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        moment = float(value)
    except OverflowError:
        return None
    return moment if math.isfinite(moment) else None
