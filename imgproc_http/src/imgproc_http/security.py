"""Bearer-token authentication: a guard that runs before the request body is read.

Guards run before Litestar parses the body, so an unauthenticated upload is refused without
reading its bytes. The user the token speaks for is put on the connection (``request.user``,
read by handlers through :func:`imgproc_http.context.caller`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from imgproc_core.domain import User
from imgproc_core.domain.errors import InvalidToken
from imgproc_core.use_cases import Authenticate, AuthenticateCommand

#: The OpenAPI security scheme of every route that needs a token.
BEARER_SCHEME: Final = "BearerToken"
#: Handler ``opt`` key (set on a controller for all its routes): a valid token is required.
AUTHENTICATED_OPT: Final = "authenticated"
#: Tokens are a few hundred bytes; anything much longer is not one of ours.
MAX_TOKEN_CHARS: Final = 4096
#: How long a token that passed is taken as good without asking again, and how many are kept.
REMEMBER_SECONDS: Final = 2.0
#: A remembered token this close to being forgotten is checked again in the background, so a
#: busy client's requests do not wait for the check.
RECHECK_AHEAD_SECONDS: Final = 0.5
REMEMBERED_TOKENS: Final = 4096


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; InvalidToken otherwise."""
    if not authorization:
        raise InvalidToken("an access token is required: send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token


class BearerAuthentication:
    """A guard: on routes marked with :data:`AUTHENTICATED_OPT`, the request carries a valid
    access token of an enabled user, or it is refused with 401.

    A token that passed is remembered for :data:`REMEMBER_SECONDS` (never past its own expiry):
    a client sends the same token with every request, and checking it costs a database query
    and a hop to a worker thread, several times what serving a cached download URL costs. A
    user disabled meanwhile is refused at most that long after. Requests that carry the same
    token while it is being checked wait for that one check rather than each making their own,
    and a token still in use shortly before it would be forgotten is checked again in the
    background (:data:`RECHECK_AHEAD_SECONDS`): a client that keeps sending requests never
    waits for a check after its first request (the check is a database query on a worker
    thread, several times the cost of the request it guards).
    """

    def __init__(
        self,
        authenticate: Authenticate,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._authenticate = authenticate
        self._clock = clock
        self._wall_clock = wall_clock
        self._passed: OrderedDict[str, tuple[User, float]] = OrderedDict()
        self._checking: dict[str, asyncio.Future[User]] = {}

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        if not handler.opt.get(AUTHENTICATED_OPT):
            return
        token = bearer_token(connection.headers.get("authorization"))
        user = self._remembered(token)
        if user is None:
            # Shielded: a request that goes away must not cancel the others' check.
            user = await asyncio.shield(self._check(token))
        connection.scope["user"] = user

    def _check(self, token: str) -> asyncio.Future[User]:
        """The check of ``token`` under way, or a new one."""
        check = self._checking.get(token)
        if check is None:
            check = asyncio.ensure_future(self._look_up(token))
            self._checking[token] = check
            check.add_done_callback(lambda _: self._checking.pop(token, None))
        return check

    async def _look_up(self, token: str) -> User:
        # The user lookup is a database query: keep it off the event loop.
        try:
            user = await anyio.to_thread.run_sync(
                self._authenticate, AuthenticateCommand(token=token)
            )
        except BaseException:
            self._passed.pop(token, None)
            raise
        self._remember(token, user)
        return user

    def _check_ahead(self, token: str) -> None:
        if token in self._checking:
            return
        # Nobody awaits it: its outcome is read here, so a refusal is not reported as unseen.
        self._check(token).add_done_callback(_outcome_read)

    def _remembered(self, token: str) -> User | None:
        entry = self._passed.get(token)
        if entry is None:
            return None
        user, until = entry
        now = self._clock()
        if now >= until:
            self._passed.pop(token, None)
            return None
        if until - now <= RECHECK_AHEAD_SECONDS:
            self._check_ahead(token)
        return user

    def _remember(self, token: str, user: User) -> None:
        lifetime = min(REMEMBER_SECONDS, _seconds_left(token, self._wall_clock()))
        if lifetime <= 0:
            return
        self._passed[token] = (user, self._clock() + lifetime)
        self._passed.move_to_end(token)
        while len(self._passed) > REMEMBERED_TOKENS:
            self._passed.popitem(last=False)


def _outcome_read(check: asyncio.Future[User]) -> None:
    if not check.cancelled():
        check.exception()


def _seconds_left(token: str, now: float) -> float:
    """Seconds until the (already verified) token's ``exp``; 0 when it cannot be read."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        expires = claims["exp"]
    except (IndexError, ValueError, KeyError, TypeError):
        return 0.0
    return float(expires) - now if isinstance(expires, int | float) else 0.0
