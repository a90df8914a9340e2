"""BearerAuthentication remembers a token that passed, briefly and never past its expiry."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from imgproc_core.domain import User
from imgproc_core.domain.errors import InvalidToken
from imgproc_core.use_cases import AuthenticateCommand
from imgproc_http import security
from imgproc_http.security import (
    AUTHENTICATED_OPT,
    RECHECK_AHEAD_SECONDS,
    REMEMBER_SECONDS,
    BearerAuthentication,
)

NOW = 1_900_000_000.0
USER = User(id="u1", username="ada", password_hash="x", created_at=datetime(2026, 1, 1, tzinfo=UTC))


def token(expires: float | None, subject: str = "u1") -> str:
    claims: dict[str, Any] = {"sub": subject}
    if expires is not None:
        claims["exp"] = int(expires)
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.signature"


class CountingAuthenticate:
    def __init__(self, refuse: bool = False) -> None:
        self.calls: list[str] = []
        self.refuse = refuse

    def __call__(self, command: AuthenticateCommand) -> User:
        self.calls.append(command.token)
        if self.refuse:
            raise InvalidToken("the token's user is unknown or disabled")
        return USER


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


HANDLER = SimpleNamespace(opt={AUTHENTICATED_OPT: True})


def check(guard: BearerAuthentication, presented: str) -> Any:
    connection = SimpleNamespace(headers={"authorization": f"Bearer {presented}"}, scope={})
    asyncio.run(guard(connection, HANDLER))  # type: ignore[arg-type]
    return connection.scope["user"]


def guard_with(authenticate: CountingAuthenticate, clock: Clock) -> BearerAuthentication:
    return BearerAuthentication(authenticate, clock=clock, wall_clock=lambda: NOW)  # type: ignore[arg-type]


def test_a_token_that_passed_is_not_checked_again_at_once() -> None:
    authenticate, clock = CountingAuthenticate(), Clock()
    guard = guard_with(authenticate, clock)
    presented = token(NOW + 900)

    assert check(guard, presented) is USER
    clock.now += REMEMBER_SECONDS / 2
    assert check(guard, presented) is USER

    assert authenticate.calls == [presented]


def test_it_is_checked_again_once_the_moment_has_passed() -> None:
    authenticate, clock = CountingAuthenticate(), Clock()
    guard = guard_with(authenticate, clock)
    presented = token(NOW + 900)

    check(guard, presented)
    clock.now += REMEMBER_SECONDS
    check(guard, presented)

    assert authenticate.calls == [presented, presented]


def test_it_is_never_remembered_past_its_expiry() -> None:
    authenticate, clock = CountingAuthenticate(), Clock()
    guard = guard_with(authenticate, clock)
    presented = token(NOW + REMEMBER_SECONDS / 4)

    check(guard, presented)
    clock.now += REMEMBER_SECONDS / 2
    check(guard, presented)

    assert len(authenticate.calls) == 2


@pytest.mark.parametrize("presented", ["not-a-jwt", token(None), token(NOW - 1)])
def test_a_token_without_a_readable_future_expiry_is_not_remembered(presented: str) -> None:
    authenticate, clock = CountingAuthenticate(), Clock()
    guard = guard_with(authenticate, clock)

    check(guard, presented)
    check(guard, presented)

    assert len(authenticate.calls) == 2


def test_a_refused_token_is_refused_every_time() -> None:
    authenticate, clock = CountingAuthenticate(refuse=True), Clock()
    guard = guard_with(authenticate, clock)
    presented = token(NOW + 900)

    for _ in range(2):
        with pytest.raises(InvalidToken):
            check(guard, presented)

    assert len(authenticate.calls) == 2


def test_only_the_latest_tokens_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "REMEMBERED_TOKENS", 2)
    authenticate, clock = CountingAuthenticate(), Clock()
    guard = guard_with(authenticate, clock)
    first, second, third = (token(NOW + 900, subject) for subject in ("a", "b", "c"))

    for presented in (first, second, third, third, second, first):
        check(guard, presented)

    assert authenticate.calls == [first, second, third, first]


class SlowAuthenticate(CountingAuthenticate):
    """Holds every check until released, so that requests pile up behind the first one."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__(refuse)
        self.release = threading.Event()

    def __call__(self, command: AuthenticateCommand) -> User:
        assert self.release.wait(30), "the test never released the check"
        return super().__call__(command)


