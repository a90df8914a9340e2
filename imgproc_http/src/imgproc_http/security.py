"""Bearer-token authentication: a guard that runs before the request body is read.

Guards run before Litestar parses the body, so an unauthenticated upload is refused without
reading its bytes. The user the token speaks for is put on the connection (``request.user``)
and handed to handlers as the ``user`` dependency.
"""

from __future__ import annotations

from typing import Any, Final

import anyio.to_thread
from litestar.connection import ASGIConnection, Request
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
    access token of an enabled user, or it is refused with 401."""

    def __init__(self, authenticate: Authenticate) -> None:
        self._authenticate = authenticate

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        if not handler.opt.get(AUTHENTICATED_OPT):
            return
        command = AuthenticateCommand(token=bearer_token(connection.headers.get("authorization")))
        # The user lookup is a database query: keep it off the event loop.
        user = await anyio.to_thread.run_sync(self._authenticate, command)
        connection.scope["user"] = user


def current_user(request: Request[Any, Any, Any]) -> User:
    """The ``user`` dependency: whom the guard authenticated."""
    user = request.scope.get("user")
    if not isinstance(user, User):
        raise InvalidToken("an access token is required: send 'Authorization: Bearer <token>'")
    return user
