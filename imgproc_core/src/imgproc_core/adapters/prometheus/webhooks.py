""":class:`~imgproc_core.ports.WebhookMetrics` as Prometheus series.

- ``imgproc_webhook_deliveries_total{outcome}``: deliveries' attempts by outcome
  (``delivered``, ``retried``, ``failed``) and deliveries dropped (``skipped``, ``gone``);
- ``imgproc_webhook_attempts_total``: attempts made (the first three outcomes);
- ``imgproc_webhook_oldest_undelivered_age_seconds``: how long ago the oldest event not
  delivered yet happened (0 when none waits), read when scraped, once a reader is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Final

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["KNOWN_DELIVERY_OUTCOMES", "PrometheusWebhookMetrics"]

KNOWN_DELIVERY_OUTCOMES: Final = ("delivered", "retried", "failed", "skipped", "gone")
_ATTEMPTED: Final = frozenset({"delivered", "retried", "failed"})

#: When the oldest undelivered event happened (None: none waits), and what time it is now.
BacklogReader = Callable[[], tuple[datetime | None, datetime]]


class PrometheusWebhookMetrics(Collector):
    def __init__(self) -> None:
        self._deliveries = Counter(
            "imgproc_webhook_deliveries",
            "Webhook delivery attempts by outcome, and deliveries dropped",
            ("outcome",),
            registry=None,
        )
        self._attempts = Counter(
            "imgproc_webhook_attempts", "Webhook delivery attempts made", registry=None
        )
        self._children = {
            outcome: self._deliveries.labels(outcome) for outcome in KNOWN_DELIVERY_OUTCOMES
        }
        self._backlog: BacklogReader | None = None

    def read_backlog_with(self, reader: BacklogReader) -> None:
        self._backlog = reader

    def delivery_ended(self, outcome: str) -> None:
        child = self._children.get(outcome) or self._deliveries.labels(outcome)
        child.inc()
        if outcome in _ATTEMPTED:
            self._attempts.inc()

    def collect(self) -> Iterable[Metric]:
        yield from self._deliveries.collect()
        yield from self._attempts.collect()
        if self._backlog is None:
            return
        try:
            oldest, now = self._backlog()
        except Exception:  # the database down: the series is left out of this scrape
            return
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield GaugeMetricFamily(
            "imgproc_webhook_oldest_undelivered_age_seconds",
            "How long ago the oldest webhook event not delivered yet happened",
            value=age,
        )
