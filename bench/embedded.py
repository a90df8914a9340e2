"""The embedded profile end to end, as a user of ``make run`` meets it: ``imgproc serve`` with
its default worker threads, SQLite and a local blob folder, driven through the HTTP API only.

One measurement: a fresh server in a fresh folder; a user registered and the sources uploaded
over HTTP (untimed); then, timed, ``POST /images/{id}/transform`` for every job, one request
after the other on one keep-alive connection, and ``GET /images/{id}/metadata`` until every
derived image is READY. The time runs from the first transform request to the moment the last
image is seen READY; the CPU time is that of the server's process tree (the HTTP process, its
job threads, the codec's render processes) over the same span.

The metadata is polled in request order: the first image not yet seen READY is asked for
every :data:`POLL_SECONDS`, and once it is READY the next one is asked at once. Jobs finish
roughly in the order they were requested, so this asks about a few hundred requests in all,
and the last READY is seen within one poll of when it happened.
"""

from __future__ import annotations

import http.client
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.processes import Throughput, machine_busy_seconds, tree_cpu_seconds
from bench.scenarios.api import free_port, imgproc_server, multipart

POLL_SECONDS: Final = 0.05
#: A measurement that has not finished by then failed (a deadline, not a figure).
DEADLINE_SECONDS: Final = 600.0


class _Client:
    """One keep-alive HTTP connection to the server, with the user's token."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self._headers: dict[str, str] = {}

    def call(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, Any]:
        headers = dict(self._headers)
        if content_type:
            headers["Content-Type"] = content_type
        self._connection.request(method, "/api/v1" + path, body=body, headers=headers)
        answer = self._connection.getresponse()
        data = answer.read()
        return answer.status, json.loads(data) if data else None

    def expect(
        self, status: int, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> Any:
        got, answer = self.call(method, path, body, content_type)
        if got != status:
            raise RuntimeError(f"{method} {path} answered {got}, not {status}: {answer!r:.300}")
        return answer

    def log_in(self) -> None:
        credentials = {"username": f"bench-{secrets.token_hex(4)}", "password": "correct horse"}
        body = json.dumps(credentials).encode()
        answer = self.expect(201, "POST", "/register", body, "application/json")
        self._headers["Authorization"] = f"Bearer {answer['access_token']}"

    def close(self) -> None:
        self._connection.close()


def measure(photo: Path, sources: int, bodies: Sequence[dict[str, Any]]) -> Throughput:
    """``sources`` uploads of ``photo``, each transformed by every one of ``bodies``."""
    workdir = Path(tempfile.mkdtemp(prefix="imgproc-bench-embedded-"))
    try:
        with imgproc_server(free_port(), workdir) as server:
            assert server.process is not None
            client = _Client(server.port)
            try:
                client.log_in()
                form, content_type = multipart(photo.read_bytes(), photo.name)
                uploaded = [
                    client.expect(201, "POST", "/images/", form, content_type)["id"]
                    for _ in range(sources)
                ]
                requests = [
                    (f"/images/{source}/transform", json.dumps(body).encode())
                    for source in uploaded
                    for body in bodies
                ]
                roots = [server.process.pid]
                machine_before, cpu_before = machine_busy_seconds(), tree_cpu_seconds(roots)
                began, client_before = time.monotonic(), time.process_time()
                derived = [
                    client.expect(200, "POST", path, body, "application/json")["id"]
                    for path, body in requests
                ]
                requested = time.monotonic()
                if len(set(derived)) != len(derived):
                    raise RuntimeError("two transformations made the same derived image")
                done = _wait_all_ready(client, derived)
                cpu = tree_cpu_seconds(roots) - cpu_before
                machine = machine_busy_seconds() - machine_before
                client_cpu = time.process_time() - client_before
            finally:
                client.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return Throughput(
        "embedded",
        len(derived),
        done - began,
        cpu,
        machine,
        # The client's own CPU (requests and polls) is part of the machine's, not the tree's.
        extra={"requests_seconds": requested - began, "client_cpu_seconds": client_cpu},
    )


def _wait_all_ready(client: _Client, derived: list[str]) -> float:
    """The moment every one of ``derived`` was seen READY (``time.monotonic()``)."""
    give_up = time.monotonic() + DEADLINE_SECONDS
    for image_id in derived:
        while True:
            status = client.expect(200, "GET", f"/images/{image_id}/metadata")["status"]
            if status == "READY":
                break
            if status == "FAILED":
                raise RuntimeError(f"the job of {image_id} FAILED")
            if time.monotonic() > give_up:
                raise RuntimeError(f"not every job READY after {DEADLINE_SECONDS:.0f} s")
            time.sleep(POLL_SECONDS)
    return time.monotonic()
