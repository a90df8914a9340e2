"""Real ``imgproc serve`` processes that a test starts, kills and starts again.

The session's ``live_server`` lives as long as the test run; the servers here belong to one test,
which may SIGKILL or SIGTERM them and start another on the same database file and blob folder
(a :class:`ServerHome`), the way an operator restarts a crashed service.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httpx

from imgproc_core.container import Container, build_container
from imgproc_core.settings import Settings
from tests.e2e.conftest import (
    Api,
    HttpClient,
    LiveServer,
    _free_port,
    _imgproc_command,
    _stop,
    _wait_for_health,
    e2e_settings,
)

#: How long a test waits for a server to exit after a signal (a deadline, not an assertion).
EXIT_DEADLINE_SECONDS = 60.0
#: Files of interrupted atomic writes of the local storage; never blobs.
TEMPORARY_BLOB = re.compile(r"^\.~.*\.tmp$")


@dataclass
class ServerHome:
    """What survives a server process: its SQLite file, its blob folder and its secret."""

    folder: Path
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    starts: int = 0

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.folder / 'imgproc.db'}"

    @property
    def storage_dir(self) -> Path:
        return self.folder / "blobs"

    def environ(self, **settings: str) -> dict[str, str]:
        environ = {
            key: value for key, value in os.environ.items() if not key.startswith("IMGPROC_")
        }
        environ.update(
            {
                "IMGPROC_ENVIRONMENT": "development",
                "IMGPROC_JWT_SECRET": self.secret,
                "IMGPROC_DATABASE_URL": self.database_url,
                "IMGPROC_STORAGE": "local",
                "IMGPROC_STORAGE_DIR": str(self.storage_dir),
                "IMGPROC_QUEUE": "table",
                "IMGPROC_BCRYPT_ROUNDS": "4",
                "IMGPROC_JOB_BACKOFF_SECONDS": "0.1",
            }
        )
        environ.update({f"IMGPROC_{name.upper()}": value for name, value in settings.items()})
        return environ

    def start(self, **settings: str) -> LiveServer:
        """A new ``imgproc serve`` on this home, answering /healthz; ``settings`` are
        ``IMGPROC_*`` variables by their lower-case name (``worker_threads="0"``)."""
        port = _free_port()
        self.starts += 1
        log_path = self.folder / f"server-{self.starts}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*_imgproc_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.folder,
                env=self.environ(**settings),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = LiveServer(
            base_url=f"http://127.0.0.1:{port}",
            process=process,
            log_path=log_path,
            storage_dir=self.storage_dir,
        )
        try:
            _wait_for_health(server)
        except BaseException:
            _stop(process)
            raise
        return server

    @contextmanager
    def running(self, **settings: str) -> Iterator[tuple[LiveServer, Api]]:
        """A started server and an :class:`Api` on it; stopped (SIGTERM) on the way out unless
        the test has ended it already."""
        server = self.start(**settings)
        try:
            with httpx.Client(base_url=server.base_url, timeout=30) as http:
                # The driver's protocol spells httpx's signatures more loosely than httpx does.
                yield server, Api(cast(HttpClient, http))
        finally:
            _stop(server.process)

    def container(self) -> Container:
        """A container on this home's database and blobs, to look at what a server left."""
        settings: Settings = e2e_settings(
            self.folder,
            jwt_secret=self.secret,
            database_url=self.database_url,
            storage_dir=str(self.storage_dir),
            worker_threads=0,
        )
        return build_container(settings)

    def blobs(self) -> list[Path]:
        """Every stored blob, without leftovers of interrupted writes."""
        return sorted(
            path
            for path in self.storage_dir.rglob("*")
            if path.is_file() and not TEMPORARY_BLOB.match(path.name)
        )


def kill(server: LiveServer) -> None:
    """SIGKILL: the process gets no chance to finish or release anything."""
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=EXIT_DEADLINE_SECONDS)


def terminate(server: LiveServer) -> int:
    """SIGTERM, then the exit status once the process has shut down."""
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=EXIT_DEADLINE_SECONDS)
