"""Contract of WebhookSender, run against every implementation in IMPLEMENTATIONS.

A test sets how the receiver answers (a :class:`WebhookAnswer`) and reads what it received;
the in-memory sender hands the request to a function that does just that, the HTTP sender
POSTs it to a real server on 127.0.0.1 (hence ``allow_private=True`` unless a test is about
refusals). The HTTP sender's connections all go through a connector that fails the test for
any address but 127.0.0.1, so no test here can reach another host even if the guard broke.
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import ip_address

import httpcore
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from imgproc_core.adapters.memory import InMemoryWebhookSender, ReceivedWebhook, WebhookAnswer
from imgproc_core.adapters.webhooks import HttpWebhookSender
from imgproc_core.domain.webhooks import new_webhook_secret
from imgproc_core.ports.webhooks import (
    MAX_RESPONSE_EXCERPT_BYTES,
    WebhookMessage,
    WebhookSender,
)
from tests.support.webhook_receiver import closed_port, webhook_receiver

SECRET = new_webhook_secret()
BODY = b'{"type":"image.ready","timestamp":"2026-12-01T09:30:00Z","data":{"id":"abc","size":1}}'


class LoopbackOnly(httpcore.NetworkBackend):
    """httpcore's socket backend, for 127.0.0.1 alone: anything else fails the test."""

    def __init__(self) -> None:
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        assert host == "127.0.0.1", f"a test connected to {host}"
        return self._sockets.connect_tcp(host, port, timeout, local_address, socket_options)


@dataclass
class Harness:
    """One implementation with its receiver: :attr:`url` answers :attr:`answer` (settable),
    nothing listens at :attr:`closed_url`."""

    url: str
    closed_url: str
    make_sender: Callable[[bool, float], WebhookSender]
    set_answer: Callable[[WebhookAnswer], None]
    read_received: Callable[[], list[ReceivedWebhook]]
    senders: list[WebhookSender] = field(default_factory=list)

    def sender(self, *, allow_private: bool = True, timeout_seconds: float = 2.0) -> WebhookSender:
        sender = self.make_sender(allow_private, timeout_seconds)
        self.senders.append(sender)
        return sender

    @property
    def received(self) -> list[ReceivedWebhook]:
        return self.read_received()

    def answer(self, answer: WebhookAnswer) -> None:
        self.set_answer(answer)


@contextlib.contextmanager
def _memory() -> Iterator[Harness]:
    url = "http://127.0.0.1:8080/hooks/imgproc"
    received: list[ReceivedWebhook] = []
    answers = [WebhookAnswer()]

    def receive(request: ReceivedWebhook) -> WebhookAnswer | None:
        if not request.url.startswith("http://127.0.0.1:8080/"):
            return None
        received.append(request)
        return answers[-1]

    yield Harness(
        url=url,
        closed_url="http://127.0.0.1:9/hooks/imgproc",
        make_sender=lambda allow_private, timeout: InMemoryWebhookSender(
            receive, allow_private=allow_private, timeout_seconds=timeout
        ),
        set_answer=answers.append,
        read_received=lambda: list(received),
    )


@contextlib.contextmanager
def _http() -> Iterator[Harness]:
    with webhook_receiver() as receiver, closed_port() as closed:
        harness = Harness(
            url=receiver.url(),
            closed_url=f"http://127.0.0.1:{closed}/hooks/imgproc",
            make_sender=lambda allow_private, timeout: HttpWebhookSender(
                allow_private, timeout, connector=LoopbackOnly()
            ),
            set_answer=lambda answer: setattr(receiver, "answer", answer),
            read_received=lambda: receiver.received,
        )
        try:
            yield harness
        finally:
            for sender in harness.senders:
                assert isinstance(sender, HttpWebhookSender)
                sender.close()


IMPLEMENTATIONS = [pytest.param(_memory, id="memory"), pytest.param(_http, id="http")]


