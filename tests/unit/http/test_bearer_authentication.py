"""BearerAuthentication remembers a token that passed, briefly and never past its expiry, and
never answers a request with a check that began more than REMEMBER_SECONDS before it."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain import User
from imgproc_core.domain.errors import InvalidToken
from imgproc_core.use_cases import AuthenticateCommand, AuthenticatedUser
from imgproc_core.use_cases.admin import TOKENS_REFUSED_WITHIN_SECONDS
from imgproc_http import security
from imgproc_http.security import (
    AUTHENTICATED_OPT,
    RECHECK_AHEAD_SECONDS,
    REMEMBER_SECONDS,
    BearerAuthentication,
)

USER = User(id="u1", username="ada", password_hash="x", created_at=datetime(2026, 1, 1, tzinfo=UTC))
#: How long the tokens of these tests live unless a test says otherwise.
LIFETIME = timedelta(seconds=900)


class CountingAuthenticate:
    """Authenticate's stand-in: every token is USER's, expiring at ``expires_at`` (or
    LIFETIME after the clock's start); ``refuse`` makes it refuse them all."""

    def __init__(self, clock: ManualClock, refuse: bool = False) -> None:
        self.calls: list[str] = []
        self.refuse = refuse
        self.expires_at: dict[str, datetime] = {}
        self._default_expiry = clock.now() + LIFETIME

    def __call__(self, command: AuthenticateCommand) -> AuthenticatedUser:
        return self._answer(command.token, self.refuse)

    def _answer(self, token: str, refuse: bool) -> AuthenticatedUser:
        self.calls.append(token)
        if refuse:
            raise InvalidToken("the token's user is unknown or disabled")
        expires_at = self.expires_at.get(token, self._default_expiry)
        return AuthenticatedUser(user=USER, expires_at=expires_at)


HANDLER = SimpleNamespace(opt={AUTHENTICATED_OPT: True})


def check(guard: BearerAuthentication, presented: str) -> Any:
    connection = SimpleNamespace(headers={"authorization": f"Bearer {presented}"}, scope={})
    asyncio.run(guard(connection, HANDLER))  # type: ignore[arg-type]
    return connection.scope["user"]


def guard_with(authenticate: CountingAuthenticate, clock: ManualClock) -> BearerAuthentication:
    return BearerAuthentication(authenticate, clock)  # type: ignore[arg-type]


def test_a_token_is_remembered_no_longer_than_disabling_a_user_promises() -> None:
    assert REMEMBER_SECONDS == TOKENS_REFUSED_WITHIN_SECONDS


def test_a_token_that_passed_is_not_checked_again_at_once() -> None:
    clock = ManualClock()
    authenticate = CountingAuthenticate(clock)
    guard = guard_with(authenticate, clock)

    assert check(guard, "token") is USER
    clock.advance(REMEMBER_SECONDS / 2)
    assert check(guard, "token") is USER

    assert authenticate.calls == ["token"]


def test_it_is_checked_again_once_the_moment_has_passed() -> None:
    clock = ManualClock()
    authenticate = CountingAuthenticate(clock)
    guard = guard_with(authenticate, clock)

    check(guard, "token")
    clock.advance(REMEMBER_SECONDS)
    check(guard, "token")

    assert authenticate.calls == ["token", "token"]


def test_it_is_never_remembered_past_the_expiry_the_check_reports() -> None:
    clock = ManualClock()
    authenticate = CountingAuthenticate(clock)
    authenticate.expires_at["token"] = clock.now() + timedelta(seconds=REMEMBER_SECONDS / 4)
    guard = guard_with(authenticate, clock)

    check(guard, "token")
    clock.advance(REMEMBER_SECONDS / 8)
    check(guard, "token")
    clock.advance(REMEMBER_SECONDS / 8)
    check(guard, "token")

    assert authenticate.calls == ["token", "token"]


def test_a_token_past_its_expiry_that_still_passes_is_not_remembered() -> None:
    """An issuer may accept a token for a few seconds past its expiry (clock skew)."""
    clock = ManualClock()
    authenticate = CountingAuthenticate(clock)
    authenticate.expires_at["token"] = clock.now() - timedelta(seconds=1)
    guard = guard_with(authenticate, clock)

    check(guard, "token")
    check(guard, "token")

    assert len(authenticate.calls) == 2


def test_nothing_is_taken_as_good_after_the_clock_was_set_back() -> None:
    clock = ManualClock()
    authenticate = CountingAuthenticate(clock)
    guard = guard_with(authenticate, clock)
    clock.advance(3600)
    check(guard, "token")

    # What was checked at a time that has not come yet is not known now.
    guard._clock = ManualClock()
    check(guard, "token")

    assert len(authenticate.calls) == 2


def test_a_refused_token_is_refused_every_time() -> None:
    clock = ManualClock()
    authenticate = CountingAuthenticate(clock, refuse=True)
    guard = guard_with(authenticate, clock)

    for _ in range(2):
        with pytest.raises(InvalidToken):
            check(guard, "token")

    assert len(authenticate.calls) == 2


def test_only_the_latest_tokens_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "REMEMBERED_TOKENS", 2)
    clock = ManualClock()
    authenticate = CountingAuthenticate(clock)
    guard = guard_with(authenticate, clock)

    for presented in ("a", "b", "c", "c", "b", "a"):
        check(guard, presented)

    assert authenticate.calls == ["a", "b", "c", "a"]


