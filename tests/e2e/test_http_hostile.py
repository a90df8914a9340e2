"""Hostile and broken requests: each gets its exact status and the problem shape, never a 500.

Every error is ``application/problem+json`` with ``status``, ``title``, ``detail`` and ``code``,
and ``field`` when one part of the request is at fault. Most tests use the in-process client;
the ones about a body refused before it is read talk to a real server over a socket, where
"before" can be seen: the answer arrives while the client is still sending.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from imgproc_core.domain.images import MAX_FILENAME_CHARS
from tests.e2e.conftest import PASSWORD, TEST_SECRET, Api
from tests.e2e.servers import ServerHome

pytestmark = pytest.mark.e2e

PROBLEM_KEYS = {"status", "title", "detail", "code", "field"}
FLOWER = "flower.jpg"  # 480 x 360
SMALL_UPLOAD_LIMIT = 50_000


def assert_problem(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """The response is the problem ``status``/``code`` (naming ``field``, or no field)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) <= PROBLEM_KEYS, body
    assert body["status"] == status
    assert body["title"] == HTTPStatus(status).phrase
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert body["code"] == code, body
    assert body.get("field") == field, body
    return body


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"hostile-boundary") -> bytes:
    """A multipart body from raw ``(part headers, content)`` pairs, byte for byte as given."""
    body = b""
    for headers, content in parts:
        body += b"--" + boundary + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


def file_part(filename: bytes, content: bytes, name: bytes = b"file") -> tuple[bytes, bytes]:
    disposition = b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename
    return disposition + b'"\r\nContent-Type: image/jpeg', content


def multipart_headers(user: dict[str, str], boundary: str = "hostile-boundary") -> dict[str, str]:
    return {**user, "Content-Type": f"multipart/form-data; boundary={boundary}"}


def upload_bytes(
    api: Api, user: dict[str, str], data: bytes, filename: str = "image.jpg"
) -> httpx.Response:
    """An upload that claims to be a JPEG, whatever ``data`` is."""
    files = {"file": (filename, data, "image/jpeg")}
    return api.call("POST", "/images/", files=files, headers=user)


def post_json(
    api: Api, path: str, raw: bytes, user: dict[str, str] | None = None
) -> httpx.Response:
    headers = {**(user or {}), "Content-Type": "application/json"}
    return api.call("POST", path, content=raw, headers=headers)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG of a few dozen bytes whose header claims ``width`` x ``height`` RGB
    pixels; decoding it would need ``width * height * 3`` bytes of memory."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    one_row = zlib.compress(b"\x00" * 1025)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", one_row)
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture
def user(api: Api) -> dict[str, str]:
    return api.register()


@pytest.fixture
def flower(api: Api, user: dict[str, str], corpus_dir: Path) -> dict[str, Any]:
    image: dict[str, Any] = api.upload(corpus_dir / "pillow" / FLOWER, user)
    return image


def stored_files(storage_dir: Path) -> list[Path]:
    return sorted(path for path in storage_dir.rglob("*") if path.is_file())


# -- uploads: size ----------------------------------------------------------------------------


def test_an_upload_over_the_limit_is_refused_with_413(
    make_app: Any, open_api: Any, corpus_dir: Path
) -> None:
    embedded = make_app(max_upload_bytes=SMALL_UPLOAD_LIMIT)
    with open_api(embedded) as api:
        user = api.register()
        # Over the upload limit, but within the room left for the multipart framing: the
        # upload's own check answers, in the same words as the body limit would.
        slightly_over = upload_bytes(api, user, b"\xff\xd8\xff" + bytes(SMALL_UPLOAD_LIMIT))
        far_over = upload_bytes(api, user, b"\xff\xd8\xff" + bytes(20 * SMALL_UPLOAD_LIMIT))
        for response in (slightly_over, far_over):
            body = assert_problem(response, 413, "image_too_large")
            assert body["detail"] == f"an upload is at most {SMALL_UPLOAD_LIMIT} bytes"
        assert far_over.headers["connection"] == "close"

        listed = api.call("GET", "/images", headers=user, expect=200).json()
        assert listed["total"] == 0
        assert stored_files(embedded.storage_dir) == []
        # An upload under the limit still passes.
        api.upload(corpus_dir / "pillow" / "hopper.png", user)


