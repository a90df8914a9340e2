"""Every error the API answers, in one shape and from one place.

Domain errors, Litestar's own exceptions (validation, malformed bodies, unknown routes, bodies
over the size limit) and anything unexpected all become ``application/problem+json``::

    {"status": 422, "title": "Unprocessable Entity", "detail": "...", "code": "...",
     "field": "..."}

``code`` is stable for clients to branch on; ``field`` names the offending part of the request.
The table below is the only place that decides which HTTP status a domain error gets.

Three choices worth knowing:

- A body that is not JSON at all (a syntax error) is 400 ``malformed_body``; JSON the API
  cannot take (the wrong shape, an unknown field, a number out of range, nesting too deep) is
  422, naming the field when it can.

- A derived image that is not ready is not an error to the client: ``GET /images/{id}`` answers
  202 with the job's status and ``Retry-After`` (:class:`~imgproc_http.schemas.NotReady`).
- A derived image whose job failed for good answers 409 Conflict: the request is well formed,
  but the image is in a state (FAILED) in which it cannot be served; ``detail`` says why it
  failed. Asking for it again will not help, which is what sets it apart from 202 and 503.

Litestar's refusals are told apart by what they carry, not by their words: the exception's
class and status, the ``key`` and ``source`` Litestar lists in a ``ValidationException``'s
``extra``, and the exception a refusal was raised from (msgspec's ``DecodeError`` and
``ValidationError``, the multipart parser's ``ParserError`` and ``ParserLimitReached``). Text is
read in two places only, each because nothing else says it: :class:`_MsgspecError` (the field a
missing or unknown field message names) and :func:`_form_limit_reached` (which limit of the
multipart parser a form reached).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import FrameType, TracebackType
from typing import Any, Final

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    SerializationException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.serialization import decode_json
from litestar.types import ExceptionHandlersMap
from multipart import ParserError, ParserLimitReached

from imgproc_core.domain import errors
from imgproc_http.schemas import NotReady, Problem

logger = logging.getLogger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
#: How long a client should wait before polling a derived image that is still being made.
NOT_READY_RETRY_AFTER_SECONDS: Final = 1
#: How long a client should wait after work that ran past its time limit (every 503 says when).
PROCESSING_TIMEOUT_RETRY_AFTER_SECONDS: Final = 5

#: Most specific first: the first class an error is an instance of decides its status.
DOMAIN_STATUS: Final[tuple[tuple[type[errors.DomainError], int], ...]] = (
    (errors.ImageTooLarge, 413),
    (errors.UnsupportedImageType, 415),
    (errors.ImageRejected, 422),
    (errors.InvalidInput, 422),
    (errors.InvalidCredentials, 401),
    (errors.InvalidToken, 401),
    (errors.NotFound, 404),
    (errors.UsernameTaken, 409),
    (errors.Conflict, 409),
    (errors.ImageProcessingFailed, 409),
    (errors.InvalidStateTransition, 409),
    (errors.RateLimited, 429),
    (errors.DependencyUnavailable, 503),
    (errors.ProcessingTimeout, 503),
)

#: ``code`` of Litestar's exceptions, which carry a status but no name of their own.
_HTTP_CODES: Final[dict[int, str]] = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}

#: Handler ``opt`` key: the ``code`` a 413 gets on that route (uploads say ``image_too_large``).
TOO_LARGE_CODE_OPT: Final = "too_large_code"
#: App ``state`` key: the upload limit in bytes, which a 413 on the upload route reports (the
#: body limit itself is a little larger, to leave room for the multipart framing).
MAX_UPLOAD_BYTES_STATE: Final = "max_upload_bytes"
#: The module of Litestar that parses ``multipart/form-data``; errors raised there are the
#: client's doing.
_MULTIPART_PARSER_MODULE: Final = "litestar._multipart"
#: The name Litestar gives the request body: the ``key`` of an issue with the body as a whole,
#: and the handler parameter that goes missing when there is no body.
_BODY: Final = "data"


def problem(
    status: int,
    detail: str,
    code: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    checks: dict[str, str] | None = None,
) -> Response[Problem]:
    """A problem+json response; the one constructor every error goes through."""
    body = Problem(
        status=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        code=code,
        field=field,
        checks=checks,
    )
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` as whole seconds, at least 1 (0 would invite an immediate retry loop)."""
    return str(max(1, math.ceil(seconds)))


