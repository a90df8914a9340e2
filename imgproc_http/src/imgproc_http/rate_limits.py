"""Rate limits: per user on uploads and transforms, per client address on register and login.

A route names its policy in its ``opt`` (``opt={"rate_limit": "upload"}``); the guard counts
the hit through the :class:`~imgproc_core.ports.RateLimiter` port before the body is read and
keeps the decision on the connection, and :func:`add_rate_limit_headers` writes it into the
response, refused (429, with ``Retry-After``) or not:

    RateLimit-Limit: 30
    RateLimit-Remaining: 29
    RateLimit-Reset: 2
    RateLimit-Policy: 30;w=60
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from typing import Any, Final

import anyio.to_thread
from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Message, Scope

from imgproc_core.domain import User
from imgproc_core.domain.errors import RateLimited
from imgproc_core.ports import RateLimit, RateLimitDecision, RateLimiter
from imgproc_core.settings import SettingsError

#: Handler ``opt`` key naming the policy that applies to the route.
RATE_LIMIT_OPT: Final = "rate_limit"
#: Policies counted per client address; every other one is counted per authenticated user.
PER_ADDRESS_POLICIES: Final = frozenset({"auth"})

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
    """A guard that counts one hit of the route's policy and refuses it with 429 when over."""

    def __init__(
        self,
        limiter: RateLimiter,
        policies: Mapping[str, RateLimit],
        trusted_proxies: tuple[IPNetwork, ...] = (),
    ) -> None:
        self._limiter = limiter
        self._policies = dict(policies)
        self._trusted = trusted_proxies

    async def __call__(
        self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
    ) -> None:
        policy = handler.opt.get(RATE_LIMIT_OPT)
        if policy is None:
            return
        rate = self._policies[policy]
        key = f"{policy}:{self._subject(connection, policy)}"
        # A Redis-backed limiter does network I/O.
        decision = await anyio.to_thread.run_sync(self._limiter.hit, key, rate)
        connection.scope.setdefault("state", {})[_STATE_KEY] = (decision, rate)
        if not decision.allowed:
            wait = max(1, math.ceil(decision.retry_after))
            raise RateLimited(
                f"too many requests; try again in {wait} s",
                retry_after=decision.retry_after,
            )

    def _subject(self, connection: ASGIConnection[Any, Any, Any, Any], policy: str) -> str:
        if policy not in PER_ADDRESS_POLICIES:
            user = connection.scope.get("user")
            if isinstance(user, User):
                return f"user:{user.id}"
        peer = connection.client.host if connection.client else None
        forwarded = connection.headers.get("x-forwarded-for")
        return f"addr:{client_address(peer, forwarded, self._trusted)}"


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