class SlowAuthenticate(CountingAuthenticate):
    """Holds every check until released, so that requests pile up behind the first one. A
    check answers by the user's state when it began, as a query that read it then would."""

    def __init__(self, clock: ManualClock, refuse: bool = False) -> None:
        super().__init__(clock, refuse)
        self.began = threading.Semaphore(0)
        self.release = threading.Event()

    def __call__(self, command: AuthenticateCommand) -> AuthenticatedUser:
        refuse = self.refuse
        self.began.release()
        assert self.release.wait(30), "the test never released the check"
        return self._answer(command.token, refuse)

    async def wait_for_a_check(self) -> None:
        """Wait until one more check has begun (read the user's state, and holds)."""
        assert await asyncio.to_thread(self.began.acquire, timeout=30), "no check began"


def _together(guard: BearerAuthentication, presented: str, requests: int) -> list[Any]:
    """``requests`` requests with the same token at once; what each one ended with."""

    async def all_of_them(authenticate: SlowAuthenticate) -> list[Any]:
        waiting = [asyncio.ensure_future(_one(guard, presented)) for _ in range(requests)]
        # The first request starts the check (on a worker thread) once every request has
        # started: when it has begun, every request is waiting on it.
        await authenticate.wait_for_a_check()
        authenticate.release.set()
        return list(await asyncio.gather(*waiting))

    authenticate = guard._authenticate
    assert isinstance(authenticate, SlowAuthenticate)
    return asyncio.run(all_of_them(authenticate))


def test_requests_with_one_token_at_once_share_one_check() -> None:
    clock = ManualClock()
    authenticate = SlowAuthenticate(clock)
    guard = guard_with(authenticate, clock)

    users = _together(guard, "token", 12)

    assert users == [USER] * 12
    assert authenticate.calls == ["token"]


def test_a_shared_check_that_refuses_refuses_every_request_waiting_on_it() -> None:
    clock = ManualClock()
    authenticate = SlowAuthenticate(clock, refuse=True)
    guard = guard_with(authenticate, clock)

    outcomes = _together(guard, "token", 5)

    assert all(isinstance(outcome, InvalidToken) for outcome in outcomes)
    assert authenticate.calls == ["token"]
    # Nothing is left behind: the next request checks afresh.
    authenticate.release.set()
    with pytest.raises(InvalidToken):
        check(guard, "token")
    assert len(authenticate.calls) == 2