def status_of(exc: errors.DomainError) -> int:
    for kind, status in DOMAIN_STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def domain_error_response(
    request: Request[Any, Any, Any], exc: errors.DomainError
) -> Response[Any]:
    if isinstance(exc, errors.ImageNotReady):
        return _not_ready(request, exc)
    status = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.InvalidToken):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    elif isinstance(exc, errors.InvalidCredentials):
        headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, errors.RateLimited | errors.DependencyUnavailable):
        headers["Retry-After"] = retry_after_header(exc.retry_after)
    elif isinstance(exc, errors.ProcessingTimeout):
        headers["Retry-After"] = retry_after_header(PROCESSING_TIMEOUT_RETRY_AFTER_SECONDS)
    detail = exc.message
    if isinstance(exc, errors.DependencyUnavailable):
        # The full message (paths, hosts) is for the operator's log, not for clients.
        logger.warning("%s unavailable: %s", exc.dependency, exc.message)
        detail = f"the {exc.dependency} is unavailable; try again shortly"
    field = exc.field if isinstance(exc, errors.InvalidInput) else None
    return problem(status, detail, exc.code, field=field, headers=headers)


def _not_ready(request: Request[Any, Any, Any], exc: errors.ImageNotReady) -> Response[NotReady]:
    image_id = request.path_params.get("image_id")
    body = NotReady(
        id=image_id if isinstance(image_id, str) else None,
        status=exc.status or "PENDING",
        detail=exc.message,
        retry_after=NOT_READY_RETRY_AFTER_SECONDS,
    )
    headers = {
        "Retry-After": retry_after_header(NOT_READY_RETRY_AFTER_SECONDS),
        "Cache-Control": "no-store",
    }
    return Response(body, status_code=202, media_type=MediaType.JSON, headers=headers)


def http_exception_response(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if isinstance(exc, ValidationException):
        return _validation_problem(exc)
    status = exc.status_code
    if status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, exc.detail)
        return problem(status, HTTPStatus(status).phrase, "internal_error")
    headers = dict(exc.headers or {})
    # Before the 413 of a body over the limit: Litestar 2 reports a form's limit as a 400, and
    # may report it as a 413 later; either way it is the form's limit.
    form_limit = _form_limit(exc)
    if form_limit is not None:
        return _form_limit_reached(request, form_limit)
    if isinstance(exc, RequestEntityTooLarge):
        return _too_large(request, headers)
    decode_error = _body_decode_error(exc)
    if isinstance(decode_error, msgspec.ValidationError):
        # Valid JSON holding a value the decoder cannot represent (1e999, an integer of
        # thousands of digits): a value error, like any other out-of-range number.
        reason = _MsgspecError.of(decode_error).reason
        return problem(422, f"a value in the request body is not usable: {reason}", "invalid_input")
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", "Bearer")
    code = _HTTP_CODES.get(status, "bad_request" if isinstance(exc, ClientException) else "error")
    if isinstance(exc, PermissionDeniedException):
        code = "forbidden"
    if decode_error is not None or isinstance(exc.__cause__, ParserError):
        # JSON that does not parse, or a body the multipart parser cannot read as a form.
        code = "malformed_body"
    return problem(status, exc.detail or HTTPStatus(status).phrase, code, headers=headers)


