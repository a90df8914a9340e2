"""Registering, logging in and authenticating."""

from __future__ import annotations

from dataclasses import replace

import pytest

from imgproc_core.adapters.memory import (
    InMemoryDatabase,
    InMemoryPasswordHasher,
    InMemoryTokenIssuer,
    InMemoryUnitOfWork,
    ManualClock,
)
from imgproc_core.domain.errors import (
    Conflict,
    InvalidCredentials,
    InvalidPassword,
    InvalidToken,
    InvalidUsername,
    UsernameTaken,
)
from imgproc_core.ports import UnitOfWorkFactory
from imgproc_core.use_cases import (
    Authenticate,
    AuthenticateCommand,
    AuthenticatedUser,
    LogIn,
    LogInCommand,
    RegisterUser,
    RegisterUserCommand,
)

PASSWORD = "correct horse"


class CountingHasher:
    """The in-memory hasher, counting its calls and recording the hashes it verified against."""

    def __init__(self) -> None:
        self._inner = InMemoryPasswordHasher()
        self.hashed = 0
        self.verified_against: list[str] = []

    def hash(self, password: str) -> str:
        self.hashed += 1
        return self._inner.hash(password)

    def verify(self, password: str, password_hash: str) -> bool:
        self.verified_against.append(password_hash)
        return self._inner.verify(password, password_hash)


@pytest.fixture
def log_in(
    uow_factory: UnitOfWorkFactory, hasher: InMemoryPasswordHasher, tokens: InMemoryTokenIssuer
) -> LogIn:
    return LogIn(uow_factory, hasher, tokens)


@pytest.fixture
def authenticate(uow_factory: UnitOfWorkFactory, tokens: InMemoryTokenIssuer) -> Authenticate:
    return Authenticate(uow_factory, tokens)


def disable(uow_factory: UnitOfWorkFactory, user_id: str) -> None:
    with uow_factory() as uow:
        user = uow.users.get(user_id)
        assert user is not None
        uow.users.update(replace(user, disabled=True))
        uow.commit()


# -- register ------------------------------------------------------------------------------------


def test_register_stores_the_user_and_logs_them_in(
    register_user: RegisterUser,
    uow_factory: UnitOfWorkFactory,
    tokens: InMemoryTokenIssuer,
    hasher: InMemoryPasswordHasher,
    clock: ManualClock,
) -> None:
    session = register_user(RegisterUserCommand("  Alice.Smith ", PASSWORD))

    assert session.user.username == "alice.smith"
    assert session.user.created_at == clock.now()
    assert not session.user.disabled
    assert tokens.verify(session.token.token).subject == session.user.id
    with uow_factory() as uow:
        stored = uow.users.get_by_username("alice.smith")
    assert stored == session.user
    assert stored.password_hash != PASSWORD
    assert hasher.verify(PASSWORD, stored.password_hash)


@pytest.mark.parametrize("second", ["alice", "ALICE", "Alice", " alice "])
def test_a_taken_username_is_refused_whatever_its_case(
    register_user: RegisterUser, database: InMemoryDatabase, second: str
) -> None:
    register_user(RegisterUserCommand("alice", PASSWORD))
    with pytest.raises(UsernameTaken):
        register_user(RegisterUserCommand(second, "another password"))
    assert len(database.users) == 1


def test_a_registration_that_loses_the_race_hears_username_taken(
    database: InMemoryDatabase,
    clock: ManualClock,
    hasher: InMemoryPasswordHasher,
    tokens: InMemoryTokenIssuer,
) -> None:
    """The name is free when checked and taken by the time of the commit."""
    rival = RegisterUser(lambda: InMemoryUnitOfWork(database, clock), hasher, tokens, clock)

    class RivalRegistersFirst(InMemoryUnitOfWork):
        def commit(self) -> None:
            rival(RegisterUserCommand("alice", "rival password"))
            super().commit()

    racing = RegisterUser(lambda: RivalRegistersFirst(database, clock), hasher, tokens, clock)
    with pytest.raises(UsernameTaken):
        racing(RegisterUserCommand("Alice", PASSWORD))
    assert [user.username for user in database.users.values()] == ["alice"]


def test_a_conflict_at_commit_is_reported_as_username_taken(
    database: InMemoryDatabase,
    clock: ManualClock,
    hasher: InMemoryPasswordHasher,
    tokens: InMemoryTokenIssuer,
) -> None:
    """A database may report the race as a plain unique-key conflict."""

    class ConflictAtCommit(InMemoryUnitOfWork):
        def commit(self) -> None:
            raise Conflict("duplicate key value violates unique constraint")

    register = RegisterUser(lambda: ConflictAtCommit(database, clock), hasher, tokens, clock)
    with pytest.raises(UsernameTaken) as raised:
        register(RegisterUserCommand("alice", PASSWORD))
    assert "alice" in raised.value.message
    assert database.users == {}


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short", "at least"),
        ("x" * 73, "at most 72 bytes"),
        ("\u00e9" * 37, "at most 72 bytes"),  # 37 characters, 74 bytes
    ],
)
def test_a_bad_password_is_refused_at_register(
    register_user: RegisterUser, database: InMemoryDatabase, password: str, why: str
) -> None:
    with pytest.raises(InvalidPassword) as raised:
        register_user(RegisterUserCommand("alice", password))
    assert raised.value.field == "password"
    assert why in raised.value.message
    assert database.users == {}


