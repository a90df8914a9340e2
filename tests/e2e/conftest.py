"""End-to-end fixtures: the HTTP shell over the embedded profile's real adapters.

Two ways in, one driver:

- ``make_app(**setting_overrides)`` builds an app (and its container) on SQLite in ``tmp_path``
  (migrated), a ``LocalBlobStorage`` in ``tmp_path / "blobs"``, the Pillow codec, bcrypt at
  cost 4, a test-only secret (``environment="test"``) and two worker threads. It returns an
  :class:`EmbeddedApp`: ``.app``, ``.container``, ``.settings``, ``.storage_dir``. Override any
  setting, e.g. ``make_app(worker_threads=0)`` to keep jobs queued, or
  ``make_app(rate_limit_upload="2/minute")``. Build the app before opening a client; the
  container's providers may be overridden before ``make_app`` returns only through settings.
- ``client`` is a Litestar ``TestClient`` (lifespan run, so worker threads are live) on the
  default ``make_app()``; ``api`` wraps it in an :class:`Api` driver. For an app with other
  settings, use ``open_api(make_app(...))``, a context manager that yields an :class:`Api`.
- ``live_server`` (session-scoped) is a real ``imgproc serve`` process on a free port of
  127.0.0.1, with its own SQLite file and blob folder in a temporary folder, a random strong
  secret and bcrypt at cost 4; it is stopped with SIGTERM at the end of the session.
  ``live_api`` is an :class:`Api` over an ``httpx.Client`` pointed at it. Its ``.log_path``
  holds the server's output for diagnosis.

The :class:`Api` driver speaks the API the way a client would: ``register()`` (a fresh user,
returns the ``Authorization`` headers), ``upload(path)``, ``transform(image_id, body)``,
``wait_until_ready(image_id)``, ``download(image_id)`` (follows the 307 and returns the blob
response), ``metadata(image_id)``. Each asserts the status it expects and returns the JSON body;
pass ``expect=`` to expect another status, or use ``.http`` (the underlying client) directly.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from imgproc_core.adapters.sqlalchemy.schema import upgrade
from imgproc_core.container import Container, build_container
from imgproc_core.settings import Settings
from imgproc_http import create_app
from tests.support.waiting import wait_until

#: The test client's origin; signed URLs point here so the client can follow them.
TEST_BASE_URL = "http://testserver.local"
#: Long enough for every adapter that checks; for tests only.
TEST_SECRET = "e2e-test-secret-0123456789abcdef0123456789abcdef"
#: How long a test waits for a job before it fails (not a timing assertion: a deadline).
JOB_DEADLINE_SECONDS = 60.0
SERVER_START_DEADLINE_SECONDS = 60.0
PASSWORD = "correct horse battery"


class HttpClient(Protocol):
    """What the driver needs: both ``httpx.Client`` and Litestar's ``TestClient`` have it."""

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response: ...

    def get(self, url: str, **kwargs: Any) -> httpx.Response: ...


@dataclass
class EmbeddedApp:
    app: Litestar
    container: Container
    settings: Settings
    storage_dir: Path


