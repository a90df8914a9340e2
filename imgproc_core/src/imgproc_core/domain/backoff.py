"""The one formula for exponential delays: every wait of the service between two tries is
taken from :class:`Backoff` (the job policy's retries and outages, the relay's wait for the
broker, the Kafka consumer's reconnection, the webhooks' delivery schedule).

It lives in the domain, not beside the job policy, because a schedule in the domain (the
webhooks') is built on it and the domain imports no outer layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["Backoff"]

#: Past this many doublings the delay is at its cap anyway; the exponent stays small.
_MAX_DOUBLINGS: Final = 64


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``base_seconds`` after the first failure in a row, doubling with
    each further one, never more than ``max_seconds``."""

    base_seconds: float
    max_seconds: float

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.max_seconds <= 0:
            raise ValueError("backoff delays are positive")

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row (1 for the first)."""
        if failures < 1:
            raise ValueError("a delay follows at least one failure")
        doublings = min(failures - 1, _MAX_DOUBLINGS)
        return float(min(self.max_seconds, self.base_seconds * 2.0**doublings))
