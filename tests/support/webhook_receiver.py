"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that records each request and
answers what the test set, and a port where nothing listens.

The receiver answers with the in-memory sender's :class:`WebhookAnswer`, so that a contract
test states a receiver's behaviour once and both senders meet it. An answer's delay is waited
on an event that :meth:`WebhookReceiver.close` sets, so no handler outlives its test.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

from imgproc_core.adapters.memory import ReceivedWebhook, WebhookAnswer


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (a timeout, an excerpt read): expected here."""


class WebhookReceiver:
    """Answers every POST with :attr:`answer` (204 by default) and keeps what it received in
    :attr:`received`. With :attr:`dribble_interval` set it instead starts an answer and sends
    one byte of its headers per interval, never finishing. HTTPS with ``ssl_context``."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.answer = WebhookAnswer()
        self.dribble_interval: float | None = None
        self._received: list[ReceivedWebhook] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = _QuietServer(("127.0.0.1", port), self._handler())
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if ssl_context is not None else "http"
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def received(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self._received)

    def url(self, path: str = "/hooks/imgproc", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _record(self, request: ReceivedWebhook) -> None:
        with self._lock:
            self._received.append(request)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                url = f"{receiver.scheme}://{headers.get('host', '')}{self.path}"
                receiver._record(ReceivedWebhook(url, headers, body))
                if receiver.dribble_interval is not None:
                    self._dribble(receiver.dribble_interval)
                    return
                answer = receiver.answer
                if answer.delay_seconds and receiver._released.wait(answer.delay_seconds):
                    return
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def _dribble(self, interval: float) -> None:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self.wfile.flush()
                while not receiver._released.wait(interval):
                    self.wfile.write(b"x")
                    self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads :attr:`WebhookReceiver.received` instead."""

        return Handler


@contextlib.contextmanager
def webhook_receiver(
    ssl_context: ssl.SSLContext | None = None, port: int = 0
) -> Iterator[WebhookReceiver]:
    """A receiver on ``port`` of 127.0.0.1 (0: any free one)."""
    receiver = WebhookReceiver(ssl_context, port)
    try:
        yield receiver
    finally:
        receiver.close()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections: bound, so no one else takes it, and not
    listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]
