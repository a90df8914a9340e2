"""The limits that keep hostile or oversized input from hurting the service."""

from __future__ import annotations

import msgspec


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Input and output limits; every one is configurable through settings."""

    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_frames: int = 100
    max_output_side: int = 8192


def user_rate_key(policy: str, user_id: str) -> str:
    """The rate limiter's key of ``user_id``'s requests under ``policy`` (``upload``,
    ``transform``): one for every way in, so that a render a delivery link queues counts
    against the same limit as ``POST /transform``."""
    return f"{policy}:user:{user_id}"