def test_a_72_byte_password_is_accepted(register_user: RegisterUser, log_in: LogIn) -> None:
    password = "y" * 72
    register_user(RegisterUserCommand("alice", password))
    assert log_in(LogInCommand("alice", password)).user.username == "alice"


@pytest.mark.parametrize("username", ["ab", "-alice", "al ice", "a/b", "x" * 33, ""])
def test_a_malformed_username_is_refused_at_register(
    register_user: RegisterUser, username: str
) -> None:
    with pytest.raises(InvalidUsername) as raised:
        register_user(RegisterUserCommand(username, PASSWORD))
    assert raised.value.field == "username"


# -- log in --------------------------------------------------------------------------------------


def test_log_in_with_the_right_password(
    register_user: RegisterUser, log_in: LogIn, tokens: InMemoryTokenIssuer
) -> None:
    registered = register_user(RegisterUserCommand("alice", PASSWORD)).user
    session = log_in(LogInCommand("ALICE", PASSWORD))
    assert session.user == registered
    assert tokens.verify(session.token.token).subject == registered.id


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("a!", PASSWORD),
        ("alice", PASSWORD + "x" * 60),  # over 72 bytes
        ("alice", ""),
    ],
    ids=["wrong password", "unknown user", "malformed username", "73+ bytes", "empty"],
)
def test_every_refusal_is_invalid_credentials(
    register_user: RegisterUser, log_in: LogIn, username: str, password: str
) -> None:
    register_user(RegisterUserCommand("alice", PASSWORD))
    with pytest.raises(InvalidCredentials) as raised:
        log_in(LogInCommand(username, password))
    assert raised.value.message == "wrong username or password"


def test_a_disabled_user_cannot_log_in(
    register_user: RegisterUser, log_in: LogIn, uow_factory: UnitOfWorkFactory
) -> None:
    user = register_user(RegisterUserCommand("alice", PASSWORD)).user
    disable(uow_factory, user.id)
    with pytest.raises(InvalidCredentials):
        log_in(LogInCommand("alice", PASSWORD))


def test_an_unknown_user_costs_one_verification_against_a_dummy_hash(
    uow_factory: UnitOfWorkFactory, tokens: InMemoryTokenIssuer, clock: ManualClock
) -> None:
    hasher = CountingHasher()
    RegisterUser(uow_factory, hasher, tokens, clock)(RegisterUserCommand("alice", PASSWORD))
    log_in = LogIn(uow_factory, hasher, tokens)
    assert hasher.hashed == 1  # the dummy hash is made lazily, not at construction

    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            log_in(LogInCommand("nobody", PASSWORD))

    assert hasher.hashed == 2  # once for alice, once for the dummy, however many attempts
    assert len(hasher.verified_against) == 3
    assert len(set(hasher.verified_against)) == 1
    with uow_factory() as uow:
        alice = uow.users.get_by_username("alice")
    assert alice is not None
    assert hasher.verified_against[0] != alice.password_hash


def test_a_known_user_with_a_wrong_password_costs_one_verification(
    uow_factory: UnitOfWorkFactory, tokens: InMemoryTokenIssuer, clock: ManualClock
) -> None:
    hasher = CountingHasher()
    RegisterUser(uow_factory, hasher, tokens, clock)(RegisterUserCommand("alice", PASSWORD))
    with pytest.raises(InvalidCredentials):
        LogIn(uow_factory, hasher, tokens)(LogInCommand("alice", "wrong password"))
    assert len(hasher.verified_against) == 1


# -- authenticate --------------------------------------------------------------------------------


def test_authenticate_returns_the_tokens_user_and_when_the_token_expires(
    register_user: RegisterUser, authenticate: Authenticate
) -> None:
    session = register_user(RegisterUserCommand("alice", PASSWORD))
    assert authenticate(AuthenticateCommand(session.token.token)) == AuthenticatedUser(
        user=session.user, expires_at=session.token.expires_at
    )


def test_a_bad_token_is_refused(authenticate: Authenticate) -> None:
    with pytest.raises(InvalidToken):
        authenticate(AuthenticateCommand("not-a-token"))


def test_an_expired_token_is_refused(
    register_user: RegisterUser, authenticate: Authenticate, clock: ManualClock
) -> None:
    session = register_user(RegisterUserCommand("alice", PASSWORD))
    clock.advance(3600)
    with pytest.raises(InvalidToken):
        authenticate(AuthenticateCommand(session.token.token))


def test_a_disabled_users_token_is_refused(
    register_user: RegisterUser, authenticate: Authenticate, uow_factory: UnitOfWorkFactory
) -> None:
    session = register_user(RegisterUserCommand("alice", PASSWORD))
    disable(uow_factory, session.user.id)
    with pytest.raises(InvalidToken):
        authenticate(AuthenticateCommand(session.token.token))


def test_a_deleted_users_token_is_refused(
    register_user: RegisterUser, authenticate: Authenticate, database: InMemoryDatabase
) -> None:
    session = register_user(RegisterUserCommand("alice", PASSWORD))
    with database.lock:
        del database.users[session.user.id]
    with pytest.raises(InvalidToken):
        authenticate(AuthenticateCommand(session.token.token))