def test_a_request_does_not_wait_on_a_check_that_began_too_long_before_it() -> None:
    """A check that began before the user was disabled may still be under way (a slow
    database); a request REMEMBER_SECONDS later gets a check of its own, which sees the user as
    they are now."""
    clock = ManualClock()
    authenticate = SlowAuthenticate(clock)
    guard = guard_with(authenticate, clock)

    async def scenario() -> tuple[Any, Any]:
        first = asyncio.ensure_future(_one(guard, "token"))
        await authenticate.wait_for_a_check()  # the first check is under way, held
        clock.advance(REMEMBER_SECONDS)
        authenticate.refuse = True  # the user was disabled meanwhile
        later = asyncio.ensure_future(_one(guard, "token"))
        await authenticate.wait_for_a_check()
        authenticate.release.set()
        return await first, await later

    first, later = asyncio.run(scenario())

    assert first is USER
    assert isinstance(later, InvalidToken)
    assert authenticate.calls == ["token", "token"]


def test_an_answer_is_remembered_from_when_its_check_began() -> None:
    """A check that takes long does not lengthen how long its answer is taken as good."""
    clock = ManualClock()
    authenticate = SlowAuthenticate(clock)
    guard = guard_with(authenticate, clock)

    async def scenario() -> None:
        first = asyncio.ensure_future(_one(guard, "token"))
        await authenticate.wait_for_a_check()
        clock.advance(REMEMBER_SECONDS / 2)  # the check takes half the time
        authenticate.release.set()
        assert await first is USER
        clock.advance(REMEMBER_SECONDS / 2)
        assert await _one(guard, "token") is USER

    asyncio.run(scenario())

    assert authenticate.calls == ["token", "token"]


def test_a_token_about_to_be_forgotten_is_checked_again_without_making_the_request_wait() -> None:
    clock = ManualClock()
    authenticate = SlowAuthenticate(clock)
    authenticate.release.set()
    guard = guard_with(authenticate, clock)

    async def scenario() -> tuple[Any, int, Any]:
        first = await _one(guard, "token")
        authenticate.release.clear()  # the re-check will hang until released
        clock.advance(REMEMBER_SECONDS - RECHECK_AHEAD_SECONDS / 2)
        served = await _one(guard, "token")  # answered from memory, re-check started
        started = len(guard._checking)
        authenticate.release.set()
        await asyncio.gather(*(check.outcome for check in guard._checking.values()))
        clock.advance(RECHECK_AHEAD_SECONDS)  # past the first lifetime, within the new one
        return served, started, (first, await _one(guard, "token"))

    served, started, (first, later) = asyncio.run(scenario())

    assert served is first is later is USER
    assert started == 1
    assert authenticate.calls == ["token", "token"]


def test_a_token_whose_expiry_ends_its_answer_is_not_checked_ahead() -> None:
    clock = ManualClock()
    authenticate = CountingAuthenticate(clock)
    authenticate.expires_at["token"] = clock.now() + timedelta(seconds=REMEMBER_SECONDS / 2)
    guard = guard_with(authenticate, clock)

    check(guard, "token")
    clock.advance(REMEMBER_SECONDS / 2 - RECHECK_AHEAD_SECONDS / 2)
    check(guard, "token")

    assert authenticate.calls == ["token"]


def test_a_background_check_that_refuses_forgets_the_token_at_once() -> None:
    clock = ManualClock()
    authenticate = CountingAuthenticate(clock)
    guard = guard_with(authenticate, clock)

    async def scenario() -> Any:
        await _one(guard, "token")
        authenticate.refuse = True  # the user is disabled meanwhile
        clock.advance(REMEMBER_SECONDS - RECHECK_AHEAD_SECONDS / 2)
        await _one(guard, "token")
        checks = [check.outcome for check in guard._checking.values()]
        await asyncio.gather(*checks, return_exceptions=True)
        return await _one(guard, "token")

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
