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
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from http import HTTPStatus
from types import TracebackType
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
from litestar.types import ExceptionHandlersMap

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

#: What Litestar says of a form field that should be a file: a text field, or several parts.
_NOT_A_FILE: Final = re.compile(r"^Unsupported type: <class '(str|list)'>$")
_UNKNOWN_FIELD: Final = re.compile(r"unknown field `([^`]+)`")
_MISSING_FIELD: Final = re.compile(r"missing required field `([^`]+)`")


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
    if isinstance(exc, RequestEntityTooLarge):
        return _too_large(request, headers)
    if status == 400 and exc.detail == "Request Entity Too Large":
        return _form_limit_reached(request, exc)
    decode_error = _body_decode_error(exc)
    if isinstance(decode_error, msgspec.ValidationError):
        # Valid JSON holding a value the decoder cannot represent (1e999, an integer of
        # thousands of digits): a value error, like any other out-of-range number.
        reason = str(decode_error).partition(" - at ")[0]
        return problem(422, f"a value in the request body is not usable: {reason}", "invalid_input")
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", "Bearer")
    code = _HTTP_CODES.get(status, "bad_request" if isinstance(exc, ClientException) else "error")
    if isinstance(exc, PermissionDeniedException):
        code = "forbidden"
    detail = exc.detail or HTTPStatus(status).phrase
    if decode_error is not None or (status == 400 and "invalid multipart" in detail.lower()):
        code = "malformed_body"
    return problem(status, detail, code, headers=headers)


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


def _form_limit_reached(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    """Litestar 2 reports a limit of its multipart parser as a 400 "Request Entity Too Large"
    (a 413 from Litestar 3 on); the parser's own message, kept as the exception's context,
    says which limit it was."""
    reason = str(exc.__context__ or "")
    if "header" in reason.lower():
        return problem(
            413,
            "the headers of a form part are too long (a file name of several kilobytes?)",
            "form_part_too_large",
        )
    limit = request.app.multipart_form_part_limit
    return problem(413, f"a form has at most {limit} parts", "too_many_parts")


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
    """422 naming the first offending field (Litestar lists every issue in ``extra``)."""
    issues = exc.extra if isinstance(exc.extra, list) else []
    first = issues[0] if issues and isinstance(issues[0], dict) else {}
    message = str(first.get("message") or exc.detail or "invalid request")
    key = first.get("key")
    field = _field_name(key if isinstance(key, str) else None, message)
    if key == "data" and message == "'data'":
        # What Litestar reports for an empty body where one is required.
        message, field = "the request body is missing", None
    not_a_file = _NOT_A_FILE.match(message)
    if not_a_file:
        got = "a text field" if not_a_file.group(1) == "str" else "several parts"
        message = f"expected one file, with a filename; got {got}"
    code = "invalid_query" if first.get("source") == "query" else "invalid_input"
    return problem(422, f"{field}: {message}" if field else message, code, field=field)


def _field_name(key: str | None, message: str) -> str | None:
    """The dotted field a Litestar validation message is about.

    Litestar reports the whole body as ``data``; msgspec names the unknown or missing field
    only inside the message, so the two are joined: ``resize`` + ``zoom`` -> ``resize.zoom``.
    """
    base = None if key in (None, "", "data") else key
    named = _UNKNOWN_FIELD.search(message) or _MISSING_FIELD.search(message)
    if named:
        return f"{base}.{named.group(1)}" if base else named.group(1)
    return base


def unexpected_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    logger.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "an unexpected error occurred; it has been logged", "internal_error")


def too_deep_response(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """msgspec gives up on JSON nested deeper than it can recurse; that is the body's fault."""
    if "deserializing" in str(exc):
        return problem(422, "the request body is nested too deeply", "invalid_input")
    return unexpected_error_response(request, exc)


def undecodable_form_response(
    request: Request[Any, Any, Any], exc: UnicodeDecodeError
) -> Response[Any]:
    """Litestar's form parser decodes every part without a filename as text, and fails on
    binary data: an image sent without a filename, say."""
    if _raised_in(exc.__traceback__, _MULTIPART_PARSER_MODULE):
        return problem(
            422,
            "a form part without a filename must be UTF-8 text; send the image as a file, "
            "with a filename",
            "invalid_input",
        )
    return unexpected_error_response(request, exc)


def _raised_in(traceback: TracebackType | None, module: str) -> bool:
    while traceback is not None:
        if traceback.tb_frame.f_globals.get("__name__") == module:
            return True
        traceback = traceback.tb_next
    return False


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
