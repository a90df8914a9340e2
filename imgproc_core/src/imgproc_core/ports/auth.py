from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str:
        """A salted, slow hash of ``password`` (at most 72 bytes in UTF-8)."""
        ...

    def verify(self, password: str, password_hash: str) -> bool:
        """Whether ``password`` matches; False (never an exception) for a malformed hash."""
        ...


@dataclass(frozen=True, slots=True)
class AccessToken:
    token: str
    expires_at: datetime
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid access token says: whom it speaks for, and until when."""

    subject: str
    #: The expiry it was issued with (:attr:`AccessToken.expires_at`), timezone-aware, in UTC.
    #: Past it the token is refused, give or take the issuer's allowance for clock skew.
    expires_at: datetime


class TokenIssuer(Protocol):
    def issue(self, user_id: str) -> AccessToken:
        """A short-lived access token naming ``user_id`` as its subject."""
        ...

    def verify(self, token: str) -> TokenClaims:
        """The claims of a valid token; :class:`~imgproc_core.domain.errors.InvalidToken`
        for anything else (bad signature, other algorithm, expired, wrong issuer/audience)."""
        ...
