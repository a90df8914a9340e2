"""Which problem each of Litestar's refusals becomes: request -> status, ``code``, ``field``.

The API's own app on the in-memory fakes answers every request a client can make; a small app
with the same exception handlers raises what no route of the API raises today (a required
query parameter that is missing, Litestar's own 401 and 403, a server error), so that those
answers are pinned too. The e2e suite (``tests/e2e/test_http_hostile.py``) sends much the same
requests to the embedded profile's real adapters.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import httpx
import pytest
from litestar import Litestar, get
from litestar.exceptions import (
    ClientException,
    HTTPException,
    InternalServerException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
    TooManyRequestsException,
)
from litestar.params import FromPath, FromQuery
from litestar.testing import TestClient

from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_http import create_app
from imgproc_http.app import MULTIPART_PART_LIMIT
from imgproc_http.errors import exception_handlers
from imgproc_http.schemas import JSON_BODY_LIMIT

PASSWORD = "correct horse battery"
UPLOAD_LIMIT = 50_000
BOUNDARY = "mapping-boundary"
#: Any id will do: a body or a parameter is refused before the image is looked for.
IMAGE_ID = "0" * 32
TRANSFORM = f"/api/v1/images/{IMAGE_ID}/transform"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    settings = settings_for_tests(
        max_upload_bytes=UPLOAD_LIMIT,
        rate_limit_auth="1000/minute",
        rate_limit_upload="1000/minute",
        rate_limit_transform="1000/minute",
    )
    container = build_test_container(settings)
    with TestClient(create_app(container), timeout=30) as test_client:
        yield test_client
    container.shutdown_resources()


@pytest.fixture(scope="module")
def user(client: TestClient[Litestar]) -> dict[str, str]:
    body = {"username": "mapper", "password": PASSWORD}
    response = client.post("/api/v1/register", json=body)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def problem_of(response: httpx.Response) -> tuple[int, str, str | None]:
    """(status, code, field) of a problem+json answer, after checking its shape."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["title"] == HTTPStatus(response.status_code).phrase
    assert body["detail"]
    return response.status_code, body["code"], body.get("field")


def multipart(*parts: tuple[bytes, bytes]) -> bytes:
    body = b""
    for headers, content in parts:
        body += f"--{BOUNDARY}\r\n".encode() + headers + b"\r\n\r\n" + content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def file_part(filename: bytes, content: bytes = b"\xff\xd8\xff", name: bytes = b"file") -> Any:
    disposition = b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename
    return disposition + b'"\r\nContent-Type: image/jpeg', content


def text_part(content: bytes, name: bytes = b"file") -> tuple[bytes, bytes]:
    return b'Content-Disposition: form-data; name="' + name + b'"', content


# -- ValidationException: Litestar's ``extra`` names the source and key of the first issue ------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("page=0", "page"),
        (f"page={10**30}", "page"),
        ("limit=101", "limit"),
        # Two issues: the first one is named.
        ("page=abc&limit=0", "page"),
    ],
)
def test_a_bad_query_parameter_is_invalid_query_naming_it(
    client: TestClient[Litestar], user: dict[str, str], query: str, field: str
) -> None:
    response = client.get(f"/api/v1/images?{query}", headers=user)
    assert problem_of(response) == (422, "invalid_query", field)


