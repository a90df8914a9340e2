"""``/healthz``, ``/readyz`` and ``/metrics``: for load balancers, orchestrators and Prometheus.

``/healthz`` says the process answers and touches nothing else, so a database outage does not
get healthy processes restarted. ``/readyz`` asks each dependency (see
:mod:`imgproc_http.readiness`) and answers 503, naming the failing ones, when a required one does
not (a failing cache only makes it ``degraded``).
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST

from imgproc_http.errors import problem, problem_responses, retry_after_header
from imgproc_http.metrics import HttpMetrics
from imgproc_http.readiness import ReadinessChecks
from imgproc_http.schemas import Liveness, Readiness

READINESS_RETRY_AFTER_SECONDS = 5
#: Litestar appends the charset to text types itself; given twice, scrapers may balk.
METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.partition("; charset")[0]


@get("/healthz", summary="Liveness: the process answers", tags=["operations"])
async def healthz() -> Liveness:
    return Liveness()


@get(
    "/readyz",
    summary="Readiness: the database, queue, storage and cache answer",
    responses={
        200: ResponseSpec(Readiness, description="Every dependency answers"),
        **problem_responses(503, malformed=False),
    },
    tags=["operations"],
)
async def readyz(readiness: NamedDependency[ReadinessChecks]) -> Response[Any]:
    checks = await readiness.run()
    failing = sorted(name for name, outcome in checks.items() if outcome != "ok")
    required_failing = [name for name in failing if name not in readiness.optional]
    if required_failing:
        return problem(
            503,
            f"not ready: {', '.join(required_failing)} unavailable",
            "not_ready",
            headers={"Retry-After": retry_after_header(READINESS_RETRY_AFTER_SECONDS)},
            checks=checks,
        )
    status = "degraded" if failing else "ready"
    return Response(Readiness(status=status, checks=checks), media_type=MediaType.JSON)


@get(
    "/metrics",
    sync_to_thread=True,
    summary="Prometheus metrics (text format)",
    media_type=METRICS_MEDIA_TYPE,
    tags=["operations"],
)
def metrics(http_metrics: NamedDependency[HttpMetrics]) -> Response[bytes]:
    return Response(http_metrics.render(), media_type=METRICS_MEDIA_TYPE)
