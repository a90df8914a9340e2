"""Registering, logging in and recognising users."""

from __future__ import annotations

import secrets
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime

from imgproc_core.domain.errors import (
    Conflict,
    InvalidCredentials,
    InvalidToken,
    InvalidUsername,
    UsernameTaken,
)
from imgproc_core.domain.users import MAX_PASSWORD_BYTES, User, check_password, normalize_username
from imgproc_core.ports import AccessToken, Clock, PasswordHasher, TokenIssuer, UnitOfWorkFactory

__all__ = [
    "Authenticate",
    "AuthenticateCommand",
    "AuthenticatedUser",
    "LogIn",
    "LogInCommand",
    "RegisterUser",
    "RegisterUserCommand",
    "Session",
]


@dataclass(frozen=True, slots=True)
class Session:
    """A user and the access token that now speaks for them."""

    user: User
    token: AccessToken


@dataclass(frozen=True, slots=True)
class RegisterUserCommand:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class LogInCommand:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class AuthenticateCommand:
    token: str


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    """The user a token speaks for, and when the token expires (whatever the user's state then:
    a shell that remembers the answer must not remember it past ``expires_at``)."""

    user: User
    expires_at: datetime


def _taken(username: str) -> UsernameTaken:
    return UsernameTaken(f"the username {username!r} is taken")


class RegisterUser:
    """Create an account and log it in.

    Usernames are compared case-insensitively (their normalized form is what is stored). The
    password is hashed before the transaction opens, so the slow hash never holds one open.
    """

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        hasher: PasswordHasher,
        tokens: TokenIssuer,
        clock: Clock,
    ) -> None:
        self._uow_factory = uow_factory
        self._hasher = hasher
        self._tokens = tokens
        self._clock = clock

    def __call__(self, command: RegisterUserCommand) -> Session:
        username = normalize_username(command.username)
        check_password(command.password)
        password_hash = self._hasher.hash(command.password)
        user = User(
            id=uuid.uuid4().hex,
            username=username,
            password_hash=password_hash,
            created_at=self._clock.now(),
        )
        try:
            with self._uow_factory() as uow:
                if uow.users.get_by_username(username) is not None:
                    raise _taken(username)
                uow.users.add(user)
                uow.commit()
        except Conflict:
            # Two registrations of one name raced past the check; the database's unique
            # constraint decided, and the loser hears the same answer as a plain duplicate.
            raise _taken(username) from None
        return Session(user=user, token=self._tokens.issue(user.id))


class LogIn:
    """Exchange a username and password for an access token.

    Every refusal is the same :class:`InvalidCredentials`, and an unknown username costs one
    password verification like a known one (against a hash of a random password, made once
    with the same hasher), so neither the answer nor its timing tells whether a name exists.
    A malformed username or an over-long password is refused at once: that decision depends
    only on what the caller sent, so answering faster reveals nothing about stored accounts.
    """

    def __init__(
        self, uow_factory: UnitOfWorkFactory, hasher: PasswordHasher, tokens: TokenIssuer
    ) -> None:
        self._uow_factory = uow_factory
        self._hasher = hasher
        self._tokens = tokens
        self._dummy_hash: str | None = None
        self._dummy_lock = threading.Lock()

    def __call__(self, command: LogInCommand) -> Session:
        refused = InvalidCredentials("wrong username or password")
        if len(command.password.encode()) > MAX_PASSWORD_BYTES:
            raise refused
        try:
            username = normalize_username(command.username)
        except InvalidUsername:
            raise refused from None
        with self._uow_factory() as uow:
            user = uow.users.get_by_username(username)
        if user is None:
            self._hasher.verify(command.password, self._dummy())
            raise refused
        if not self._hasher.verify(command.password, user.password_hash) or user.disabled:
            raise refused
        return Session(user=user, token=self._tokens.issue(user.id))

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            with self._dummy_lock:
                if self._dummy_hash is None:
                    self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))
        return self._dummy_hash


class Authenticate:
    """The user an access token speaks for, with the token's expiry; :class:`InvalidToken` for
    a bad token or for a user that is gone or disabled since the token was issued."""

    def __init__(self, uow_factory: UnitOfWorkFactory, tokens: TokenIssuer) -> None:
        self._uow_factory = uow_factory
        self._tokens = tokens

    def __call__(self, command: AuthenticateCommand) -> AuthenticatedUser:
        claims = self._tokens.verify(command.token)
        with self._uow_factory() as uow:
            user = uow.users.get(claims.subject)
        if user is None or user.disabled:
            raise InvalidToken("the token's user is unknown or disabled")
        return AuthenticatedUser(user=user, expires_at=claims.expires_at)
