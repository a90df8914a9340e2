"""The installed ``imgproc`` console script, run as an operator runs it: its help, and ``serve``
starting on a free port and stopping cleanly (exit status 0) on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.cli import embedded_settings, environment_for
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

logger = logging.getLogger(__name__)

SCRIPT = Path(sys.executable).parent / "imgproc"
#: Deadlines, not timing assertions: a test fails only when a process never gets there.
START_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 30.0


def script_environment(tmp_path: Path, **overrides: object) -> dict[str, str]:
    environment = environment_for(embedded_settings(tmp_path, **overrides))
    merged = {name: value for name, value in os.environ.items() if name not in environment}
    merged.update({name: value for name, value in environment.items() if value is not None})
    return merged


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_console_script_is_installed() -> None:
    assert SCRIPT.is_file(), f"{SCRIPT} is missing: is imgproc-cli installed in this venv?"


def test_help_lists_every_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SCRIPT), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=script_environment(tmp_path),
    )

    assert done.returncode == 0, done.stderr
    for command in ("serve", "worker", "relay", "db", "users", "images", "jobs", "stats"):
        assert command in done.stdout
    assert "transform" in done.stdout


def test_serve_starts_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    environment = script_environment(tmp_path, port=port, worker_threads=1, worker_processes=1)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.monotonic()

        def healthy() -> bool:
            assert process.poll() is None, f"serve exited early:\n{log_path.read_text()}"
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return health.status_code == 200

        wait_until(
            healthy,
            timeout=START_DEADLINE_SECONDS,
            interval=0.1,
            message=lambda: f"serve never answered:\n{log_path.read_text()}",
            ignoring=httpx.TransportError,
        )
        logger.info("serve answered after %.2f s", time.monotonic() - started)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text

        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=STOP_DEADLINE_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    log = log_path.read_text()
    assert status == 0, log
    assert "database schema at" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("arguments", [["users", "list"], ["stats"]])
def test_an_admin_command_reports_a_missing_schema_with_exit_status_2(
    tmp_path: Path, arguments: list[str]
) -> None:
    done = subprocess.run(
        [str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=script_environment(tmp_path),
    )

    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("imgproc: the database schema is at none")
    assert "Traceback" not in done.stderr