def _too_large(request: Request[Any, Any, Any], headers: dict[str, str]) -> Response[Problem]:
    handler = request.scope.get("route_handler")
    limit, code = None, "request_too_large"
    if isinstance(handler, HTTPRouteHandler):
        limit = handler.resolve_request_max_body_size()
        code = handler.opt.get(TOO_LARGE_CODE_OPT, code)
    upload_limit = request.app.state.get(MAX_UPLOAD_BYTES_STATE)
    if code == "image_too_large" and isinstance(upload_limit, int):
        # The same words as the upload's own check, which counts the file alone.
        detail = f"an upload is at most {upload_limit} bytes"
    elif limit:
        detail = f"the request body is larger than the limit of {limit} bytes"
    else:
        detail = "the request body is too large"
    # The rest of the body is not read: the connection cannot carry another request.
    headers["Connection"] = "close"
    return problem(413, detail, code, headers=headers)


def _form_limit(exc: HTTPException) -> ParserLimitReached | None:
    """The multipart parser's limit behind a refusal of a form, if that is what it is.

    Litestar answers the parser's ``ParserLimitReached`` with a ``ClientException`` raised
    ``from None``: the parser's exception is the refusal's context, not its cause.
    """
    context = exc.__context__
    if isinstance(exc, ClientException) and isinstance(context, ParserLimitReached):
        return context
    return None


def _form_limit_reached(
    request: Request[Any, Any, Any], limit: ParserLimitReached
) -> Response[Problem]:
    """413 for a form over one of the multipart parser's limits.

    Of those limits Litestar sets one, the number of parts (``multipart_form_part_limit``); the
    others are the parser's own, on the header lines of one part. ``ParserLimitReached`` tells
    them apart only in its message ("Maximum segment header length exceeded", "Maximum segment
    header count exceeded", "Maximum segment count exceeded"), which is why it is read here.
    """
    if "header" in str(limit).lower():
        return problem(
            413,
            "the headers of a form part are too long (a file name of several kilobytes?)",
            "form_part_too_large",
        )
    parts = request.app.multipart_form_part_limit
    return problem(413, f"a form has at most {parts} parts", "too_many_parts")


def _body_decode_error(exc: HTTPException) -> msgspec.DecodeError | None:
    """The decoder's error behind a 400 about the request body, if that is what it is.

    Litestar wraps it twice (``ClientException`` from ``SerializationException`` from
    ``msgspec.DecodeError``). A syntax error is a plain ``DecodeError``; JSON that parsed but
    holds a value out of the decoder's range is its subclass ``ValidationError``.
    """
    serialization = exc.__cause__
    if not isinstance(serialization, SerializationException):
        return None
    cause = serialization.__cause__
    return cause if isinstance(cause, msgspec.DecodeError) else None


def _validation_problem(exc: ValidationException) -> Response[Problem]:
    """422 naming the first offending field.

    Litestar lists every issue in ``extra``: ``key`` is the offending parameter, or the dotted
    path inside the body (``resize.width``; the body as a whole is ``data``), ``source`` where
    it was (``body``, ``query``, ``path``...), ``message`` msgspec's reason without its location.
    A ``ValidationException`` without ``extra`` (a required parameter that is missing) answers
    in Litestar's words and names no field.
    """
    if _body_missing(exc):
        return problem(422, "the request body is missing", "invalid_input")
    issues = exc.extra if isinstance(exc.extra, list) else []
    first = issues[0] if issues and isinstance(issues[0], dict) else {}
    message = str(first.get("message") or exc.detail or "invalid request")
    key = first.get("key")
    parent = key if isinstance(key, str) and key not in ("", _BODY) else None
    # msgspec's path ends at the object that lacks a field or has one too many; the reason
    # names the field: ``resize`` + ``zoom`` -> ``resize.zoom``.
    named = _MsgspecError.of(message).field
    field = f"{parent}.{named}" if parent and named else parent or named
    code = "invalid_query" if first.get("source") == "query" else "invalid_input"
    return problem(422, f"{field}: {message}" if field else message, code, field=field)


