"""Outgoing webhooks: the events a user can be told about, the URLs they may be sent to, the
addresses a sender must never connect to, the signing secret, and when a failed delivery is
tried again.

A webhook URL is chosen by a user, so it is untrusted input that makes the service open a
connection: the rules here keep it from being pointed at the service's own network (server-side
request forgery). :func:`check_webhook_url` refuses what no receiver needs (user info, a
fragment, another scheme); host names are not resolved here, since what a name resolves to can
change between registration and delivery. The sender judges each address it is about to connect
to with :func:`forbidden_address`, at delivery time.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from imgproc_core.domain.backoff import Backoff
from imgproc_core.domain.errors import InvalidInput

__all__ = [
    "MAX_WEBHOOK_URL_CHARS",
    "SUBSCRIBABLE_EVENT_TYPES",
    "WEBHOOK_SECRET_PREFIX",
    "DeliverySchedule",
    "IPAddress",
    "WebhookEventType",
    "check_webhook_url",
    "forbidden_address",
    "new_webhook_secret",
    "webhook_secret_key",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookEventType(StrEnum):
    """The ``type`` of a webhook's event, as receivers read it: past tense, ``<object>.<what
    happened>``."""

    IMAGE_UPLOADED = "image.uploaded"
    #: A derived image rendered.
    IMAGE_READY = "image.ready"
    #: A derived image whose job failed for good.
    IMAGE_FAILED = "image.failed"
    IMAGE_DELETED = "image.deleted"
    #: Sent on request, to one endpoint, to check that it receives and verifies: never
    #: subscribed to.
    WEBHOOK_TEST = "webhook.test"


#: What a user may subscribe an endpoint to.
SUBSCRIBABLE_EVENT_TYPES: Final[tuple[WebhookEventType, ...]] = (
    WebhookEventType.IMAGE_UPLOADED,
    WebhookEventType.IMAGE_READY,
    WebhookEventType.IMAGE_FAILED,
    WebhookEventType.IMAGE_DELETED,
)

# -- the URL -------------------------------------------------------------------------------------

#: Longer URLs are refused: no receiver needs one, and every delivery row stores it.
MAX_WEBHOOK_URL_CHARS: Final = 2048
_SCHEMES: Final = frozenset({"http", "https"})
#: Unicode categories refused anywhere in a URL: control characters, and the invisible format
#: characters (zero-width joiners, direction overrides) that make a URL read as another.
_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf"})
#: What a host name may hold besides letters and digits (non-ASCII letters included: an
#: internationalized name is encoded by the HTTP client). Anything else (``%``, ``\\``, ``;``)
#: is where URL parsers disagree, and so where a checked URL can reach another host.
_HOST_NAME_PUNCTUATION: Final = frozenset("-._")


def check_webhook_url(url: str) -> str:
    """``url`` as it is stored, when it is a URL webhooks may be sent to; else
    :class:`InvalidInput` naming the field ``url`` and what is wrong.

    Refused: over :data:`MAX_WEBHOOK_URL_CHARS` characters, whitespace or control characters,
    a scheme other than http and https, no host, user info (``user:pass@``: credentials belong
    in the signature, and ``@`` is how a URL hides its real host), a fragment (never sent, so
    meaningless), a port outside 1 to 65535, and a host that is neither a name nor an IP
    address. Names are not resolved: the sender judges the addresses it connects to.
    """
    if len(url) > MAX_WEBHOOK_URL_CHARS:
        raise _invalid(f"a webhook URL has at most {MAX_WEBHOOK_URL_CHARS} characters")
    if any(ch.isspace() or unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in url):
        raise _invalid("a webhook URL has no whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise _invalid(f"not a valid URL: {exc}") from None
    try:
        port = parts.port
    except ValueError:
        port = 0  # not a number, or past 65535
    if parts.scheme.lower() not in _SCHEMES:
        raise _invalid("a webhook URL is http or https")
    if "@" in parts.netloc:
        raise _invalid("a webhook URL has no user name or password")
    if "#" in url:
        raise _invalid("a webhook URL has no fragment")
    host = parts.hostname
    if not host:
        raise _invalid("a webhook URL names a host")
    if port is not None and not 1 <= port <= 65535:
        raise _invalid("a webhook URL's port is a number from 1 to 65535")
    if not _is_ip_literal(host) and not all(
        ch.isalnum() or ch in _HOST_NAME_PUNCTUATION for ch in host
    ):
        raise _invalid(f"not a host name: {host!r}")
    return url


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, field="url")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- the addresses -------------------------------------------------------------------------------

#: Private networks that ``ipaddress`` does not call private (CGNAT, RFC 6598; the deprecated
#: IPv6 site-local block) or calls private together with ranges better named reserved.
_PRIVATE_NETWORKS: Final[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("fc00::/7"),
    ipaddress.ip_network("fec0::/10"),
)
#: "This network": Linux connects 0.x.y.z to the local host.
_THIS_NETWORK: Final = ipaddress.ip_network("0.0.0.0/8")
#: NAT64's well-known prefix (RFC 6052): a gateway connects to the embedded IPv4 address.
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
#: IPv4-compatible IPv6 (deprecated, RFC 4291): ``::a.b.c.d``.
_IPV4_COMPATIBLE: Final = ipaddress.ip_network("::/96")


def forbidden_address(address: IPAddress) -> str | None:
    """None when a webhook may be sent to ``address``; else why not, in one word:
    ``unspecified``, ``loopback``, ``link-local``, ``multicast``, ``private`` or ``reserved``.

    An IPv6 address that carries an IPv4 one is judged by it: IPv4-mapped (``::ffff:a.b.c.d``)
    and NAT64 (``64:ff9b::a.b.c.d``) as the IPv4 address they reach; IPv4-compatible, 6to4 and
    Teredo refused for the reason of the IPv4 address they embed, then judged as IPv6 too.
    Everything that is not globally reachable and has no more precise word is ``reserved``
    (documentation, benchmarking, protocol assignments, 240.0.0.0/4 with the broadcast address).
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_unspecified:
            return "unspecified"
        if address.is_loopback:
            return "loopback"
        if address.ipv4_mapped is not None:
            return forbidden_address(address.ipv4_mapped)
        if address in _NAT64:
            return forbidden_address(_low_ipv4(address))
        for embedded in _embedded_ipv4(address):
            reason = forbidden_address(embedded)
            if reason is not None:
                return reason
    return _category(address)


