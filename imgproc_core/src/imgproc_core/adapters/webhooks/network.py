"""The guard between the HTTP client and the network: an httpcore network backend that resolves
a webhook's host once, judges every address, and connects only to an allowed one, by its IP.

Checking the URL's host before sending is not enough: a name can resolve to a public address
when it is checked and to ``127.0.0.1`` when the client resolves it again to connect (DNS
rebinding). :class:`GuardedNetworkBackend` sits where httpcore opens its TCP connections, so
the address judged is the address connected to; the wrapped backend is handed an IP literal,
which it connects to without asking DNS again. TLS is untouched: httpcore starts it on the
stream returned here with the URL's host as ``server_hostname``, so the certificate is still
verified against the name, not the address.

It also holds an attempt to its deadline (:func:`attempt_deadline`): httpcore's timeouts bound
each step (connecting, each read), so an answer dribbled a byte at a time could otherwise last
for ever; here every step gets what is left of the attempt's time at most, resolving the name
included.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar

import httpcore

from imgproc_core.domain.webhooks import IPAddress, forbidden_address
from imgproc_core.ports.webhooks import refused_address_error

__all__ = [
    "DestinationRefused",
    "GuardedNetworkBackend",
    "ResolutionFailed",
    "Resolver",
    "attempt_deadline",
    "system_resolver",
]

#: A host name and port to the addresses to try, in order.
Resolver = Callable[[str, int], Sequence[IPAddress]]

#: The monotonic time by which the attempt in progress on this thread must be over.
_deadline: ContextVar[float | None] = ContextVar("webhook_attempt_deadline", default=None)


@contextlib.contextmanager
def attempt_deadline(seconds: float) -> Iterator[None]:
    """Every connection step made inside the block ends within ``seconds`` of its start."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _within_deadline(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout``, shortened to the time left of the attempt; ``expired`` when none is left."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt's time is up")
    return left if timeout is None else min(timeout, left)


class DestinationRefused(Exception):
    """Every address of the host is one the sender must not connect to; none was tried."""

    def __init__(self, refusals: Sequence[tuple[IPAddress, str]]) -> None:
        super().__init__("; ".join(refused_address_error(a, reason) for a, reason in refusals))
        self.refusals = tuple(refusals)


class ResolutionFailed(Exception):
    """The host name did not resolve (or resolved to nothing)."""

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(f"could not resolve {host}: {detail}")
        self.host = host


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The addresses ``getaddrinfo`` gives for a TCP connection to ``host``, in its order,
    each once."""
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


class GuardedNetworkBackend(httpcore.NetworkBackend):
    """Opens TCP connections through ``inner`` (by default httpcore's own socket backend), to
    allowed addresses only.

    ``connect_tcp(host, port)`` resolves ``host`` once with ``resolve`` (an IP literal resolves
    to itself), drops each address :func:`forbidden_address` refuses (unless
    ``allow_private``), and connects to the allowed ones in the resolver's order until one
    answers. When none is allowed it raises :class:`DestinationRefused` without connecting.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolve: Resolver = system_resolver,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._resolve = resolve
        self._inner = inner if inner is not None else httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._addresses(host, port, _within_deadline(timeout, httpcore.ConnectTimeout))
        allowed, refusals = self._judge(addresses)
        if not allowed:
            raise DestinationRefused(refusals)
        options = list(socket_options or ())
        failure: Exception | None = None
        for address in allowed:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=_within_deadline(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream)
        assert failure is not None  # allowed was not empty
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

    def _judge(
        self, addresses: Sequence[IPAddress]
    ) -> tuple[list[IPAddress], list[tuple[IPAddress, str]]]:
        allowed: list[IPAddress] = []
        refusals: list[tuple[IPAddress, str]] = []
        for address in addresses:
            reason = None if self._allow_private else forbidden_address(address)
            if reason is None:
                allowed.append(address)
            else:
                refusals.append((address, reason))
        return allowed, refusals

    def _addresses(self, host: str, port: int, timeout: float | None) -> Sequence[IPAddress]:
        """``host``'s addresses, within ``timeout``: ``getaddrinfo`` takes no timeout, so a
        resolver that does not answer is left to finish alone in a daemon thread."""
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        result: list[Sequence[IPAddress]] = []
        errors: list[Exception] = []

        def resolve() -> None:
            try:
                result.append(self._resolve(host, port))
            except Exception as exc:  # handed to the caller's thread below
                errors.append(exc)

        resolver = threading.Thread(target=resolve, name="webhook-resolver", daemon=True)
        resolver.start()
        resolver.join(timeout)
        if resolver.is_alive():
            raise httpcore.ConnectTimeout(f"resolving {host} took too long")
        if errors:
            error = errors[0]
            detail = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise ResolutionFailed(host, str(detail)) from error
        if not result[0]:
            raise ResolutionFailed(host, "no address")
        return result[0]


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every read, write and TLS handshake ends by the attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _within_deadline(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _within_deadline(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        upgraded = self._stream.start_tls(
            ssl_context,
            server_hostname=server_hostname,
            timeout=_within_deadline(timeout, httpcore.ConnectTimeout),
        )
        return _DeadlineStream(upgraded)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)