def test_a_bad_path_parameter_is_invalid_input_naming_it(
    client: TestClient[Litestar], user: dict[str, str]
) -> None:
    response = client.get(f"/api/v1/images/{'x' * 500}/metadata", headers=user)
    assert problem_of(response) == (422, "invalid_input", "image_id")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        pytest.param(TRANSFORM, {"resize": {"width": 10**9}}, "resize.width", id="out-of-range"),
        pytest.param(TRANSFORM, {"blur": "a lot"}, "blur", id="wrong-type"),
        pytest.param(TRANSFORM, {"format": "svg"}, "format", id="not-in-enum"),
        pytest.param(
            TRANSFORM, {"resize": {"width": {"height": 1}}}, "resize.width", id="nested-wrongly"
        ),
        pytest.param(
            "/api/v1/register",
            {"username": "x" * 300, "password": PASSWORD},
            "username",
            id="too-long",
        ),
        pytest.param("/api/v1/register", {"username": 7, "password": PASSWORD}, "username"),
    ],
)
def test_a_bad_value_in_a_json_body_is_invalid_input_naming_its_field(
    client: TestClient[Litestar], user: dict[str, str], path: str, body: Any, field: str
) -> None:
    response = client.post(path, json=body, headers=user)
    assert problem_of(response) == (422, "invalid_input", field)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        pytest.param(TRANSFORM, {"zoom": 2}, "zoom", id="unknown"),
        pytest.param(TRANSFORM, {"resize": {"width": 10, "zoom": 2}}, "resize.zoom", id="nested"),
        pytest.param(
            TRANSFORM,
            {"transformations": {"rotate": 90, "spin": True}},
            "transformations.spin",
            id="in-envelope",
        ),
        pytest.param(
            "/api/v1/register",
            {"username": "admin", "password": PASSWORD, "is_admin": True},
            "is_admin",
            id="unknown-credential",
        ),
        pytest.param("/api/v1/register", {"username": "admin"}, "password", id="missing"),
    ],
)
def test_an_unknown_or_missing_field_is_named_with_its_parents(
    client: TestClient[Litestar], user: dict[str, str], path: str, body: Any, field: str
) -> None:
    response = client.post(path, json=body, headers=user)
    assert problem_of(response) == (422, "invalid_input", field)
    assert response.json()["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize("raw", [b"[1, 2, 3]", b'"resize"', b"null", b"7"])
def test_a_json_body_that_is_not_an_object_is_invalid_input_without_a_field(
    client: TestClient[Litestar], user: dict[str, str], raw: bytes
) -> None:
    response = client.post(TRANSFORM, content=raw, headers={**user, **JSON})
    assert problem_of(response) == (422, "invalid_input", None)


@pytest.mark.parametrize("path", [TRANSFORM, "/api/v1/register", "/api/v1/login"])
def test_a_missing_json_body_is_invalid_input_and_says_so(
    client: TestClient[Litestar], user: dict[str, str], path: str
) -> None:
    response = client.post(path, content=b"", headers={**user, **JSON})
    assert problem_of(response) == (422, "invalid_input", None)
    assert response.json()["detail"] == "the request body is missing"


# -- the JSON decoder's errors, behind Litestar's ClientException and SerializationException ----


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="syntax"),
        pytest.param(b'{"username": "a", ', id="cut-short"),
        pytest.param(b'{"username": "\\ud800abc", "password": "x"}', id="lone-surrogate"),
        pytest.param(b"\xff\xfe\x00\x01", id="binary"),
    ],
)
@pytest.mark.parametrize("path", [TRANSFORM, "/api/v1/register"])
def test_a_body_that_is_not_json_is_malformed_body(
    client: TestClient[Litestar], user: dict[str, str], path: str, raw: bytes
) -> None:
    response = client.post(path, content=raw, headers={**user, **JSON})
    assert problem_of(response) == (400, "malformed_body", None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b'{"blur": 1e999}', "Number out of range", id="float-overflow"),
        pytest.param(
            b'{"rotate": 1' + b"0" * 5000 + b"}", "Integer value out of range", id="huge-integer"
        ),
    ],
)
def test_json_holding_a_number_the_decoder_cannot_represent_is_invalid_input(
    client: TestClient[Litestar], user: dict[str, str], raw: bytes, reason: str
) -> None:
    response = client.post(TRANSFORM, content=raw, headers={**user, **JSON})
    assert problem_of(response) == (422, "invalid_input", None)
    assert response.json()["detail"] == f"a value in the request body is not usable: {reason}"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, id="objects"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, id="arrays"),
    ],
)
def test_json_nested_deeper_than_the_decoder_recurses_is_invalid_input(
    client: TestClient[Litestar], user: dict[str, str], raw: bytes
) -> None:
    response = client.post(TRANSFORM, content=raw, headers={**user, **JSON})
    assert problem_of(response) == (422, "invalid_input", None)
    assert response.json()["detail"] == "the request body is nested too deeply"


