"""The ``imgproc`` command line in tests: in process with Typer's ``CliRunner``, configured the
way an operator configures it, through ``IMGPROC_*`` environment variables.

``Cli(environment)`` runs commands and checks their exit status; ``.json(...)`` parses what a
``--json`` command prints. ``environment_for(settings)`` spells settings as the variables the
command line reads, and hides any other ``IMGPROC_*`` variable of the process running the
tests, so a test sees exactly the settings it chose. ``ServiceSide`` is the service's side of
the same settings: a container to upload and run jobs with, and the HTTP app to log in through.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import TestClient
from typer.testing import CliRunner, Result

from imgproc_cli.app import app
from imgproc_core.container import Container, build_container
from imgproc_core.domain.images import Image
from imgproc_core.domain.jobs import JobStatus
from imgproc_core.domain.presets import PresetReference
from imgproc_core.domain.transformations import Transformation
from imgproc_core.settings import ENV_PREFIX, Settings
from imgproc_core.use_cases import (
    LogInCommand,
    RequestTransformCommand,
    UploadImageCommand,
)
from imgproc_http import create_app

TEST_SECRET = "cli-test-secret-0123456789abcdef0123456789abcdef"
#: Wide enough that no table column of a test is cut.
COLUMNS = "250"


def environment_for(settings: Settings) -> dict[str, str | None]:
    """``settings`` as ``IMGPROC_*`` variables; every other ``IMGPROC_*`` variable of this
    process is unset (None) for the command."""
    values: dict[str, Any] = msgspec.to_builtins(settings)
    environment: dict[str, str | None] = {
        f"{ENV_PREFIX}{name.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in values.items()
    }
    for name in os.environ:
        if name.startswith(ENV_PREFIX) and name not in environment:
            environment[name] = None
    environment["COLUMNS"] = COLUMNS
    return environment


def embedded_settings(folder: Path, **overrides: Any) -> Settings:
    """The embedded profile in ``folder``: SQLite, local files, the queue table; a test
    secret, bcrypt at its lowest cost, no worker thread or process (tests run jobs)."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": f"sqlite:///{folder / 'imgproc.db'}",
        "storage": "local",
        "storage_dir": str(folder / "blobs"),
        "queue": "table",
        "jwt_secret": TEST_SECRET,
        "bcrypt_rounds": 4,
        "worker_threads": 0,
        "worker_processes": 0,
        "rate_limit_auth": "1000/minute",
    }
    values.update(overrides)
    return Settings(**values)


class Cli:
    """Runs ``imgproc`` commands in process with a fixed environment."""

    def __init__(self, environment: Mapping[str, str | None]) -> None:
        self.environment = dict(environment)
        self.runner = CliRunner()

    def __call__(self, *arguments: str, stdin: str | None = None, expect: int = 0) -> Result:
        result = self.runner.invoke(app, list(arguments), input=stdin, env=self.environment)
        assert result.exit_code == expect, (
            f"imgproc {' '.join(arguments)}: expected exit status {expect}, got "
            f"{result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            + (f"\nexception: {result.exception!r}" if result.exception else "")
        )
        return result

    def json(self, *arguments: str, expect: int = 0) -> Any:
        return msgspec.json.decode(self(*arguments, "--json", expect=expect).stdout)

    def create_user(self, username: str, password: str) -> None:
        self("users", "create", username, "--password-stdin", stdin=f"{password}\n")


class ServiceSide:
    """What the service does with the same settings, for a test to arrange and to check."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.container: Container = build_container(settings)

    @property
    def storage_dir(self) -> Path:
        return Path(self.settings.storage_dir)

    def blob_path(self, image: Image) -> Path:
        return self.storage_dir / image.storage_key

    def user_id(self, username: str, password: str) -> str:
        session = self.container.log_in()(LogInCommand(username, password))
        return session.user.id

    def upload(self, user_id: str, path: Path) -> Image:
        command = UploadImageCommand(user_id, path.name, path.read_bytes())
        image: Image = self.container.upload_image()(command)
        return image

    def request(self, source: Image, transformation: Transformation | PresetReference) -> Image:
        command = RequestTransformCommand(source.user_id, source.id, transformation)
        image: Image = self.container.request_transform()(command)
        return image

    def run_jobs(self) -> int:
        """Run every due job in this process, as a worker thread would; how many ran."""
        run_next_job = self.container.run_next_job(worker_id="test-worker")
        count = 0
        while run_next_job():
            count += 1
        return count

    def image(self, image_id: str) -> Image | None:
        with self.container.unit_of_work() as uow:
            image: Image | None = uow.images.get(image_id)
        return image

    def status(self, image_id: str) -> JobStatus | None:
        image = self.image(image_id)
        return None if image is None else image.status

    def queued(self) -> int:
        with self.container.unit_of_work() as uow:
            count: int = uow.jobs.pending_count()
        return count

    @contextmanager
    def http(self) -> Iterator[TestClient[Any]]:
        """The HTTP app on these settings, for logging in as an API client does."""
        with TestClient(create_app(self.container), timeout=30) as client:
            yield client

    def close(self) -> None:
        self.container.shutdown_resources()
