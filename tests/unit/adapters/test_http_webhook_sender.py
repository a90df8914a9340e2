"""The HTTP sender's guard: the addresses a host name resolves to are judged where httpcore
connects, each name resolved once, and nothing is connected to that the rules refuse.

Names resolve through an injected resolver and connections go through a recording connector,
so the tests choose what ``hooks.example`` resolves to and see every address a connection was
opened to. The connector opens real connections only to 127.0.0.1 (the local receiver) and
fails the test for anything else: no test sends traffic to a forbidden address, and an
"allowed" public address is pointed at the local receiver by the connector, not reached.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
import typing
from collections.abc import Iterator, Sequence

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook

from imgproc_core.adapters.webhooks import (
    DestinationRefused,
    GuardedNetworkBackend,
    HttpWebhookSender,
    ResolutionFailed,
)
from imgproc_core.domain.webhooks import IPAddress, new_webhook_secret
from imgproc_core.ports.webhooks import WebhookMessage
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

SECRET = new_webhook_secret()
PUBLIC = ipaddress.ip_address("93.184.215.14")
PUBLIC_V6 = ipaddress.ip_address("2606:4700::1111")


class RecordingConnector(httpcore.NetworkBackend):
    """Records the host of every connection asked for; connects the ones in ``routes`` to
    127.0.0.1 at the port given, and fails the test for any other."""

    def __init__(self, routes: dict[str, int] | None = None) -> None:
        self.routes = routes or {}
        self.hosts: list[str] = []
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.hosts.append(host)
        assert host in self.routes, f"a test connected to {host}"
        return self._sockets.connect_tcp("127.0.0.1", self.routes[host], timeout)


class CountingResolver:
    def __init__(self, *addresses: str) -> None:
        self.addresses: list[IPAddress] = [ipaddress.ip_address(a) for a in addresses]
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.calls.append((host, port))
        return self.addresses


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as receiver:
        yield receiver


def _message(url: str) -> WebhookMessage:
    return WebhookMessage(url, "msg_1", dt.datetime.now(dt.UTC), b'{"type":"webhook.test"}', SECRET)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("192.168.1.20", "private"),
        ("100.64.3.4", "private"),
        ("fd00::5", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
    ],
)
def test_a_name_resolving_to_a_forbidden_address_is_refused_before_connecting(
    address: str, reason: str
) -> None:
    resolver = CountingResolver(address)
    connector = RecordingConnector()
    sender = HttpWebhookSender(resolve=resolver, connector=connector)

    outcome = sender.send(_message("https://hooks.example/imgproc"))

    expected = f"refused address {ipaddress.ip_address(address)} ({reason})"
    assert (outcome.status, outcome.error) == (None, expected)
    assert resolver.calls == [("hooks.example", 443)]
    assert connector.hosts == []


def test_every_refused_address_is_named() -> None:
    connector = RecordingConnector()
    sender = HttpWebhookSender(
        resolve=CountingResolver("10.0.0.5", "127.0.0.1"), connector=connector
    )

    outcome = sender.send(_message("http://hooks.example/imgproc"))

    assert outcome.error == (
        "refused address 10.0.0.5 (private); refused address 127.0.0.1 (loopback)"
    )
    assert connector.hosts == []


def test_only_the_allowed_address_is_connected_to(receiver: WebhookReceiver) -> None:
    resolver = CountingResolver("10.0.0.5", str(PUBLIC), "::1")
    connector = RecordingConnector({str(PUBLIC): receiver.port})
    sender = HttpWebhookSender(resolve=resolver, connector=connector)
    url = receiver.url(host="hooks.example")

    outcome = sender.send(_message(url))

    assert outcome.delivered, outcome
    assert connector.hosts == [str(PUBLIC)]  # by IP, never the name, never the private one
    assert resolver.calls == [("hooks.example", receiver.port)]
    [request] = receiver.received
    assert request.headers["host"] == f"hooks.example:{receiver.port}"
    assert Webhook(SECRET).verify(request.body, dict(request.headers))


def test_a_name_is_resolved_once_per_connection(receiver: WebhookReceiver) -> None:
    resolver = CountingResolver(str(PUBLIC))
    connector = RecordingConnector({str(PUBLIC): receiver.port})
    sender = HttpWebhookSender(resolve=resolver, connector=connector)

    outcomes = [sender.send(_message(receiver.url(host="hooks.example"))) for _ in range(3)]

    assert [o.status for o in outcomes] == [204, 204, 204]
    # The connection is kept alive between the three: one resolution, one connection.
    assert len(resolver.calls) == len(connector.hosts) == 1


def test_allow_private_connects_to_a_private_address() -> None:
    connector = RecordingConnector({"10.0.0.5": 1})
    backend = GuardedNetworkBackend(
        allow_private=True, resolve=CountingResolver("10.0.0.5"), inner=connector
    )
    with pytest.raises(httpcore.ConnectError):  # routed to 127.0.0.1:1, where nothing listens
        backend.connect_tcp("hooks.example", 443, timeout=1.0)
    assert connector.hosts == ["10.0.0.5"]


class _FailingThenRecording(httpcore.NetworkBackend):
    """Refuses the first ``failures`` connections, answers the next with a mock stream."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.hosts: list[str] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        self.hosts.append(host)
        if len(self.hosts) <= self.failures:
            raise httpcore.ConnectError("[Errno 111] Connection refused")
        return httpcore.MockStream([])


