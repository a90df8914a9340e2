from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` hits per ``window_seconds``."""

    limit: int
    window_seconds: float


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    #: Seconds until the window has room again for a full burst (the RateLimit-Reset header).
    reset_after: float
    #: Seconds to wait before the next hit can pass; 0 when this one passed.
    retry_after: float


class RateLimiter(Protocol):
    def hit(self, key: str, rate: RateLimit) -> RateLimitDecision:
        """Count one hit against ``key`` and say whether it passes. Atomic per key."""
        ...


class UrlCache(Protocol):
    def get(self, key: str) -> str | None: ...

    def set(self, key: str, url: str, ttl_seconds: float) -> None:
        """Keep ``url`` for ``ttl_seconds``; a non-positive ttl keeps nothing."""
        ...

    def delete(self, key: str) -> None: ...
