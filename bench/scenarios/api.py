"""Target 6: the HTTP API under load from wrk, next to a bare Litestar app, one process each.

``imgproc serve`` runs the embedded profile (SQLite, local blobs) with a strong secret, rate
limits too high to interfere and a cheap bcrypt cost (only the set-up logs in). A user, a token
and one uploaded image are made through the API; then, alternating with the bare app's
equivalents, wrk (one thread, on 127.0.0.1 only, for a fixed time) sends:

- ``POST /api/v1/images/`` with a photograph of about 1 MB as multipart/form-data, against
  the bare app's ``POST /upload``, which reads the file and answers 201 (the target's
  comparison), and its ``POST /upload-stored``, which also writes the file to disk and flushes
  it, as any service that keeps uploads must (to tell the cost of storing apart from the rest);
- ``GET /api/v1/images/{id}``, a 307 to the cached signed URL, against ``GET /json``;
- ``GET /d/{token}``, a delivery link to the uploaded photograph (its bytes, no token), against
  the bare app's ``GET /file`` of the same file.

Both servers are uvicorn with the same settings (one process, access log on).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import inputs
from bench.inputs import ROOT
from bench.machine import Unavailable, debian_package
from bench.processes import child_environment
from bench.results import Row, Run
from bench.scenarios import Budget
from bench.stats import Summary, ratios

WORKDIR = ROOT / "var" / "bench" / "api"
LUA = ROOT / "bench" / "wrk" / "request.lua"
CONNECTIONS = 16
START_TIMEOUT = 60.0


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    ready_path: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up; see {self.log}")
            try:
                with urllib.request.urlopen(self.base + self.ready_path, timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {START_TIMEOUT:.0f} s")

    def __exit__(self, *_: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _imgproc_command() -> list[str]:
    script = shutil.which("imgproc")
    if script is not None:
        return [script, "serve"]
    return [sys.executable, "-c", "from imgproc_cli.app import main; main()", "serve"]


def imgproc_server(port: int, workdir: Path = WORKDIR) -> Server:
    """``imgproc serve`` on the embedded profile, its database and blobs in ``workdir``."""
    env = child_environment(
        {
            "IMGPROC_ENVIRONMENT": "development",
            "IMGPROC_HOST": "127.0.0.1",
            "IMGPROC_PORT": str(port),
            "IMGPROC_JWT_SECRET": secrets.token_urlsafe(48),
            "IMGPROC_URL_SIGNING_SECRET": secrets.token_urlsafe(48),
            "IMGPROC_DATABASE_URL": f"sqlite:///{workdir / 'imgproc.db'}",
            "IMGPROC_STORAGE": "local",
            "IMGPROC_STORAGE_DIR": str(workdir / "blobs"),
            "IMGPROC_BCRYPT_ROUNDS": "4",
            "IMGPROC_ACCESS_TOKEN_TTL_SECONDS": "3600",
            "IMGPROC_RATE_LIMIT_UPLOAD": "1000000/second",
            "IMGPROC_RATE_LIMIT_TRANSFORM": "1000000/second",
            "IMGPROC_RATE_LIMIT_AUTH": "1000000/second",
        }
    )
    return Server(
        "imgproc serve", _imgproc_command(), port, "/healthz", env, workdir / "imgproc.log"
    )


def bare_server(port: int, file: Path) -> Server:
    stored = WORKDIR / "bare-stored"
    stored.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "bench.servers.bare_app", str(port), str(stored), str(file)]
    return Server(
        "bare Litestar", command, port, "/json", child_environment(), WORKDIR / "bare.log"
    )


def _request(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def multipart(content: bytes, filename: str) -> tuple[bytes, str]:
    boundary = "imgproc-bench-" + secrets.token_hex(8)
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def prepare(server: Server, upload: Path) -> tuple[str, str]:
    """A user, its token, and one uploaded image whose download URL is cached: (token, id)."""
    credentials = json.dumps(
        {"username": f"bench-{secrets.token_hex(4)}", "password": secrets.token_urlsafe(16)}
    ).encode()
    status, _, body = _request(
        "POST",
        server.base + "/api/v1/register",
        credentials,
        {"Content-Type": "application/json"},
    )
    if status != 201:
        raise RuntimeError(f"register answered {status}: {body[:200]!r}")
    token = json.loads(body)["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    form, content_type = multipart(upload.read_bytes(), upload.name)
    status, _, body = _request(
        "POST", server.base + "/api/v1/images/", form, {**auth, "Content-Type": content_type}
    )
    if status != 201:
        raise RuntimeError(f"upload answered {status}: {body[:200]!r}")
    image_id = json.loads(body)["id"]
    for _ in range(2):
        status, _, body = _request("GET", f"{server.base}/api/v1/images/{image_id}", None, auth)
        if status != 307:
            raise RuntimeError(f"download answered {status}: {body[:200]!r}")
    return token, image_id


def delivery_link(server: Server, token: str, image_id: str) -> str:
    """A delivery link to the image, already answered once: its URL."""
    status, _, body = _request(
        "POST",
        f"{server.base}/api/v1/images/{image_id}/links",
        b"{}",
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    if status != 201:
        raise RuntimeError(f"making a link answered {status}: {body[:200]!r}")
    url: str = json.loads(body)["url"]
    status, _, body = _request("GET", url)
    if status != 200:
        raise RuntimeError(f"the link answered {status}: {body[:200]!r}")
    return url


@dataclass(frozen=True)
class Load:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(url: str, seconds: float, *, upload: Path | None = None, token: str = "") -> Load:
    env = {**os.environ, "BENCH_UPLOAD": str(upload or ""), "BENCH_TOKEN": token}
    command = [
        shutil.which("wrk") or "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=seconds + 60, check=True
    )
    line = next(
        (text for text in reversed(result.stdout.splitlines()) if text.startswith("{")), None
    )
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{result.stdout}\n{result.stderr}")
    summary = json.loads(line)
    errors = sum(summary["errors"].values())
    return Load(
        requests_per_second=summary["requests"] / (summary["duration_us"] / 1e6),
        p50_ms=summary["latency_us"]["p50"] / 1000,
        p99_ms=summary["latency_us"]["p99"] / 1000,
        errors=errors,
    )


def _clear_uploads(blobs: Path, keep: set[Path]) -> None:
    """Each upload run stores hundreds of megabytes; only the set-up's image is needed."""
    for path in blobs.rglob("*"):
        if path.is_file() and path not in keep:
            path.unlink()


