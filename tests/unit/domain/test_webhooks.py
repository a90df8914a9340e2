"""Webhook rules: the URLs accepted, the addresses refused (and why), the secret's form, and the
retry schedule's times."""

from __future__ import annotations

import base64
import ipaddress
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from imgproc_core.domain.backoff import Backoff
from imgproc_core.domain.errors import InvalidInput
from imgproc_core.domain.webhooks import (
    MAX_WEBHOOK_URL_CHARS,
    SUBSCRIBABLE_EVENT_TYPES,
    DeliverySchedule,
    WebhookEventType,
    check_webhook_url,
    forbidden_address,
    new_webhook_secret,
    webhook_secret_key,
)


def test_users_subscribe_to_image_events_only() -> None:
    assert [str(t) for t in SUBSCRIBABLE_EVENT_TYPES] == [
        "image.uploaded",
        "image.ready",
        "image.failed",
        "image.deleted",
    ]
    assert WebhookEventType.WEBHOOK_TEST == "webhook.test"
    assert WebhookEventType.WEBHOOK_TEST not in SUBSCRIBABLE_EVENT_TYPES


# -- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/imgproc",
        "http://hooks.example.com:8080/a/b?c=d&e=f",
        "HTTPS://Hooks.Example.com/",
        "https://93.184.215.14/hook",
        "https://[2606:4700::1111]:8443/hook",
        "https://bücher.example/hook",
        "https://under_score.example/",
        "http://127.0.0.1:8000/",  # judged by the sender, not here
        "https://h.example/" + "a" * (MAX_WEBHOOK_URL_CHARS - len("https://h.example/")),
    ],
)
def test_a_webhook_url_is_kept_as_written(url: str) -> None:
    assert check_webhook_url(url) == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://hooks.example.com/", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://hooks.example.com:70/", "http or https"),
        ("hooks.example.com/imgproc", "http or https"),
        ("https:///imgproc", "names a host"),
        ("https://", "names a host"),
        ("https://user:secret@hooks.example.com/", "user name or password"),
        ("https://user@hooks.example.com/", "user name or password"),
        ("https://@hooks.example.com/", "user name or password"),
        ("https://hooks.example.com/#top", "fragment"),
        ("https://hooks.example.com/#", "fragment"),
        ("https://h.example/" + "a" * MAX_WEBHOOK_URL_CHARS, "at most 2048"),
        ("https://hooks.example.com:0/", "port"),
        ("https://hooks.example.com:65536/", "port"),
        ("https://hooks.example.com:99999/", "port"),
        ("https://hooks.example.com:http/", "port"),
        ("https://hooks.example.com/a b", "whitespace or control"),
        (" https://hooks.example.com/", "whitespace or control"),
        ("https://hooks.example.com/\n", "whitespace or control"),
        ("https://hooks.example.com/\tx", "whitespace or control"),
        ("https://hooks.example.com/\x00", "whitespace or control"),
        ("https://hooks.example.com/\x7f", "whitespace or control"),
        ("https://hooks.example.com/\u200b", "whitespace or control"),
        ("https://hooks.example.com/\u00a0", "whitespace or control"),
        ("https://[::1/", "not a valid URL"),
        ("https://%31%32%37.0.0.1/", "not a host name"),
        ("https://hooks.example.com\\@evil.example/", "user name or password"),
        ("https://hooks.example.com\\.evil.example/", "not a host name"),
    ],
)
def test_a_webhook_url_is_refused_naming_the_field(url: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as refused:
        check_webhook_url(url)
    assert refused.value.field == "url"


# -- addresses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.5", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),  # CGNAT
        ("100.127.255.254", "private"),
        ("fc00::1", "private"),  # unique local
        ("fd12:3456::1", "private"),
        ("fec0::1", "private"),  # site-local
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "reserved"),  # documentation
        ("198.18.0.1", "reserved"),  # benchmarking
        ("2001:db8::1", "reserved"),
        # IPv4-mapped and IPv4-compatible IPv6: judged as their IPv4 address.
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.5", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("::127.0.0.1", "loopback"),
        ("::10.0.0.5", "private"),
        # NAT64, 6to4 and Teredo that lead to a forbidden IPv4 address.
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a00:5", "private"),
        ("2002:7f00:1::1", "loopback"),
        ("2002:a9fe:a9fe::1", "link-local"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # client 127.0.0.1, obfuscated
    ],
)
def test_forbidden_addresses_say_why(address: str, reason: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700::1111",
        "2a00:1450:4001:82a::200e",
        "::ffff:93.184.215.14",  # mapped: judged as the IPv4 address it is
        "64:ff9b::808:808",  # NAT64 to 8.8.8.8
        "2002:808:808::1",  # 6to4 over 8.8.8.8
        "172.32.0.1",  # just past 172.16.0.0/12
        "100.128.0.1",  # just past CGNAT
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_address(ipaddress.ip_address(address)) is None


# -- secrets -------------------------------------------------------------------------------------


def test_a_new_secret_is_standard_webhooks_whsec_and_24_random_bytes() -> None:
    secrets = {new_webhook_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
        assert webhook_secret_key(secret) == base64.b64decode(secret[len("whsec_") :])


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not base64!", "whsec_YWJj*"])
def test_what_is_not_a_secret_has_no_key(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        webhook_secret_key(secret)


# -- the retry schedule --------------------------------------------------------------------------

CREATED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
SCHEDULE = DeliverySchedule()


def test_retries_wait_5_s_doubling_to_an_hour() -> None:
    delays = [SCHEDULE.delay(n).total_seconds() for n in range(1, 14)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]


def test_on_schedule_each_retry_follows_the_one_before() -> None:
    times = [SCHEDULE.next_attempt_at(n, CREATED) for n in range(1, 5)]
    assert times == [CREATED + timedelta(seconds=s) for s in (5, 15, 35, 75)]


def test_a_late_attempt_moves_the_next_one() -> None:
    failed_at = CREATED + timedelta(minutes=7)
    assert SCHEDULE.next_attempt_at(3, CREATED, failed_at) == failed_at + timedelta(seconds=20)


def test_the_last_attempt_is_within_24_hours_of_the_first() -> None:
    attempts = [CREATED]
    while (due := SCHEDULE.next_attempt_at(len(attempts), CREATED)) is not None:
        attempts.append(due)

    assert len(attempts) == 33
    assert attempts[-1] == CREATED + timedelta(seconds=5 * (2**10 - 1) + 22 * 3600)
    assert attempts[-1] <= SCHEDULE.deadline(CREATED) == CREATED + timedelta(hours=24)
    gaps = {later - earlier for earlier, later in itertools.pairwise(attempts[10:])}
    assert gaps == {timedelta(hours=1)}
    assert SCHEDULE.next_attempt_at(10**6, CREATED) is None


def test_a_retry_due_past_the_window_is_none() -> None:
    nearly_over = CREATED + timedelta(hours=23, minutes=59, seconds=55)
    assert SCHEDULE.next_attempt_at(1, CREATED, nearly_over) == SCHEDULE.deadline(CREATED)
    assert SCHEDULE.next_attempt_at(2, CREATED, nearly_over) is None


def test_a_schedule_of_its_own() -> None:
    schedule = DeliverySchedule(Backoff(base_seconds=1, max_seconds=4), timedelta(seconds=10))
    times = [schedule.next_attempt_at(n, CREATED) for n in range(1, 6)]
    assert times == [CREATED + timedelta(seconds=s) for s in (1, 3, 7)] + [None, None]
    with pytest.raises(ValueError, match="at least one failure"):
        schedule.next_attempt_at(0, CREATED)
    with pytest.raises(ValueError, match="positive"):
        DeliverySchedule(window=timedelta(0))
