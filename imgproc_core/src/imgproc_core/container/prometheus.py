"""Prometheus's composition root: job attempts and dead letters counted in the process's
registry (the API's ``/metrics`` and a worker's metrics port export it). Needs the
``prometheus`` extra, which the HTTP and worker shells bring."""

from __future__ import annotations

from dependency_injector import containers, providers

from imgproc_core.adapters.prometheus import PrometheusJobMetrics, PrometheusWebhookMetrics
from imgproc_core.ports import Clock
from imgproc_core.settings import Settings


class PrometheusMetrics(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    clock: providers.Dependency[Clock] = providers.Dependency()

    job_metrics = providers.Singleton(PrometheusJobMetrics)
    webhook_metrics = providers.Singleton(PrometheusWebhookMetrics)
