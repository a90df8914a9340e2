"""Prometheus metrics for the core's ports. Needs the ``prometheus`` extra (``prometheus-client``).

The adapters are collectors that belong to no registry of their own: the process that serves
them (the API's ``/metrics``, a worker's metrics port) registers them in its registry, so one
set of job series can be exported wherever the jobs run.
"""

from imgproc_core.adapters.prometheus.jobs import (
    JOB_DURATION_BUCKETS,
    KNOWN_DEAD_LETTER_CODES,
    KNOWN_OUTCOMES,
    PrometheusJobMetrics,
)
from imgproc_core.adapters.prometheus.webhooks import (
    KNOWN_DELIVERY_OUTCOMES,
    PrometheusWebhookMetrics,
)

__all__ = [
    "JOB_DURATION_BUCKETS",
    "KNOWN_DEAD_LETTER_CODES",
    "KNOWN_DELIVERY_OUTCOMES",
    "KNOWN_OUTCOMES",
    "PrometheusJobMetrics",
    "PrometheusWebhookMetrics",
]
