"""Webhooks over HTTP: :class:`~imgproc_core.ports.WebhookSender` on httpx, signed by the
Standard Webhooks library.

An attempt is one POST: no redirect followed (a 3xx is a failed attempt with its status), no
proxy taken from the environment, at most ``timeout_seconds`` from the first DNS query to the
last byte kept, and no more than 1 KiB of the answer read. Every connection goes through
:class:`~imgproc_core.adapters.webhooks.network.GuardedNetworkBackend`, which connects only to
addresses :func:`~imgproc_core.domain.webhooks.forbidden_address` allows (all of them with
``allow_private``, for a receiver on the same network, as in tests).

httpx 0.28's ``HTTPTransport`` takes no network backend, so :class:`_GuardedTransport` is the
few lines of it that matter here, on httpcore's public ``ConnectionPool``.
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Iterator
from datetime import UTC

import httpcore
import httpx
from standardwebhooks import Webhook

from imgproc_core.adapters.webhooks.network import (
    DestinationRefused,
    GuardedNetworkBackend,
    ResolutionFailed,
    Resolver,
    attempt_deadline,
    system_resolver,
)
from imgproc_core.ports.webhooks import (
    MAX_RESPONSE_EXCERPT_BYTES,
    WEBHOOK_CONTENT_TYPE,
    AttemptOutcome,
    WebhookMessage,
    refused_destination,
    webhook_user_agent,
)

__all__ = ["HttpWebhookSender"]

#: Idle connections to a receiver are kept this long, for the next event to the same endpoint.
_KEEPALIVE_SECONDS = 30.0


class HttpWebhookSender:
    """Sends each webhook as one signed POST (thread-safe; one connection pool for all).

    ``resolve`` (``getaddrinfo`` by default) and ``connector`` (httpcore's socket backend by
    default, handed IP literals only) are there for tests, which give a name the addresses
    they need and see where a connection would go; ``ssl_context`` defaults to certifi's
    roots with host names verified. :meth:`close` closes the pooled connections.
    """

    def __init__(
        self,
        allow_private: bool = False,
        timeout_seconds: float = 5.0,
        *,
        resolve: Resolver = system_resolver,
        connector: httpcore.NetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("a webhook's timeout is positive")
        self._allow_private = allow_private
        self._timeout_seconds = timeout_seconds
        backend = GuardedNetworkBackend(
            allow_private=allow_private, resolve=resolve, inner=connector
        )
        context = ssl_context or httpx.create_ssl_context(trust_env=False)
        self._client = httpx.Client(
            transport=_GuardedTransport(backend, context),
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            trust_env=False,
        )

    def send(self, message: WebhookMessage) -> AttemptOutcome:
        started = time.perf_counter()
        refusal = refused_destination(message.url, allow_private=self._allow_private)
        if refusal is not None:
            return AttemptOutcome(status=None, duration_seconds=0.0, error=refusal)
        status: int | None = None
        excerpt = b""
        error: str | None = None
        try:
            with (
                attempt_deadline(self._timeout_seconds),
                self._client.stream(
                    "POST", message.url, content=message.body, headers=_headers(message)
                ) as response,
            ):
                status = response.status_code
                excerpt = _read_excerpt(response)
        except (DestinationRefused, ResolutionFailed) as exc:
            error = str(exc)
        except (httpcore.TimeoutException, httpx.TimeoutException):
            error = f"timed out after {self._timeout_seconds:g} s"
        except (httpcore.ConnectError, httpx.ConnectError) as exc:
            error = _connect_error(exc)
        except httpx.InvalidURL as exc:
            error = f"refused URL: {exc}"
        except (
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpcore.UnsupportedProtocol,
            httpx.HTTPError,
            OSError,
        ) as exc:
            error = f"connection broken: {_text(exc)}"
        duration = time.perf_counter() - started
        return AttemptOutcome(status, duration, error, excerpt)

    def close(self) -> None:
        self._client.close()


def _headers(message: WebhookMessage) -> dict[str, str]:
    # The library stamps the timestamp as UTC without converting it: hand it UTC.
    timestamp = message.timestamp.astimezone(UTC)
    signature = Webhook(message.secret).sign(
        message.message_id, timestamp, message.body.decode("utf-8")
    )
    return {
        "content-type": WEBHOOK_CONTENT_TYPE,
        "user-agent": webhook_user_agent(),
        # The excerpt is kept as sent: ask for it readable, and never inflate a bomb.
        "accept-encoding": "identity",
        "webhook-id": message.message_id,
        "webhook-timestamp": str(math.floor(timestamp.timestamp())),
        "webhook-signature": signature,
    }


def _read_excerpt(response: httpx.Response) -> bytes:
    """The first bytes of the answer, up to the limit; the rest is never read (leaving the
    block closes the connection instead of draining it)."""
    excerpt = bytearray()
    for chunk in response.iter_raw():
        excerpt += chunk
        if len(excerpt) >= MAX_RESPONSE_EXCERPT_BYTES:
            break
    return bytes(excerpt[:MAX_RESPONSE_EXCERPT_BYTES])


def _connect_error(exc: Exception) -> str:
    """A failed connection, or a failed TLS handshake: httpcore reports that as a failed
    connection made from the ``ssl`` error, which its pool re-raises ``from None``, so the
    ``ssl`` error is the exception's argument and context rather than its cause."""
    seen: BaseException | None = exc
    while seen is not None:
        for candidate in (seen, *seen.args):
            if isinstance(candidate, ssl.SSLError):
                return f"TLS failed: {_text(candidate)}"
        seen = seen.__cause__ or seen.__context__
    return f"could not connect: {_text(exc)}"


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _GuardedTransport(httpx.BaseTransport):
    """httpx's requests over an httpcore connection pool that connects through ``backend``.

    Exceptions are httpcore's, unmapped: the sender turns both libraries' into outcomes.
    """

    def __init__(self, backend: httpcore.NetworkBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            keepalive_expiry=_KEEPALIVE_SECONDS,
            http1=True,
            http2=False,
            retries=0,
            network_backend=backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError("a synchronous client's request has a synchronous body")
        answer = self._pool.handle_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_AnswerBody(answer),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class _AnswerBody(httpx.SyncByteStream):
    def __init__(self, answer: httpcore.Response) -> None:
        self._answer = answer

    def __iter__(self) -> Iterator[bytes]:
        yield from self._answer.iter_stream()

    def close(self) -> None:
        self._answer.close()