def api(run: Run, budget: Budget) -> None:
    try:
        version = debian_package("wrk")
    except Unavailable as exc:
        for missing, goal in (("Upload 1 MB", 0.6), ("GET redirect", 0.5), ("GET link", 0.5)):
            run.rows.append(Row("api", missing, "", target=goal, unavailable=str(exc)))
        return
    run.machine["wrk"] = version
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    upload = inputs.photo_upload()
    loads: dict[str, list[Load]] = {
        "imgproc upload": [],
        "bare upload": [],
        "bare stored upload": [],
        "imgproc redirect": [],
        "bare json": [],
        "imgproc link": [],
        "bare file": [],
    }
    with ExitStack() as stack:
        imgproc = stack.enter_context(imgproc_server(free_port()))
        bare = stack.enter_context(bare_server(free_port(), upload.path))
        token, image_id = prepare(imgproc, upload.path)
        link = delivery_link(imgproc, token, image_id)
        blobs = WORKDIR / "blobs"
        keep = {path for path in blobs.rglob("*") if path.is_file()}
        seconds = budget.http_seconds
        for _ in range(budget.http_rounds):
            loads["imgproc upload"].append(
                wrk(imgproc.base + "/api/v1/images/", seconds, upload=upload.path, token=token)
            )
            loads["bare upload"].append(wrk(bare.base + "/upload", seconds, upload=upload.path))
            loads["bare stored upload"].append(
                wrk(bare.base + "/upload-stored", seconds, upload=upload.path)
            )
            _clear_uploads(blobs, keep)
            _clear_uploads(WORKDIR / "bare-stored", set())
            loads["imgproc redirect"].append(
                wrk(f"{imgproc.base}/api/v1/images/{image_id}", seconds, token=token)
            )
            loads["bare json"].append(wrk(bare.base + "/json", seconds))
            loads["imgproc link"].append(wrk(link, seconds))
            loads["bare file"].append(wrk(bare.base + "/file", seconds))
    run.details["api"] = {
        "connections": CONNECTIONS,
        "seconds_per_run": seconds,
        "upload_bytes": upload.path.stat().st_size,
        "runs": {name: [load.__dict__ for load in series] for name, series in loads.items()},
    }
    size_kb = upload.path.stat().st_size // 1000
    rows: tuple[tuple[str, str, str, float | None, str], ...] = (
        (
            "Upload 1 MB (multipart)",
            "imgproc upload",
            "bare upload",
            0.6,
            f"imgproc req/s / bare Litestar req/s, POST of a {size_kb} kB JPEG",
        ),
        (
            "Upload 1 MB, against a bare upload that stores the file",
            "imgproc upload",
            "bare stored upload",
            None,
            "imgproc req/s / req/s of a bare Litestar upload that writes the file to disk and "
            "flushes it",
        ),
        (
            "GET redirect (cached signed URL)",
            "imgproc redirect",
            "bare json",
            0.5,
            "imgproc req/s (307 with auth) / bare Litestar JSON endpoint req/s",
        ),
        (
            "GET link (the bytes, no token)",
            "imgproc link",
            "bare file",
            0.5,
            f"imgproc req/s of a delivery link / bare Litestar req/s of the same {size_kb} kB file",
        ),
    )
    for name, ours, theirs, target, meaning in rows:
        errors = sum(load.errors for load in loads[ours] + loads[theirs])
        run.rows.append(
            Row(
                scenario="api",
                name=name,
                meaning=meaning,
                ratio=Summary.of(
                    ratios(
                        [load.requests_per_second for load in loads[ours]],
                        [load.requests_per_second for load in loads[theirs]],
                    )
                ),
                target=target,
                sides={
                    ours: Summary.of([load.requests_per_second for load in loads[ours]]),
                    theirs: Summary.of([load.requests_per_second for load in loads[theirs]]),
                    f"{ours} p50 ms": Summary.of([load.p50_ms for load in loads[ours]]),
                    f"{ours} p99 ms": Summary.of([load.p99_ms for load in loads[ours]]),
                    f"{theirs} p50 ms": Summary.of([load.p50_ms for load in loads[theirs]]),
                    f"{theirs} p99 ms": Summary.of([load.p99_ms for load in loads[theirs]]),
                },
                unit="req/s",
                note=f"{errors} failed requests" if errors else "",
            )
        )