def _together(guard: BearerAuthentication, presented: str, requests: int) -> list[Any]:
    """``requests`` requests with the same token at once; what each one ended with."""

    async def all_of_them(authenticate: SlowAuthenticate) -> list[Any]:
        waiting = [asyncio.ensure_future(_one(guard, presented)) for _ in range(requests)]
        await asyncio.sleep(0.05)  # every request is now waiting on the one check
        authenticate.release.set()
        return list(await asyncio.gather(*waiting))

    authenticate = guard._authenticate
    assert isinstance(authenticate, SlowAuthenticate)
    return asyncio.run(all_of_them(authenticate))


def test_requests_with_one_token_at_once_share_one_check() -> None:
    authenticate, clock = SlowAuthenticate(), Clock()
    guard = guard_with(authenticate, clock)
    presented = token(NOW + 900)

    users = _together(guard, presented, 12)

    assert users == [USER] * 12
    assert authenticate.calls == [presented]


def test_a_shared_check_that_refuses_refuses_every_request_waiting_on_it() -> None:
    authenticate, clock = SlowAuthenticate(refuse=True), Clock()
    guard = guard_with(authenticate, clock)
    presented = token(NOW + 900)

    outcomes = _together(guard, presented, 5)

    assert all(isinstance(outcome, InvalidToken) for outcome in outcomes)
    assert authenticate.calls == [presented]
    # Nothing is left behind: the next request checks afresh.
    authenticate.release.set()
    with pytest.raises(InvalidToken):
        check(guard, presented)
    assert len(authenticate.calls) == 2


def test_a_token_about_to_be_forgotten_is_checked_again_without_making_the_request_wait() -> None:
    authenticate, clock = SlowAuthenticate(), Clock()
    authenticate.release.set()
    guard = guard_with(authenticate, clock)
    presented = token(NOW + 900)

    async def scenario() -> tuple[Any, int, Any]:
        first = await _one(guard, presented)
        authenticate.release.clear()  # the re-check will hang until released
        clock.now += REMEMBER_SECONDS - RECHECK_AHEAD_SECONDS / 2
        served = await _one(guard, presented)  # answered from memory, re-check started
        started = len(guard._checking)
        authenticate.release.set()
        await asyncio.gather(*guard._checking.values())
        clock.now += RECHECK_AHEAD_SECONDS  # past the first lifetime, within the new one
        return served, started, (first, await _one(guard, presented))

    served, started, (first, later) = asyncio.run(scenario())

    assert served is first is later is USER
    assert started == 1
    assert authenticate.calls == [presented, presented]


def test_a_background_check_that_refuses_forgets_the_token_at_once() -> None:
    authenticate, clock = CountingAuthenticate(), Clock()
    guard = guard_with(authenticate, clock)
    presented = token(NOW + 900)

    async def scenario() -> Any:
        await _one(guard, presented)
        authenticate.refuse = True  # the user is disabled meanwhile
        clock.now += REMEMBER_SECONDS - RECHECK_AHEAD_SECONDS / 2
        await _one(guard, presented)
        await asyncio.gather(*guard._checking.values(), return_exceptions=True)
        return await _one(guard, presented)

    outcome = asyncio.run(scenario())

    assert isinstance(outcome, InvalidToken)
    assert len(authenticate.calls) == 3


async def _one(guard: BearerAuthentication, presented: str) -> Any:
    connection = SimpleNamespace(headers={"authorization": f"Bearer {presented}"}, scope={})
    try:
        await guard(connection, HANDLER)  # type: ignore[arg-type]
    except InvalidToken as exc:
        return exc
    return connection.scope["user"]
