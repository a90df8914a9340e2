"""``serve(settings)``: the HTTP app in one uvicorn process, as ``imgproc serve`` runs it."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

import msgspec
import uvicorn

from imgproc_core.container import build_container
from imgproc_core.settings import Settings
from imgproc_http.app import WORKER_SHUTDOWN_GRACE_SECONDS, create_app

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Where to reach a server listening on every interface: its loopback address.
_WILDCARD_HOSTS: Final = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}  # noqa: S104

logger = logging.getLogger(__name__)


def with_public_base_url(settings: Settings) -> Settings:
    """Signed URLs point at ``public_base_url``. Left at its default, it follows the address
    actually served (``--port 9000`` gives ``http://127.0.0.1:9000``); set explicitly (behind a
    proxy, say), it is kept."""
    if settings.public_base_url != Settings().public_base_url:
        return settings
    host = _WILDCARD_HOSTS.get(settings.host, settings.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return msgspec.structs.replace(settings, public_base_url=f"http://{host}:{settings.port}")


def serve(settings: Settings, *, log_level: str = "info") -> None:
    """Serve until SIGINT or SIGTERM; then stop taking requests, let the worker threads
    finish their jobs in hand, and close the container's resources."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    settings.check_secrets()
    settings = with_public_base_url(settings)
    container = build_container(settings)
    # Worker threads and upload probes decode images in this process.
    container.tune_allocator()
    app = create_app(container)
    container.freeze_start_up_objects()
    with _termination_is_a_clean_exit():
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level=log_level,
            # Client addresses behind proxies are resolved by the app, from
            # IMGPROC_TRUSTED_PROXIES.
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=int(
                settings.job_time_limit_seconds + WORKER_SHUTDOWN_GRACE_SECONDS
            ),
        )


@contextmanager
def _termination_is_a_clean_exit() -> Iterator[None]:
    """SIGTERM is how orchestrators ask a service to stop: once uvicorn has shut down
    gracefully, the process exits with 0.

    uvicorn catches SIGTERM, shuts down, puts back the handler it found and raises the signal
    again, so that the process dies of it (exit status -15) as if it had never been caught. The
    handler it finds and puts back is this one, which exits with 0 instead. A SIGTERM that
    comes before uvicorn has taken over stops the process at once, just as cleanly.
    """

    def stop_requested(signum: int, frame: FrameType | None) -> None:
        logger.info("stopped on %s", signal.Signals(signum).name)
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop_requested)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