def test_a_chunked_upload_over_the_limit_is_refused_with_413(make_app: Any, open_api: Any) -> None:
    embedded = make_app(max_upload_bytes=SMALL_UPLOAD_LIMIT)
    body = multipart([file_part(b"big.jpg", b"\xff\xd8\xff" + bytes(20 * SMALL_UPLOAD_LIMIT))])

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    with open_api(embedded) as api:
        user = api.register()
        # An iterator has no length: the request goes without Content-Length.
        response = api.call("POST", "/images/", content=chunks(), headers=multipart_headers(user))
        assert_problem(response, 413, "image_too_large")
        assert stored_files(embedded.storage_dir) == []


# -- over the wire: refused before the body is read -------------------------------------------

WIRE_UPLOAD_LIMIT = 100_000


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real server with a 100 kB upload limit; yields its base URL and a user's token."""
    home = ServerHome(tmp_path_factory.mktemp("small-limit-server"))
    settings = {
        "max_upload_bytes": str(WIRE_UPLOAD_LIMIT),
        "worker_threads": "0",
        "rate_limit_upload": "1000/minute",
        "rate_limit_auth": "1000/minute",
    }
    with home.running(**settings) as (server, api):
        headers = api.register()
        yield server.base_url, headers["Authorization"]


def raw_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response; the server may reset the connection once it has sent it."""
    data = b""
    try:
        while True:
            head, end_of_head, rest = data.partition(b"\r\n\r\n")
            if end_of_head:
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:])
                }
                if len(rest) >= int(headers.get("content-length", "0")):
                    return int(lines[0].split()[1]), headers, rest
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    raise AssertionError(f"no complete response; got {data[:500]!r}")


def upload_request_head(base_url: str, authorization: str, framing: str) -> bytes:
    host = httpx.URL(base_url).netloc.decode()
    return (
        f"POST /api/v1/images/ HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: multipart/form-data; boundary=hostile-boundary\r\n{framing}\r\n\r\n"
    ).encode()


def connect(base_url: str) -> socket.socket:
    url = httpx.URL(base_url)
    assert url.host
    assert url.port
    return socket.create_connection((url.host, url.port), timeout=30)


def test_an_announced_oversized_body_is_refused_before_it_is_sent(
    small_limit_server: tuple[str, str],
) -> None:
    base_url, authorization = small_limit_server
    with connect(base_url) as sock:
        # A gigabyte announced, and nothing of it sent: the answer can only come from the header.
        sock.sendall(upload_request_head(base_url, authorization, "Content-Length: 1000000000"))
        started = time.perf_counter()
        status, headers, content = raw_response(sock)
        elapsed_ms = (time.perf_counter() - started) * 1000
        print(f"\n413 for an announced 1 GB body after {elapsed_ms:.1f} ms")
    assert status == 413
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["connection"] == "close"
    body = json.loads(content)
    assert body["code"] == "image_too_large"
    assert body["detail"] == f"an upload is at most {WIRE_UPLOAD_LIMIT} bytes"


def test_a_chunked_oversized_body_is_cut_off_while_it_streams(
    small_limit_server: tuple[str, str],
) -> None:
    base_url, authorization = small_limit_server
    intended = 200 * WIRE_UPLOAD_LIMIT
    head = upload_request_head(base_url, authorization, "Transfer-Encoding: chunked")
    # The start of a file part, whose content then never ends.
    part_headers, _ = file_part(b"big.jpg", b"")
    first = b"--hostile-boundary\r\n" + part_headers + b"\r\n\r\n\xff\xd8\xff"
    piece = bytes(16384)
    sent = 0
    with connect(base_url) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        pending = f"{len(first):x}\r\n".encode() + first + b"\r\n"
        while True:
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], 30)
            assert readable or writable, "the server neither read nor answered for 30 s"
            if readable:
                break
            count = sock.send(pending)
            pending, sent = pending[count:], sent + count
            if not pending and sent < intended:
                pending = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        sock.setblocking(True)
        status, _, content = raw_response(sock)
    print(f"\n413 after {sent} bytes sent of {intended} (limit {WIRE_UPLOAD_LIMIT})")
    assert status == 413
    assert json.loads(content)["code"] == "image_too_large"
    # The answer came while the client was still sending: the body was not read to its end.
    assert sent < intended


# -- uploads: what the bytes are -------------------------------------------------------------

NOT_IMAGES = {
    "svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
    b'height="10"><rect width="10" height="10"/></svg>',
    "svg-no-prolog": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "eps": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n",
    "pdf": b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n",
    "psd": b"8BPS\x00\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x10\x00\x00\x00\x10"
    b"\x00\x08\x00\x03" + bytes(64),
    "text": b"This is plain text, sent as image/jpeg with a .jpg name.\n",
    "html": b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    "zero-bytes": b"",
}


@pytest.mark.parametrize("data", NOT_IMAGES.values(), ids=NOT_IMAGES.keys())
def test_what_is_not_an_allowed_image_is_415(api: Api, user: dict[str, str], data: bytes) -> None:
    response = upload_bytes(api, user, data, filename="photo.jpg")
    assert_problem(response, 415, "unsupported_image_type")


def test_a_truncated_jpeg_is_422(api: Api, user: dict[str, str], corpus_dir: Path) -> None:
    whole = (corpus_dir / "pillow" / FLOWER).read_bytes()
    response = upload_bytes(api, user, whole[: len(whole) // 2])
    assert_problem(response, 422, "corrupt_image")


def test_a_decompression_bomb_is_422_from_its_header(api: Api, user: dict[str, str]) -> None:
    bomb = png_claiming(50_000, 50_000)
    assert len(bomb) < 200  # 7.5 GB once decoded
    started = time.perf_counter()
    response = upload_bytes(api, user, bomb, filename="bomb.png")
    print(f"\n50000x50000 PNG refused in {(time.perf_counter() - started) * 1000:.1f} ms")
    assert_problem(response, 422, "decompression_bomb")


FILENAMES = [
    pytest.param(b"../../etc/passwd.jpg", "passwd.jpg", id="parent-folders"),
    pytest.param(b"..\\..\\x.png", "x.png", id="windows-parent-folders"),
    pytest.param(b"/etc/cron.d/evil.jpg", "evil.jpg", id="absolute"),
    pytest.param(b"a\x00b.jpg", "ab.jpg", id="nul"),
    pytest.param(b"..", "image.jpg", id="only-dots"),
    pytest.param(b"x" * 1000 + b".jpg", "x" * (MAX_FILENAME_CHARS - 4) + ".jpg", id="very-long"),
]


@pytest.mark.parametrize(("sent", "kept"), FILENAMES)
def test_a_hostile_filename_is_sanitized_and_never_a_path(
    embedded: Any, api: Api, user: dict[str, str], corpus_dir: Path, sent: bytes, kept: str
) -> None:
    data = (corpus_dir / "pillow" / FLOWER).read_bytes()
    response = api.call(
        "POST",
        "/images/",
        content=multipart([file_part(sent, data)]),
        headers=multipart_headers(user),
        expect=201,
    )
    image = response.json()
    assert image["filename"] == kept
    # The blob lives under the normal key, whatever the name said.
    assert stored_files(embedded.storage_dir) == [
        embedded.storage_dir / image["user_id"] / f"{image['id']}.jpg"
    ]
    assert api.metadata(image["id"], user)["filename"] == kept


def test_a_filename_longer_than_a_part_header_may_be_is_413(
    api: Api, user: dict[str, str], corpus_dir: Path
) -> None:
    data = (corpus_dir / "pillow" / FLOWER).read_bytes()
    response = api.call(
        "POST",
        "/images/",
        content=multipart([file_part(b"x" * 5000 + b".jpg", data)]),
        headers=multipart_headers(user),
    )
    assert_problem(response, 413, "form_part_too_large")


# -- uploads: the form ------------------------------------------------------------------------


def test_an_empty_form_or_no_file_part_is_422_naming_file(
    api: Api, user: dict[str, str], corpus_dir: Path
) -> None:
    data = (corpus_dir / "pillow" / FLOWER).read_bytes()
    headers = multipart_headers(user)
    empty_form = api.call("POST", "/images/", content=b"--hostile-boundary--\r\n", headers=headers)
    no_body = api.call("POST", "/images/", headers=headers)
    other_part = api.call(
        "POST",
        "/images/",
        content=multipart([file_part(b"a.jpg", data, b"image")]),
        headers=headers,
    )
    for response in (empty_form, no_body, other_part):
        assert_problem(response, 422, "invalid_input", "file")


def test_a_file_part_that_is_not_one_file_is_422(
    api: Api, user: dict[str, str], corpus_dir: Path
) -> None:
    data = (corpus_dir / "pillow" / FLOWER).read_bytes()
    headers = multipart_headers(user)
    text_field = (b'Content-Disposition: form-data; name="file"', b"just some text")
    two_files = [file_part(b"a.jpg", data), file_part(b"b.jpg", data)]
    for parts in ([text_field], two_files):
        response = api.call("POST", "/images/", content=multipart(parts), headers=headers)
        assert_problem(response, 422, "invalid_input", "file")
    # Binary data without a filename cannot even be read as a text field.
    nameless = (b'Content-Disposition: form-data; name="file"\r\nContent-Type: image/jpeg', data)
    response = api.call("POST", "/images/", content=multipart([nameless]), headers=headers)
    assert_problem(response, 422, "invalid_input")


def test_a_body_that_is_not_a_form_is_400(api: Api, user: dict[str, str]) -> None:
    garbage = api.call(
        "POST", "/images/", content=b"\x00\x01 not multipart", headers=multipart_headers(user)
    )
    assert_problem(garbage, 400, "malformed_body")
    json_body = api.call("POST", "/images/", json={"file": "x"}, headers=user)
    assert_problem(json_body, 400, "malformed_body")


def test_a_form_with_too_many_parts_is_413(api: Api, user: dict[str, str]) -> None:
    parts = [
        file_part(f"{number}.jpg".encode(), b"x", f"f{number}".encode()) for number in range(9)
    ]
    response = api.call(
        "POST", "/images/", content=multipart(parts), headers=multipart_headers(user)
    )
    assert_problem(response, 413, "too_many_parts")


# -- transformations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        pytest.param({"zoom": 2}, "invalid_input", "zoom", id="unknown-field"),
        pytest.param(
            {"resize": {"width": 10, "zoom": 2}},
            "invalid_input",
            "resize.zoom",
            id="unknown-nested",
        ),
        pytest.param(
            {"transformations": {"rotate": 90, "spin": True}},
            "invalid_input",
            "transformations.spin",
            id="unknown-in-envelope",
        ),
        pytest.param(
            {"crop": {"x": 400, "y": 0, "width": 200, "height": 10}},
            "crop_outside_image",
            "crop",
            id="crop-outside",
        ),
        pytest.param(
            {"resize": {"width": 9000}}, "output_too_large", "resize", id="resize-over-limit"
        ),
        pytest.param(
            {"resize": {"width": 10**9}}, "invalid_input", "resize.width", id="resize-absurd"
        ),
        pytest.param({"rotate": 45}, "invalid_transformation", "rotate", id="rotate-not-90"),
        pytest.param({"format": "svg"}, "invalid_input", "format", id="format-unknown"),
        pytest.param({"quality": 10**20}, "invalid_input", "quality", id="huge-quality"),
        pytest.param({"blur": "a lot"}, "invalid_input", "blur", id="wrong-type"),
        pytest.param(
            {"watermark": {"image_id": "0" * 32}},
            "watermark_not_found",
            "watermark.image_id",
            id="watermark-unknown",
        ),
    ],
)
def test_a_bad_transformation_is_422_naming_the_field(
    api: Api,
    user: dict[str, str],
    flower: dict[str, Any],
    body: dict[str, Any],
    code: str,
    field: str,
) -> None:
    response = api.call("POST", f"/images/{flower['id']}/transform", json=body, headers=user)
    assert_problem(response, 422, code, field)


def test_an_empty_transformation_is_422(
    api: Api, user: dict[str, str], flower: dict[str, Any]
) -> None:
    bodies: list[dict[str, Any]] = [{}, {"transformations": {}}, {"rotate": 0, "flip": False}]
    for body in bodies:
        response = api.call("POST", f"/images/{flower['id']}/transform", json=body, headers=user)
        assert_problem(response, 422, "invalid_transformation")


def test_a_watermark_of_another_user_is_422(
    api: Api, user: dict[str, str], flower: dict[str, Any], corpus_dir: Path
) -> None:
    someone_else = api.register()
    their_mark = api.upload(corpus_dir / "pillow" / "hopper.png", someone_else)
    body = {"watermark": {"image_id": their_mark["id"]}}
    response = api.call("POST", f"/images/{flower['id']}/transform", json=body, headers=user)
    assert_problem(response, 422, "watermark_not_found", "watermark.image_id")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[1, 2, 3]", id="array"),
        pytest.param(b'"resize"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"resize": {"width": {"height": {"fit": [1]}}}}', id="nested-wrongly"),
        pytest.param(b'{"a":' * 10_000 + b"1" + b"}" * 10_000, id="nested-10000-deep"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, id="array-30000-deep"),
        pytest.param(b'{"rotate": 1' + b"0" * 5000 + b"}", id="5000-digit-integer"),
        pytest.param(b'{"blur": 1e999}', id="float-overflow"),
        pytest.param(b'{"resize": {"width": -1e308}}', id="huge-negative"),
    ],
)
def test_a_transform_body_of_the_wrong_shape_is_422(
    api: Api, user: dict[str, str], flower: dict[str, Any], raw: bytes
) -> None:
    response = post_json(api, f"/images/{flower['id']}/transform", raw, user)
    assert response.status_code == 422, response.text
    assert_problem(response, 422, "invalid_input", response.json().get("field"))


def test_a_transform_body_of_10_mb_is_413(
    api: Api, user: dict[str, str], flower: dict[str, Any]
) -> None:
    raw = b'{"watermark": {"text": "' + b"x" * 10_000_000 + b'"}}'
    response = post_json(api, f"/images/{flower['id']}/transform", raw, user)
    assert_problem(response, 413, "request_too_large")


@pytest.mark.parametrize("path", ["/register", "/login", "/images/{id}/transform"])
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"{not json", id="syntax"),
        pytest.param(b'{"username": "a", ', id="cut-short"),
        pytest.param(b'{"username": "\\ud800abc", "password": "x"}', id="lone-surrogate"),
        pytest.param(b"\xff\xfe\x00\x01", id="binary"),
    ],
)
def test_malformed_json_is_400(
    api: Api, user: dict[str, str], flower: dict[str, Any], path: str, raw: bytes
) -> None:
    response = post_json(api, path.format(id=flower["id"]), raw, user)
    assert_problem(response, 400, "malformed_body")


# -- listing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=-1", "page"),
        ("page=0", "page"),
        ("page=abc", "page"),
        ("page=1.5", "page"),
        ("limit=0", "limit"),
        ("limit=-3", "limit"),
        (f"limit={10**6}", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        (f"page={10**30}", "page"),
    ],
)
def test_bad_paging_is_422_naming_the_parameter(
    api: Api, user: dict[str, str], query: str, field: str
) -> None:
    response = api.call("GET", f"/images?{query}", headers=user)
    assert_problem(response, 422, "invalid_query", field)


def test_an_overlong_image_id_is_422(api: Api, user: dict[str, str]) -> None:
    response = api.call("GET", f"/images/{'x' * 500}/metadata", headers=user)
    assert_problem(response, 422, "invalid_input", "image_id")


# -- tokens -----------------------------------------------------------------------------------


def unverified_claims(headers: dict[str, str]) -> dict[str, Any]:
    token = headers["Authorization"].removeprefix("Bearer ")
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged_tokens(claims: dict[str, Any]) -> dict[str, str]:
    now = int(time.time())
    expired = {**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}
    return {
        "alg-none": f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}.",
        "alg-none-signed": f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}.c2ln",
        "expired": jwt.encode(expired, TEST_SECRET, algorithm="HS256"),
        "other-key": jwt.encode(claims, "another-secret-" + "k" * 40, algorithm="HS256"),
        "wrong-audience": jwt.encode({**claims, "aud": "someone-else"}, TEST_SECRET, "HS256"),
        "wrong-issuer": jwt.encode({**claims, "iss": "someone-else"}, TEST_SECRET, "HS256"),
        "no-expiry": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"}, TEST_SECRET, "HS256"
        ),
        "not-yet-valid": jwt.encode(
            {**claims, "iat": now + 3600, "nbf": now + 3600, "exp": now + 7200},
            TEST_SECRET,
            "HS256",
        ),
        "unknown-user": jwt.encode({**claims, "sub": "0" * 32}, TEST_SECRET, "HS256"),
        "tampered-payload": ".".join(
            [
                jwt.encode(claims, TEST_SECRET, "HS256").split(".")[0],
                b64url({**claims, "sub": "0" * 32}),
                jwt.encode(claims, TEST_SECRET, "HS256").split(".")[2],
            ]
        ),
    }


def test_forged_expired_and_foreign_tokens_are_401(api: Api, user: dict[str, str]) -> None:
    assert api.call("GET", "/images", headers=user).status_code == 200
    for name, token in forged_tokens(unverified_claims(user)).items():
        response = api.call("GET", "/images", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, f"{name}: {response.text}"
        assert_problem(response, 401, "invalid_token")
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param("Bearer", id="no-token"),
        pytest.param("Bearer    ", id="blank-token"),
        pytest.param("Basic dXNlcjpwYXNzd29yZA==", id="basic"),
        pytest.param("Bearer not.a.jwt", id="not-a-jwt"),
        pytest.param("Bearer " + "A" * 10_000, id="huge"),
        pytest.param(b"Bearer \xe9\xe9\xe9", id="latin-1"),
    ],
)
def test_a_missing_or_garbage_authorization_header_is_401(
    api: Api, flower: dict[str, Any], authorization: str | bytes | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [
        ("GET", "/images"),
        ("GET", f"/images/{flower['id']}"),
        ("DELETE", f"/images/{flower['id']}"),
    ]:
        response = api.call(method, path, headers=headers)
        assert_problem(response, 401, "invalid_token")


def test_an_upload_without_a_token_is_refused_before_its_body_is_read(
    api: Api, corpus_dir: Path
) -> None:
    data = (corpus_dir / "pillow" / FLOWER).read_bytes()
    response = api.call("POST", "/images/", files={"file": ("a.jpg", data)})
    assert_problem(response, 401, "invalid_token")


# -- passwords --------------------------------------------------------------------------------


def test_a_password_over_72_bytes_is_422_at_register_and_401_at_login(api: Api) -> None:
    too_long = "p" * 73
    register = api.call("POST", "/register", json={"username": "longpass", "password": too_long})
    assert_problem(register, 422, "invalid_password", "password")
    # 72 bytes in UTF-8 (36 two-byte characters) is fine; one byte more is not.
    accepted = "\u00e9" * 36
    api.register("accented", password=accepted)
    over = api.call("POST", "/register", json={"username": "accented2", "password": accepted + "a"})
    assert_problem(over, 422, "invalid_password", "password")

    api.register("existing")
    for username in ("existing", "nobody-here"):
        login = api.call("POST", "/login", json={"username": username, "password": too_long})
        assert_problem(login, 401, "invalid_credentials")
    api.login("existing")
    api.login("accented", password=accepted)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"username": "shortpw", "password": "short"}, "invalid_password", "password"),
        ({"username": "../etc", "password": PASSWORD}, "invalid_username", "username"),
        ({"username": "a\u0000b", "password": PASSWORD}, "invalid_username", "username"),
        ({"username": "x" * 300, "password": PASSWORD}, "invalid_input", "username"),
        ({"username": "admin"}, "invalid_input", "password"),
        (
            {"username": "admin2", "password": PASSWORD, "is_admin": True},
            "invalid_input",
            "is_admin",
        ),
        ({"username": 7, "password": PASSWORD}, "invalid_input", "username"),
    ],
)
def test_bad_credentials_at_register_are_422_naming_the_field(
    api: Api, body: dict[str, Any], code: str, field: str
) -> None:
    response = api.call("POST", "/register", json=body)
    assert_problem(response, 422, code, field)


def test_a_taken_username_is_409_whatever_its_case(api: Api) -> None:
    api.register("taken")
    response = api.call("POST", "/register", json={"username": "TAKEN", "password": PASSWORD})
    assert_problem(response, 409, "username_taken")