# -- multipart forms ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"--" + BOUNDARY.encode() + b"--\r\n", id="empty-form"),
        pytest.param(b"", id="no-body"),
        pytest.param(multipart(file_part(b"a.jpg", name=b"image")), id="other-part"),
    ],
)
def test_a_form_without_a_file_part_is_invalid_input_naming_file(
    client: TestClient[Litestar], user: dict[str, str], content: bytes
) -> None:
    response = client.post("/api/v1/images/", content=content, headers={**user, **FORM})
    assert problem_of(response) == (422, "invalid_input", "file")


@pytest.mark.parametrize(
    ("content", "got"),
    [
        pytest.param(multipart(text_part(b"just some text")), "a text field", id="text-field"),
        pytest.param(
            multipart(file_part(b"a.jpg"), file_part(b"b.jpg")), "several parts", id="two-files"
        ),
    ],
)
def test_a_file_part_that_is_not_one_file_is_invalid_input_naming_file(
    client: TestClient[Litestar], user: dict[str, str], content: bytes, got: str
) -> None:
    response = client.post("/api/v1/images/", content=content, headers={**user, **FORM})
    assert problem_of(response) == (422, "invalid_input", "file")
    assert response.json()["detail"] == f"file: expected one file, with a filename; got {got}"


def test_binary_data_in_a_part_without_a_filename_is_invalid_input(
    client: TestClient[Litestar], user: dict[str, str]
) -> None:
    content = multipart(text_part(b"\xff\xd8\xff\xe0 not text"))
    response = client.post("/api/v1/images/", content=content, headers={**user, **FORM})
    assert problem_of(response) == (422, "invalid_input", None)
    assert "must be UTF-8 text" in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        pytest.param(b"\x00\x01 not multipart", FORM, id="garbage"),
        pytest.param(b'{"file": "x"}', JSON, id="json"),
        pytest.param(b"x", {"Content-Type": "multipart/form-data"}, id="no-boundary"),
    ],
)
def test_a_body_that_is_not_a_form_is_malformed_body(
    client: TestClient[Litestar], user: dict[str, str], content: bytes, headers: dict[str, str]
) -> None:
    response = client.post("/api/v1/images/", content=content, headers={**user, **headers})
    assert problem_of(response) == (400, "malformed_body", None)


def test_a_form_with_too_many_parts_is_413_too_many_parts(
    client: TestClient[Litestar], user: dict[str, str]
) -> None:
    parts = [
        file_part(f"{n}.jpg".encode(), b"x", f"f{n}".encode())
        for n in range(MULTIPART_PART_LIMIT + 1)
    ]
    response = client.post("/api/v1/images/", content=multipart(*parts), headers={**user, **FORM})
    assert problem_of(response) == (413, "too_many_parts", None)
    assert response.json()["detail"] == f"a form has at most {MULTIPART_PART_LIMIT} parts"


def test_a_form_part_with_a_header_too_long_is_413_form_part_too_large(
    client: TestClient[Litestar], user: dict[str, str]
) -> None:
    content = multipart(file_part(b"x" * 5000 + b".jpg"))
    response = client.post("/api/v1/images/", content=content, headers={**user, **FORM})
    assert problem_of(response) == (413, "form_part_too_large", None)


# -- bodies over the limit ------------------------------------------------------------------------


def test_a_json_body_over_its_limit_is_413_request_too_large(
    client: TestClient[Litestar], user: dict[str, str]
) -> None:
    raw = b'{"watermark": {"text": "' + b"x" * (2 * JSON_BODY_LIMIT) + b'"}}'
    response = client.post(TRANSFORM, content=raw, headers={**user, **JSON})
    assert problem_of(response) == (413, "request_too_large", None)
    assert response.json()["detail"] == (
        f"the request body is larger than the limit of {JSON_BODY_LIMIT} bytes"
    )
    assert response.headers["connection"] == "close"


def test_an_upload_over_the_limit_is_413_image_too_large(
    client: TestClient[Litestar], user: dict[str, str]
) -> None:
    content = multipart(file_part(b"big.jpg", b"\xff\xd8\xff" + bytes(4 * UPLOAD_LIMIT)))
    response = client.post("/api/v1/images/", content=content, headers={**user, **FORM})
    assert problem_of(response) == (413, "image_too_large", None)
    assert response.json()["detail"] == f"an upload is at most {UPLOAD_LIMIT} bytes"


