"""Bearer-token authentication: a guard that runs before the request body is read.

Guards run before Litestar parses the body, so an unauthenticated upload is refused without
reading its bytes. The user the token speaks for is put on the connection (``request.user``,
read by handlers through :func:`imgproc_http.context.caller`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from imgproc_core.domain.errors import InvalidToken
from imgproc_core.ports import Clock
from imgproc_core.use_cases import Authenticate, AuthenticateCommand, AuthenticatedUser
from imgproc_core.use_cases.admin import TOKENS_REFUSED_WITHIN_SECONDS

#: The OpenAPI security scheme of every route that needs a token.
BEARER_SCHEME: Final = "BearerToken"
#: Handler ``opt`` key (set on a controller for all its routes): a valid token is required.
AUTHENTICATED_OPT: Final = "authenticated"
#: Tokens are a few hundred bytes; anything much longer is not one of ours.
MAX_TOKEN_CHARS: Final = 4096
#: How long the answer of a token's check is taken as good, from the moment the check began:
#: as long as :class:`~imgproc_core.use_cases.DisableUser` lets a disabled user's tokens work.
REMEMBER_SECONDS: Final[float] = TOKENS_REFUSED_WITHIN_SECONDS
#: A remembered token this close to being forgotten is checked again in the background, so a
#: busy client's requests do not wait for the check.
RECHECK_AHEAD_SECONDS: Final = 0.5
#: How many tokens are remembered at most (the least recently checked are forgotten first).
REMEMBERED_TOKENS: Final = 4096

_REMEMBER: Final = timedelta(seconds=REMEMBER_SECONDS)
_RECHECK_AHEAD: Final = timedelta(seconds=RECHECK_AHEAD_SECONDS)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; InvalidToken otherwise."""
    if not authorization:
        raise InvalidToken("an access token is required: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token


@dataclass(frozen=True, slots=True)
class _Passed:
    """A token's check that passed: its answer holds from ``checked_at`` (when the check
    began) until ``until``, and is renewed in the background from ``recheck_at``."""

    authenticated: AuthenticatedUser
    checked_at: datetime
    until: datetime
    #: None when the token's own expiry ends the answer: checking again would not extend it.
    recheck_at: datetime | None

    def holds_at(self, now: datetime) -> bool:
        # Before ``checked_at`` only if the clock was set back: then nothing is known.
        return self.checked_at <= now < self.until


@dataclass(frozen=True, slots=True)
class _Check:
    outcome: asyncio.Future[AuthenticatedUser]
    began_at: datetime


class BearerAuthentication:
    """A guard: on routes marked with :data:`AUTHENTICATED_OPT`, the request carries a valid
    access token of an enabled user, or it is refused with 401.

    A client sends the same token with every request, and checking it costs a database query
    and a hop to a worker thread, several times what serving a cached download URL costs. So a
    check's answer is taken as good for :data:`REMEMBER_SECONDS` from the moment the check
    began, never past the token's expiry (as the token issuer reports it). Every request is
    therefore answered by a check that began at most that long before it: a user disabled
    since is refused :data:`REMEMBER_SECONDS` after being disabled at the latest.

    Requests that carry the same token while it is being checked wait for that one check
    rather than each making their own (unless it began too long ago to answer them), and a
    token still in use shortly before it would be forgotten is checked again in the background
    (:data:`RECHECK_AHEAD_SECONDS`): a client that keeps sending requests never waits for a
    check after its first request.

    Time is the service's :class:`~imgproc_core.ports.Clock`, the one the token issuer checks
    expiry by.
    """

    def __init__(self, authenticate: Authenticate, clock: Clock) -> None:
        self._authenticate = authenticate
        self._clock = clock
        self._passed: OrderedDict[str, _Passed] = OrderedDict()
        self._checking: dict[str, _Check] = {}

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        if not handler.opt.get(AUTHENTICATED_OPT):
            return
        token = bearer_token(connection.headers.get("authorization"))
        now = self._clock.now()
        authenticated = self._remembered(token, now)
        if authenticated is None:
            # Shielded: a request that goes away must not cancel the others' check.
            authenticated = await asyncio.shield(self._check(token, now))
        connection.scope["user"] = authenticated.user

    def _check(self, token: str, now: datetime) -> asyncio.Future[AuthenticatedUser]:
        """A check of ``token`` that may answer a request arriving ``now``: the one under way,
        unless it began too long ago, or a new one."""
        under_way = self._under_way(token, now)
        if under_way is not None:
            return under_way
        outcome = asyncio.ensure_future(self._look_up(token, began_at=now))
        self._checking[token] = _Check(outcome, began_at=now)
        outcome.add_done_callback(lambda _: self._check_ended(token, outcome))
        return outcome

    def _under_way(self, token: str, now: datetime) -> asyncio.Future[AuthenticatedUser] | None:
        check = self._checking.get(token)
        if check is None or now - check.began_at >= _REMEMBER:
            return None
        return check.outcome

    def _check_ended(self, token: str, outcome: asyncio.Future[AuthenticatedUser]) -> None:
        under_way = self._checking.get(token)
        if under_way is not None and under_way.outcome is outcome:
            del self._checking[token]

    async def _look_up(self, token: str, began_at: datetime) -> AuthenticatedUser:
        # The user lookup is a database query: keep it off the event loop.
        try:
            authenticated = await anyio.to_thread.run_sync(
                self._authenticate, AuthenticateCommand(token=token)
            )
        except BaseException:
            self._passed.pop(token, None)
            raise
        self._remember(token, authenticated, began_at)
        return authenticated

    def _check_ahead(self, token: str, now: datetime) -> None:
        if self._under_way(token, now) is not None:
            return
        # Nobody awaits it: its outcome is read here, so a refusal is not reported as unseen.
        self._check(token, now).add_done_callback(_outcome_read)

    def _remembered(self, token: str, now: datetime) -> AuthenticatedUser | None:
        passed = self._passed.get(token)
        if passed is None:
            return None
        if not passed.holds_at(now):
            self._passed.pop(token, None)
            return None
        if passed.recheck_at is not None and now >= passed.recheck_at:
            self._check_ahead(token, now)
        return passed.authenticated

    def _remember(self, token: str, authenticated: AuthenticatedUser, checked_at: datetime) -> None:
        earlier = self._passed.get(token)
        if earlier is not None and earlier.checked_at > checked_at:
            return  # a check that began later has answered already
        remembered_until = checked_at + _REMEMBER
        until = min(remembered_until, authenticated.expires_at)
        if until <= self._clock.now():
            return
        recheck_at = remembered_until - _RECHECK_AHEAD if until == remembered_until else None
        self._passed[token] = _Passed(authenticated, checked_at, until, recheck_at)
        self._passed.move_to_end(token)
        while len(self._passed) > REMEMBERED_TOKENS:
            self._passed.popitem(last=False)


def _outcome_read(check: asyncio.Future[AuthenticatedUser]) -> None:
    if not check.cancelled():
        check.exception()