def test_the_backend_connects_to_the_first_allowed_address_by_ip() -> None:
    inner = _FailingThenRecording(failures=0)
    backend = GuardedNetworkBackend(
        resolve=CountingResolver("127.0.0.1", "10.0.0.5", str(PUBLIC_V6), str(PUBLIC)),
        inner=inner,
    )
    backend.connect_tcp("hooks.example", 443)
    assert inner.hosts == [str(PUBLIC_V6)]


def test_the_backend_tries_the_next_allowed_address_when_one_does_not_answer() -> None:
    inner = _FailingThenRecording(failures=1)
    backend = GuardedNetworkBackend(
        resolve=CountingResolver(str(PUBLIC_V6), "10.0.0.5", str(PUBLIC)), inner=inner
    )
    backend.connect_tcp("hooks.example", 443)
    assert inner.hosts == [str(PUBLIC_V6), str(PUBLIC)]

    every_one_fails = _FailingThenRecording(failures=2)
    backend = GuardedNetworkBackend(
        resolve=CountingResolver(str(PUBLIC_V6), str(PUBLIC)), inner=every_one_fails
    )
    with pytest.raises(httpcore.ConnectError, match="refused"):
        backend.connect_tcp("hooks.example", 443)


def test_the_backend_refuses_a_literal_address_itself() -> None:
    inner = _FailingThenRecording(failures=0)
    resolver = CountingResolver()
    backend = GuardedNetworkBackend(resolve=resolver, inner=inner)
    with pytest.raises(DestinationRefused, match=r"refused address 169\.254\.169\.254"):
        backend.connect_tcp("169.254.169.254", 80)
    assert inner.hosts == []
    assert resolver.calls == []  # a literal is its own address


def test_a_name_that_does_not_resolve_is_an_error_without_a_connection() -> None:
    def unknown(host: str, port: int) -> Sequence[IPAddress]:
        raise OSError(-2, "Name or service not known")

    connector = RecordingConnector()
    sender = HttpWebhookSender(resolve=unknown, connector=connector)

    outcome = sender.send(_message("https://hooks.example/imgproc"))

    assert outcome.error == "could not resolve hooks.example: Name or service not known"
    assert connector.hosts == []
    with pytest.raises(ResolutionFailed, match="no address"):
        GuardedNetworkBackend(resolve=CountingResolver()).connect_tcp("hooks.example", 80)


def test_a_resolver_that_does_not_answer_is_a_timeout() -> None:
    released = threading.Event()

    def hanging(host: str, port: int) -> Sequence[IPAddress]:
        released.wait(10)
        return [PUBLIC]

    connector = RecordingConnector()
    sender = HttpWebhookSender(timeout_seconds=0.5, resolve=hanging, connector=connector)
    try:
        outcome = sender.send(_message("https://hooks.example/imgproc"))
    finally:
        released.set()

    assert outcome.error == "timed out after 0.5 s"
    assert outcome.duration_seconds < 2
    assert connector.hosts == []


def test_an_answer_dribbled_out_is_cut_at_the_attempts_timeout(receiver: WebhookReceiver) -> None:
    # A byte every 0.1 s never trips a per-read timeout of 0.5 s; the attempt's deadline does.
    receiver.dribble_interval = 0.1
    connector = RecordingConnector({"127.0.0.1": receiver.port})
    sender = HttpWebhookSender(allow_private=True, timeout_seconds=0.5, connector=connector)

    outcome = sender.send(_message(receiver.url()))

    assert outcome.error == "timed out after 0.5 s"
    assert 0.4 <= outcome.duration_seconds < 2


def test_no_proxy_is_taken_from_the_environment(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://10.0.0.5:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    connector = RecordingConnector({"127.0.0.1": receiver.port})
    sender = HttpWebhookSender(allow_private=True, connector=connector)

    assert sender.send(_message(receiver.url())).delivered
    assert connector.hosts == ["127.0.0.1"]


# -- TLS: verified against the URL's host name, not the address connected to --------------------


def _certificate_for(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``name`` and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.mark.parametrize(
    ("certified_name", "delivered"), [("hooks.example", True), ("other.example", False)]
)
def test_tls_checks_the_certificate_against_the_url_host(
    tmp_path: typing.Any, certified_name: str, delivered: bool
) -> None:
    certificate, key = _certificate_for(certified_name)
    (tmp_path / "cert.pem").write_bytes(certificate)
    (tmp_path / "key.pem").write_bytes(key)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    trusting = ssl.create_default_context(cadata=certificate.decode())

    with webhook_receiver(server_context) as receiver:
        connector = RecordingConnector({str(PUBLIC): receiver.port})
        sender = HttpWebhookSender(
            resolve=CountingResolver(str(PUBLIC)), connector=connector, ssl_context=trusting
        )
        outcome = sender.send(_message(receiver.url(host="hooks.example")))
        sender.close()

    assert connector.hosts == [str(PUBLIC)]
    assert outcome.delivered is delivered, outcome
    if not delivered:
        assert outcome.error is not None
        assert outcome.error.startswith("TLS failed"), outcome.error
        assert "hooks.example" in outcome.error  # checked against the URL host, not the IP
        assert receiver.received == []


def test_a_message_is_checked_when_it_is_made() -> None:
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(ValueError, match="aware"):
        WebhookMessage("https://h.example/", "m", now.replace(tzinfo=None), b"{}", SECRET)
    with pytest.raises(ValueError, match="whitespace"):
        WebhookMessage("https://h.example/", "m\r\nx: y", now, b"{}", SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookMessage("https://h.example/", "m", now, b"{}", "whsec_")
    with pytest.raises(UnicodeDecodeError):
        WebhookMessage("https://h.example/", "m", now, b"\xff", SECRET)
    assert SECRET not in repr(WebhookMessage("https://h.example/", "m", now, b"{}", SECRET))
