"""Rate limits: per user on uploads and transforms, per client address on register and login.

A route names its policy in its ``opt`` (``opt={"rate_limit": "upload"}``); the guard counts
the hit through the :class:`~imgproc_core.ports.RateLimiter` port before the body is read and
keeps the decision on the connection, and :func:`add_rate_limit_headers` writes it into the
response, refused (429, with ``Retry-After``) or not:

    RateLimit-Limit: 30
    RateLimit-Remaining: 29
    RateLimit-Reset: 2
    RateLimit-Policy: 30;w=60

When the limiter does not answer (Redis is down: the adapter raises ``DependencyUnavailable``),
the guard fails open or closed by policy:

- ``upload`` and ``transform`` fail **open**: the request goes on without a count or headers.
  These routes need a valid token, and uploads are bounded in size, pixels and job queue, so
  a few minutes without a per-user count cost little, while refusing them would turn a cache
  outage into an outage of the service.
- ``auth`` (register and log in) fails **closed**, with 503 and ``Retry-After``. Its limit is
  the only brake on password guessing and on floods of deliberately slow bcrypt hashes, and it
  is counted per address, before anyone is known. Signed-in clients keep working on their
  tokens meanwhile.

Either way a warning is logged (at most once a minute per policy, so an outage does not flood
the log) and ``imgproc_rate_limiter_unavailable_total{policy,outcome}`` counts every such
request, ``outcome`` being ``allowed`` or ``refused``.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Message, Scope
from prometheus_client import CollectorRegistry, Counter

from imgproc_core.domain import User
from imgproc_core.domain.errors import DependencyUnavailable, RateLimited
from imgproc_core.domain.limits import user_rate_key
from imgproc_core.ports import RateLimit, RateLimitDecision, RateLimiter
from imgproc_core.settings import SettingsError

#: Handler ``opt`` key naming the policy that applies to the route.
RATE_LIMIT_OPT: Final = "rate_limit"
#: Policies counted per client address; every other one is counted per authenticated user.
PER_ADDRESS_POLICIES: Final = frozenset({"auth"})
#: Policies refused (503) while the limiter is unavailable; every other one lets requests through.
FAIL_CLOSED_POLICIES: Final = frozenset({"auth"})
#: The shortest time between two warnings about an unavailable limiter, per policy.
UNAVAILABLE_WARNING_INTERVAL_SECONDS: Final = 60.0

logger = logging.getLogger(__name__)

_STATE_KEY: Final = "imgproc_rate_limit"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` -> networks; an empty string trusts no proxy."""
    try:
        return tuple(
            ipaddress.ip_network(part.strip(), strict=False)
            for part in text.split(",")
            if part.strip()
        )
    except ValueError as exc:
        raise SettingsError(f"IMGPROC_TRUSTED_PROXIES: {exc}") from None


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[IPNetwork, ...]
) -> str:
    """The address a request came from.

    ``X-Forwarded-For`` is believed only as far as it was written by trusted proxies: walking
    it from the right, the first address not of a trusted proxy is the client. Without trusted
    proxies the header is ignored, so a client cannot pick its own rate-limit key.
    """
    address = peer or "unknown"
    if not trusted or not _is_trusted(address, trusted) or not forwarded_for:
        return address
    for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        if not _is_trusted(hop, trusted):
            return hop
        address = hop
    return address


def _is_trusted(address: str, trusted: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class RateLimitGuard:
    """A guard that counts one hit of the route's policy and refuses it with 429 when over.

    While the limiter is unavailable, policies in ``fail_closed`` raise its
    ``DependencyUnavailable`` (503 with ``Retry-After``) and the others let the request
    through; see the module's documentation for why. The counter of such requests is
    registered in ``registry`` (the app's, to be scraped), or in a registry of the guard's own.

    ``in_process`` says the limiter answers from memory without I/O (the embedded profile's):
    it is then asked on the event loop, which costs less than the hop to a worker thread that a
    limiter on the network needs.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        policies: Mapping[str, RateLimit],
        trusted_proxies: tuple[IPNetwork, ...] = (),
        *,
        fail_closed: frozenset[str] = FAIL_CLOSED_POLICIES,
        registry: CollectorRegistry | None = None,
        in_process: bool = False,
    ) -> None:
        self._limiter = limiter
        self._in_process = in_process
        self._policies = dict(policies)
        self._trusted = trusted_proxies
        self._fail_closed = fail_closed
        self.unavailable = Counter(
            "imgproc_rate_limiter_unavailable",
            "Requests that met an unavailable rate limiter, let through or refused",
            ("policy", "outcome"),
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._warned_at: dict[str, float] = {}
        self._warn_lock = threading.Lock()

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        policy = handler.opt.get(RATE_LIMIT_OPT)
        if policy is None:
            return
        rate = self._policies[policy]
        key = self._key(connection, policy)
        try:
            if self._in_process:
                decision = self._limiter.hit(key, rate)
            else:
                # A Redis-backed limiter does network I/O.
                decision = await anyio.to_thread.run_sync(self._limiter.hit, key, rate)
        except DependencyUnavailable as exc:
            if policy in self._fail_closed:
                self._note_unavailable(policy, "refused", exc)
                raise
            self._note_unavailable(policy, "allowed", exc)
            return
        connection.scope.setdefault("state", {})[_STATE_KEY] = (decision, rate)
        if not decision.allowed:
            wait = max(1, math.ceil(decision.retry_after))
            raise RateLimited(
                f"too many requests; try again in {wait} s",
                retry_after=decision.retry_after,
            )

    def _note_unavailable(self, policy: str, outcome: str, exc: DependencyUnavailable) -> None:
        self.unavailable.labels(policy, outcome).inc()
        now = time.monotonic()
        with self._warn_lock:
            last = self._warned_at.get(policy)
            if last is not None and now - last < UNAVAILABLE_WARNING_INTERVAL_SECONDS:
                return
            self._warned_at[policy] = now
        action = "refusing" if outcome == "refused" else "letting through"
        logger.warning(
            "rate limiter unavailable, %s %s requests (warning at most every %g s): %s",
            action,
            policy,
            UNAVAILABLE_WARNING_INTERVAL_SECONDS,
            exc.message,
        )

    def _key(self, connection: ASGIConnection[Any, Any, Any, Any], policy: str) -> str:
        if policy not in PER_ADDRESS_POLICIES:
            user = connection.scope.get("user")
            if isinstance(user, User):
                return user_rate_key(policy, user.id)
        peer = connection.client.host if connection.client else None
        forwarded = connection.headers.get("x-forwarded-for")
        return f"{policy}:addr:{client_address(peer, forwarded, self._trusted)}"


def rate_limit_headers(decision: RateLimitDecision, rate: RateLimit) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(max(0, decision.remaining)),
        "RateLimit-Reset": str(max(0, round(decision.reset_after))),
        "RateLimit-Policy": f"{rate.limit};w={round(rate.window_seconds)}",
    }


async def add_rate_limit_headers(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook: the RateLimit headers on every response of a limited route."""
    if message["type"] != "http.response.start":
        return
    counted = scope.get("state", {}).get(_STATE_KEY)
    if counted is None:
        return
    decision, rate = counted
    headers = MutableScopeHeaders.from_message(message)
    for name, value in rate_limit_headers(decision, rate).items():
        headers[name] = value
