"""``POST /register`` and ``POST /login``: a username and password for an access token.

Both hash or verify with bcrypt, which takes a good part of a CPU second by design, so they
run in a worker thread, never on the event loop.
"""

from __future__ import annotations

from datetime import datetime

from litestar import post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from imgproc_core.use_cases import LogIn, LogInCommand, RegisterUser, RegisterUserCommand
from imgproc_http.errors import problem_responses
from imgproc_http.rate_limits import RATE_LIMIT_OPT
from imgproc_http.schemas import JSON_BODY_LIMIT, Credentials, SessionOut


@post(
    "/register",
    status_code=201,
    sync_to_thread=True,
    request_max_body_size=JSON_BODY_LIMIT,
    opt={RATE_LIMIT_OPT: "auth"},
    summary="Create an account",
    description="Usernames are case-insensitive; passwords are 8 to 72 bytes.",
    responses=problem_responses(409, 422, 429),
    tags=["users"],
)
def register(
    data: JSONBody[Credentials],
    register_user: NamedDependency[RegisterUser],
    now: NamedDependency[datetime],
) -> SessionOut:
    session = register_user(RegisterUserCommand(username=data.username, password=data.password))
    return SessionOut.from_session(session, now)


@post(
    "/login",
    status_code=200,
    sync_to_thread=True,
    request_max_body_size=JSON_BODY_LIMIT,
    opt={RATE_LIMIT_OPT: "auth"},
    summary="Exchange a username and password for an access token",
    description="An unknown user and a wrong password get the same 401.",
    responses=problem_responses(401, 422, 429),
    tags=["users"],
)
def login(
    data: JSONBody[Credentials],
    log_in: NamedDependency[LogIn],
    now: NamedDependency[datetime],
) -> SessionOut:
    session = log_in(LogInCommand(username=data.username, password=data.password))
    return SessionOut.from_session(session, now)