# -- the rest: by status -------------------------------------------------------------------------


def test_an_unknown_route_is_404_not_found(client: TestClient[Litestar]) -> None:
    assert problem_of(client.get("/api/v1/nothing-here")) == (404, "not_found", None)


def test_a_method_a_route_does_not_take_is_405_method_not_allowed(
    client: TestClient[Litestar], user: dict[str, str]
) -> None:
    response = client.put("/api/v1/images", headers=user)
    assert problem_of(response) == (405, "method_not_allowed", None)


def test_another_client_error_of_litestar_is_400_bad_request(
    client: TestClient[Litestar], user: dict[str, str]
) -> None:
    response = client.post(
        TRANSFORM, content=b"{}", headers={**user, **JSON, "Content-Length": "abc"}
    )
    assert problem_of(response) == (400, "bad_request", None)


RAISED: dict[str, HTTPException] = {
    "not-authorized": NotAuthorizedException(),
    "permission-denied": PermissionDeniedException(),
    "not-found": NotFoundException(),
    "method-not-allowed": MethodNotAllowedException(),
    "too-many-requests": TooManyRequestsException(),
    "server-error": InternalServerException(),
    "service-unavailable": ServiceUnavailableException(),
    "client-error": ClientException(status_code=418),
    "other": HTTPException(status_code=418),
}


@get("/raise/{name:str}", sync_to_thread=False)
def raising(name: FromPath[str]) -> None:
    raise RAISED[name]


@get("/recurse", sync_to_thread=False)
def recursing() -> None:
    raise RecursionError("maximum recursion depth exceeded while deserializing an object")


@get("/decode-text", sync_to_thread=False)
def decoding_text() -> None:
    b"\xff".decode()


@get("/needs-a-query", sync_to_thread=False)
def needs_a_query(count: FromQuery[int]) -> int:
    return count


@pytest.fixture(scope="module")
def bare() -> Iterator[TestClient[Litestar]]:
    """A small app with the API's exception handlers and nothing else."""
    app = Litestar(
        [raising, recursing, decoding_text, needs_a_query], exception_handlers=exception_handlers()
    )
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("not-authorized", 401, "not_authenticated"),
        ("permission-denied", 403, "forbidden"),
        ("not-found", 404, "not_found"),
        ("method-not-allowed", 405, "method_not_allowed"),
        ("too-many-requests", 429, "rate_limited"),
        ("server-error", 500, "internal_error"),
        ("service-unavailable", 503, "internal_error"),
        ("client-error", 418, "bad_request"),
        ("other", 418, "error"),
    ],
)
def test_an_http_exception_gets_the_code_of_its_status(
    bare: TestClient[Litestar], name: str, status: int, code: str
) -> None:
    assert problem_of(bare.get(f"/raise/{name}")) == (status, code, None)


def test_litestars_401_asks_for_a_bearer_token(bare: TestClient[Litestar]) -> None:
    assert bare.get("/raise/not-authorized").headers["www-authenticate"] == "Bearer"


def test_a_server_error_tells_the_client_nothing_of_its_cause(bare: TestClient[Litestar]) -> None:
    assert bare.get("/raise/server-error").json()["detail"] == "Internal Server Error"


@pytest.mark.parametrize("path", ["/recurse", "/decode-text"])
def test_recursion_and_decoding_errors_outside_the_body_parsers_are_server_errors(
    bare: TestClient[Litestar], path: str
) -> None:
    """Whatever the words: only where they were raised makes them the body's fault."""
    assert problem_of(bare.get(path)) == (500, "internal_error", None)


def test_a_missing_required_query_parameter_is_invalid_input_without_a_field(
    bare: TestClient[Litestar],
) -> None:
    """Litestar reports it without ``extra``: the problem carries its words and no field."""
    response = bare.get("/needs-a-query")
    assert problem_of(response) == (422, "invalid_input", None)
    assert "count" in response.json()["detail"]