def _body_missing(exc: ValidationException) -> bool:
    """Whether the handler's body parameter itself is missing: Litestar leaves it out when the
    request has no body, and msgspec, converting the handler's parameters, says so."""
    cause = exc.__cause__
    if not isinstance(cause, msgspec.ValidationError):
        return False
    refusal = _MsgspecError.of(cause)
    return refusal.path == "$" and refusal.field == _BODY


_MSGSPEC_LOCATION: Final = re.compile(r"^(?P<reason>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)
_MSGSPEC_NAMED_FIELD: Final = re.compile(
    r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]+)`$"
)


@dataclass(frozen=True, slots=True)
class _MsgspecError:
    """A ``msgspec.ValidationError`` read as msgspec documents it: the reason, then (below the
    root) `` - at `<path>` `` in JSON-path notation: ``Expected `int`, got `str` - at
    `$.resize.width```.

    msgspec's error carries nothing but this text (msgspec/msgspec#264 asks for more), and the
    path stops at the object: a missing or unknown field is named only in the reason
    (``Object missing required field `password```, ``Object contains unknown field `zoom```).
    This is the one place that reads msgspec's words.
    """

    reason: str
    #: ``$`` for the root.
    path: str
    #: The field a missing or unknown field reason names.
    field: str | None

    @classmethod
    def of(cls, error: msgspec.ValidationError | str) -> _MsgspecError:
        text = str(error)
        located = _MSGSPEC_LOCATION.match(text)
        reason, path = (located["reason"], located["path"]) if located else (text, "$")
        named = _MSGSPEC_NAMED_FIELD.match(reason)
        return cls(reason=reason, path=path, field=named["field"] if named else None)


def unexpected_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    logger.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "an unexpected error occurred; it has been logged", "internal_error")


def too_deep_response(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """msgspec gives up on JSON nested deeper than it can recurse; that is the body's fault
    when Litestar was decoding JSON (which it does for request bodies only)."""
    if any(frame.f_code is decode_json.__code__ for frame in _frames(exc.__traceback__)):
        return problem(422, "the request body is nested too deeply", "invalid_input")
    return unexpected_error_response(request, exc)


def undecodable_form_response(
    request: Request[Any, Any, Any], exc: UnicodeDecodeError
) -> Response[Any]:
    """Litestar's form parser decodes every part without a filename as text, and fails on
    binary data: an image sent without a filename, say."""
    if any(
        frame.f_globals.get("__name__") == _MULTIPART_PARSER_MODULE
        for frame in _frames(exc.__traceback__)
    ):
        return problem(
            422,
            "a form part without a filename must be UTF-8 text; send the image as a file, "
            "with a filename",
            "invalid_input",
        )
    return unexpected_error_response(request, exc)


def _frames(traceback: TracebackType | None) -> Iterator[FrameType]:
    """The frames an exception passed through, from the handler down to where it was raised."""
    while traceback is not None:
        yield traceback.tb_frame
        traceback = traceback.tb_next


def exception_handlers() -> ExceptionHandlersMap:
    return {
        errors.DomainError: domain_error_response,
        HTTPException: http_exception_response,
        RecursionError: too_deep_response,
        UnicodeDecodeError: undecodable_form_response,
        Exception: unexpected_error_response,
    }


def problem_responses(*statuses: int, malformed: bool = True) -> dict[int, ResponseSpec]:
    """The error answers of a route, for its OpenAPI description. 400 (a malformed request)
    is among them unless ``malformed`` is False: it replaces Litestar's own description of a
    validation error, which has another shape than the errors this API sends."""
    return {
        status: ResponseSpec(
            Problem,
            description=HTTPStatus(status).phrase,
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for status in sorted({400, *statuses} if malformed else set(statuses))
    }


NOT_READY_RESPONSE: Final = ResponseSpec(
    NotReady,
    description="Accepted: the derived image is still being made; retry after Retry-After",
    generate_examples=False,
)