class Api:
    """A client of the API, for tests: one method per thing a user does."""

    _names = itertools.count(1)

    def __init__(self, http: HttpClient, prefix: str = "/api/v1") -> None:
        self.http = http
        self.prefix = prefix

    def call(
        self, method: str, path: str, *, expect: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = self.http.request(method, f"{self.prefix}{path}", **kwargs)
        if expect is not None:
            assert response.status_code == expect, (
                f"{method} {path}: expected {expect}, got {response.status_code}: {response.text}"
            )
        return response

    def register(self, username: str | None = None, password: str = PASSWORD) -> dict[str, str]:
        """A new user; returns the headers that authenticate as them."""
        name = username or f"user{os.getpid()}x{next(self._names)}"
        body = self.call(
            "POST", "/register", json={"username": name, "password": password}, expect=201
        ).json()
        return {"Authorization": f"Bearer {body['access_token']}"}

    def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        body = self.call(
            "POST", "/login", json={"username": username, "password": password}, expect=200
        ).json()
        return {"Authorization": f"Bearer {body['access_token']}"}

    def upload(
        self, path: Path, headers: dict[str, str], *, expect: int = 201, filename: str | None = None
    ) -> dict[str, Any]:
        files = {"file": (filename or path.name, path.read_bytes(), "application/octet-stream")}
        result: dict[str, Any] = self.call(
            "POST", "/images/", files=files, headers=headers, expect=expect
        ).json()
        return result

    def transform(
        self, image_id: str, body: dict[str, Any], headers: dict[str, str], *, expect: int = 200
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "POST", f"/images/{image_id}/transform", json=body, headers=headers, expect=expect
        ).json()
        return result

    def metadata(
        self, image_id: str, headers: dict[str, str], *, expect: int = 200
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "GET", f"/images/{image_id}/metadata", headers=headers, expect=expect
        ).json()
        return result

    def wait_until_ready(
        self, image_id: str, headers: dict[str, str], deadline: float = JOB_DEADLINE_SECONDS
    ) -> dict[str, Any]:
        """Poll the metadata until the job has ended; fails on FAILED or at the deadline."""
        image: dict[str, Any] = {}

        def ready() -> bool:
            nonlocal image
            image = self.metadata(image_id, headers)
            assert image["status"] != "FAILED", f"the job failed: {image['failure_reason']}"
            return bool(image["status"] == "READY")

        wait_until(ready, timeout=deadline, interval=0.05, message=lambda: f"not READY: {image}")
        return image

    def redirect(self, image_id: str, headers: dict[str, str]) -> httpx.Response:
        """``GET /images/{id}`` without following: the 307 (or 202, 404, 409)."""
        return self.call("GET", f"/images/{image_id}", headers=headers, follow_redirects=False)

    def download(self, image_id: str, headers: dict[str, str]) -> httpx.Response:
        """The image's bytes through its signed URL, checking the redirect on the way."""
        redirect = self.redirect(image_id, headers)
        assert redirect.status_code == 307, redirect.text
        assert redirect.headers["cache-control"] == "no-store"
        blob = self.http.get(redirect.headers["location"])
        assert blob.status_code == 200, blob.text
        return blob


def e2e_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": f"sqlite:///{tmp_path / 'imgproc.db'}",
        "storage": "local",
        "storage_dir": str(tmp_path / "blobs"),
        "queue": "table",
        "rate_limiter": "memory",
        "url_cache": "memory",
        "jwt_secret": TEST_SECRET,
        "bcrypt_rounds": 4,
        "public_base_url": TEST_BASE_URL,
        "worker_threads": 2,
        "job_backoff_seconds": 0.1,
        # Generous, so that a test's own requests never trip them unless it means to.
        "rate_limit_upload": "1000/minute",
        "rate_limit_transform": "1000/minute",
        "rate_limit_auth": "1000/minute",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Any]:
    built: list[Container] = []

    def build(**overrides: Any) -> EmbeddedApp:
        folder = tmp_path / f"app{len(built)}"
        folder.mkdir()
        settings = e2e_settings(folder, **overrides)
        upgrade(settings.database_url)
        container = build_container(settings)
        built.append(container)
        return EmbeddedApp(
            app=create_app(container),
            container=container,
            settings=settings,
            storage_dir=Path(settings.storage_dir),
        )

    yield build
    for container in built:
        container.shutdown_resources()


@contextmanager
def _open_api(embedded: EmbeddedApp) -> Iterator[Api]:
    with TestClient(embedded.app, base_url=TEST_BASE_URL, timeout=30) as client:
        yield Api(client)


@pytest.fixture
def open_api() -> Any:
    return _open_api


@pytest.fixture
def embedded(make_app: Any) -> EmbeddedApp:
    app: EmbeddedApp = make_app()
    return app


@pytest.fixture
def client(embedded: EmbeddedApp) -> Iterator[TestClient[Litestar]]:
    with TestClient(embedded.app, base_url=TEST_BASE_URL, timeout=30) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient[Litestar]) -> Api:
    return Api(client)


# -- a real server process -----------------------------------------------------------------------


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    storage_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _imgproc_command() -> list[str]:
    script = Path(sys.executable).parent / "imgproc"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from imgproc_cli.app import main; main()"]


def _wait_for_health(server: LiveServer) -> None:
    def healthy() -> bool:
        if server.process.poll() is not None:
            pytest.fail(f"imgproc serve exited with {server.process.returncode}:\n{server.log()}")
        return httpx.get(f"{server.base_url}/healthz", timeout=1).status_code == 200

    wait_until(
        healthy,
        timeout=SERVER_START_DEADLINE_SECONDS,
        interval=0.1,
        message=lambda: f"imgproc serve did not answer /healthz in time:\n{server.log()}",
        ignoring=httpx.TransportError,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("live-server")
    port = _free_port()
    environ = {key: value for key, value in os.environ.items() if not key.startswith("IMGPROC_")}
    environ.update(
        {
            "IMGPROC_ENVIRONMENT": "development",
            "IMGPROC_JWT_SECRET": secrets.token_hex(32),
            "IMGPROC_DATABASE_URL": f"sqlite:///{folder / 'imgproc.db'}",
            "IMGPROC_STORAGE": "local",
            "IMGPROC_STORAGE_DIR": str(folder / "blobs"),
            "IMGPROC_QUEUE": "table",
            "IMGPROC_WORKER_THREADS": "2",
            "IMGPROC_BCRYPT_ROUNDS": "4",
        }
    )
    log_path = folder / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*_imgproc_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(
        base_url=f"http://127.0.0.1:{port}",
        process=process,
        log_path=log_path,
        storage_dir=folder / "blobs",
    )
    try:
        _wait_for_health(server)
        yield server
    finally:
        _stop(process)


@pytest.fixture
def live_api(live_server: LiveServer) -> Iterator[Api]:
    with httpx.Client(base_url=live_server.base_url, timeout=30) as http:
        yield Api(http)