def _low_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a tunnelled or compatible IPv6 address leads to."""
    if address in _IPV4_COMPATIBLE:
        return [_low_ipv4(address)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        server, client = address.teredo
        return [client, server]
    return []


def _category(address: IPAddress) -> str | None:
    if address.is_unspecified or address in _THIS_NETWORK:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in network for network in _PRIVATE_NETWORKS):
        return "private"
    if address.is_reserved or address.is_private or not address.is_global:
        return "reserved"
    return None


# -- the secret ----------------------------------------------------------------------------------

#: Standard Webhooks' prefix of a signing secret: the rest is the key in base64.
WEBHOOK_SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (a prefix, not a secret)
_SECRET_BYTES: Final = 24


def new_webhook_secret() -> str:
    """A new endpoint's signing secret, in Standard Webhooks' form: ``whsec_`` and the base64
    of 24 random bytes (192 bits: the spec asks for 24 to 64)."""
    key = secrets.token_bytes(_SECRET_BYTES)
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a secret in :func:`new_webhook_secret`'s form (the prefix optional);
    ``ValueError`` for anything else, including an empty key."""
    encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ and base64") from None
    if not key:
        raise ValueError("a webhook secret's key is not empty")
    return key


# -- retries -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliverySchedule:
    """When a webhook that could not be delivered is tried again: :attr:`backoff` after each
    failed attempt (by default 5 s after the first, doubling, at most an hour apart), for as
    long as the next attempt falls within :attr:`window` of the first one (by default 24 hours,
    which the first retries fill with about 33 attempts).

    Pure arithmetic over the times it is given: the caller reads the clock.
    """

    backoff: Backoff = field(default_factory=lambda: Backoff(base_seconds=5.0, max_seconds=3600.0))
    window: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if self.window <= timedelta(0):
            raise ValueError("a delivery window is positive")

    def delay(self, failures: int) -> timedelta:
        """The wait after the ``failures``-th failed attempt (1 for the first)."""
        return timedelta(seconds=self.backoff.delay(failures))

    def deadline(self, first_attempt_at: datetime) -> datetime:
        """No attempt is made after this."""
        return first_attempt_at + self.window

    def next_attempt_at(
        self,
        failures: int,
        first_attempt_at: datetime,
        last_failed_at: datetime | None = None,
    ) -> datetime | None:
        """When to try again after ``failures`` failed attempts, the first of which was made at
        ``first_attempt_at`` (an event's first attempt is made when it is created); None when
        that would be past :meth:`deadline`: the last attempt has been made, give up.

        The wait is counted from ``last_failed_at``, when the caller has it (the attempt ran
        late behind others, or took its full timeout); else the attempts are taken to have run
        on schedule, each a :meth:`delay` after the one before.
        """
        if last_failed_at is None:
            due = first_attempt_at + self._planned_offset(failures)
        else:
            due = last_failed_at + self.delay(failures)
        return due if due <= self.deadline(first_attempt_at) else None

    def _planned_offset(self, failures: int) -> timedelta:
        """The sum of the first ``failures`` delays, stopping once it is past the window (so a
        huge count costs no more than the window's worth of steps)."""
        if failures < 1:
            raise ValueError("a retry follows at least one failure")
        total = timedelta(0)
        for failure in range(1, failures + 1):
            total += self.delay(failure)
            if total > self.window:
                break
        return total