@pytest.fixture(params=IMPLEMENTATIONS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with request.param() as harness:
        yield harness


def _message(url: str, *, timestamp: datetime | None = None) -> WebhookMessage:
    return WebhookMessage(
        url=url,
        message_id="msg_2Kz7c1yQhZ0aB9",
        timestamp=timestamp or datetime.now(UTC),
        body=BODY,
        secret=SECRET,
    )


@pytest.mark.parametrize("zone", [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))])
def test_a_2xx_is_delivered_signed_as_standard_webhooks_says(
    harness: Harness, zone: timezone
) -> None:
    harness.answer(WebhookAnswer(200, b'{"ok":true}'))
    message = _message(harness.url, timestamp=datetime.now(zone))

    outcome = harness.sender().send(message)

    assert outcome.delivered
    assert (outcome.status, outcome.error, outcome.response_excerpt) == (200, None, b'{"ok":true}')
    assert 0 <= outcome.duration_seconds < 2
    [request] = harness.received
    assert request.body == BODY
    assert request.url == harness.url
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("imgproc-webhooks/")
    assert request.headers["webhook-id"] == message.message_id
    assert request.headers["webhook-timestamp"] == str(int(message.timestamp.timestamp()))
    assert Webhook(SECRET).verify(request.body, dict(request.headers)) == {
        "type": "image.ready",
        "timestamp": "2026-12-01T09:30:00Z",
        "data": {"id": "abc", "size": 1},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(request.body, dict(request.headers))


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_every_2xx_is_delivered(harness: Harness, status: int) -> None:
    harness.answer(WebhookAnswer(status))
    assert harness.sender().send(_message(harness.url)).delivered


def test_a_500_is_not_delivered_and_its_answer_is_kept(harness: Harness) -> None:
    harness.answer(WebhookAnswer(500, b'{"error":"database is down"}'))

    outcome = harness.sender().send(_message(harness.url))

    assert not outcome.delivered
    assert outcome.status == 500
    assert outcome.error is None
    assert outcome.response_excerpt == b'{"error":"database is down"}'


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed(harness: Harness, status: int) -> None:
    harness.answer(WebhookAnswer(status, headers={"location": harness.url + "/moved"}))

    outcome = harness.sender().send(_message(harness.url))

    assert not outcome.delivered
    assert outcome.status == status
    assert [r.url for r in harness.received] == [harness.url]


def test_only_the_first_kib_of_an_answer_is_kept(harness: Harness) -> None:
    answer = bytes(range(256)) * 64  # 16 KiB
    harness.answer(WebhookAnswer(400, answer))

    outcome = harness.sender().send(_message(harness.url))

    assert outcome.status == 400
    assert MAX_RESPONSE_EXCERPT_BYTES == 1024
    assert outcome.response_excerpt == answer[:1024]


def test_a_receiver_too_slow_is_a_timeout(harness: Harness) -> None:
    harness.answer(WebhookAnswer(200, delay_seconds=5.0))

    outcome = harness.sender(timeout_seconds=0.5).send(_message(harness.url))

    assert not outcome.delivered
    assert outcome.status is None
    assert outcome.error is not None
    assert outcome.error.startswith("timed out"), outcome.error
    assert 0.4 <= outcome.duration_seconds < 2


def test_a_closed_port_is_a_connection_error(harness: Harness) -> None:
    outcome = harness.sender().send(_message(harness.closed_url))

    assert not outcome.delivered
    assert outcome.status is None
    assert outcome.error is not None
    assert outcome.error.startswith("could not connect"), outcome.error
    assert harness.received == []


@pytest.mark.parametrize(
    ("host", "error"),
    [
        ("127.0.0.1", "refused address 127.0.0.1 (loopback)"),
        ("10.0.0.5", "refused address 10.0.0.5 (private)"),
        ("169.254.169.254", "refused address 169.254.169.254 (link-local)"),
        ("[::1]", "refused address ::1 (loopback)"),
        # Python versions spell a mapped address differently: the error is the address's str.
        ("[::ffff:127.0.0.1]", f"refused address {ip_address('::ffff:127.0.0.1')} (loopback)"),
        ("[fd00::1]", "refused address fd00::1 (private)"),
    ],
)
def test_a_forbidden_literal_address_is_refused(harness: Harness, host: str, error: str) -> None:
    url = harness.url.replace("127.0.0.1", host)

    outcome = harness.sender(allow_private=False).send(_message(url))

    assert (outcome.status, outcome.error, outcome.delivered) == (None, error, False)
    assert harness.received == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://127.0.0.1/hook", "refused URL: a webhook URL is http or https"),
        ("http://user:pw@127.0.0.1/hook", "refused URL: a webhook URL has no user name"),
        ("http://127.0.0.1/hook#part", "refused URL: a webhook URL has no fragment"),
    ],
)
def test_a_url_out_of_the_rules_is_refused(harness: Harness, url: str, says: str) -> None:
    outcome = harness.sender().send(_message(url))

    assert outcome.status is None
    assert outcome.error is not None
    assert outcome.error.startswith(says), outcome.error
    assert harness.received == []


def test_one_sender_sends_one_after_another(harness: Harness) -> None:
    sender = harness.sender()
    outcomes = [sender.send(_message(harness.url)) for _ in range(3)]

    assert [o.status for o in outcomes] == [204, 204, 204]
    assert len(harness.received) == 3
