"""What a handler reads from its request besides its use case: the caller, the public base
URL and the embedded workers' wake-up signal.

Handlers take one Litestar dependency each, their use case. Litestar resolves two or more
dependencies of a handler concurrently, in a task group of its own per request, which cost
more than the rest of a cached download together. The caller is therefore read from the
request (the authentication guard put it there), and the values fixed at start-up from the
app's ``state``, written once by :func:`imgproc_http.app.create_app`.
"""

from __future__ import annotations

from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.datastructures import State

from imgproc_core.domain import User
from imgproc_core.domain.errors import InvalidToken
from imgproc_http.workers import JobSignal

#: App ``state`` keys.
BASE_URL_STATE: Final = "public_base_url"
JOB_SIGNAL_STATE: Final = "job_signal"

Connection = ASGIConnection[Any, Any, Any, Any]


def caller(connection: Connection) -> User:
    """The user the authentication guard let in."""
    user = connection.scope.get("user")
    if not isinstance(user, User):
        raise InvalidToken("an access token is required: send 'Authorization: Bearer <token>'")
    return user


def base_url(connection: Connection) -> str:
    """The service's public base URL, without a trailing slash, for the links in answers."""
    value = _state(connection).get(BASE_URL_STATE)
    if not isinstance(value, str):
        raise RuntimeError("the app's state has no public base URL")
    return value


def job_signal(connection: Connection) -> JobSignal:
    """Wakes the embedded worker threads when a job is queued."""
    value = _state(connection).get(JOB_SIGNAL_STATE)
    if not isinstance(value, JobSignal):
        raise RuntimeError("the app's state has no job signal")
    return value


def _state(connection: Connection) -> State:
    state: State = connection.app.state
    return state
