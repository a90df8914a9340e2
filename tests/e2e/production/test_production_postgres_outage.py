"""PostgreSQL stops under a running API: every route that needs the database answers 503 with
``Retry-After``, liveness stays up, readiness goes down, and the same process serves again once
the server is back, without a restart.

The server is the one every test shares (their databases live on it): this module has it to
itself, and starts it again however the test ends.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import Api
from tests.e2e.production.deployment import (
    START_DEADLINE_SECONDS,
    ServiceScript,
    distinct_spec,
    production_deployment,
    restarted_at_exit,
)
from tests.support.production import PASSWORD
from tests.support.sql import postgres_server_url
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

logger = logging.getLogger(__name__)

USERNAME = "postgres-outage"


def _assert_database_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "dependency_unavailable", body
    assert "database" in body["detail"], body


def _metrics_source_up(api: Api) -> float:
    for family in text_string_to_metric_families(api.http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "imgproc_metrics_source_up":
                return sample.value
    pytest.fail("/metrics has no imgproc_metrics_source_up")


def test_with_postgresql_down_the_api_answers_503_and_recovers_by_itself(
    tmp_path: Path, corpus_dir: Path
) -> None:
    postgres = ServiceScript("postgres")
    assert postgres_server_url() == postgres.run("url"), (
        "the tests' PostgreSQL is not the one scripts/services/postgres.sh controls"
    )
    original = corpus_dir / "pngsuite" / "basn2c08.png"
    with production_deployment(tmp_path) as (_, deployed), restarted_at_exit(postgres):
        api_process = deployed.start_api()
        deployed.wait_until_healthy(api_process)
        with api_process.api() as api:
            user = api.register(USERNAME)
            source = api.upload(original, user)["id"]
            derived = api.transform(source, distinct_spec(0), user)["id"]
            assert api.http.get("/readyz").status_code == 200

            needs_database: dict[str, tuple[str, str, dict[str, Any]]] = {
                "list": ("GET", "/images/", {"headers": user}),
                "metadata": ("GET", f"/images/{source}/metadata", {"headers": user}),
                "download": ("GET", f"/images/{source}", {"headers": user}),
                "derived": ("GET", f"/images/{derived}", {"headers": user}),
                "transform": (
                    "POST",
                    f"/images/{source}/transform",
                    {"headers": user, "json": distinct_spec(1)},
                ),
                "upload": (
                    "POST",
                    "/images/",
                    {"headers": user, "files": {"file": ("a.png", original.read_bytes())}},
                ),
                "delete": ("DELETE", f"/images/{derived}", {"headers": user}),
                "register": (
                    "POST",
                    "/register",
                    {"json": {"username": "newcomer", "password": PASSWORD}},
                ),
                "login": ("POST", "/login", {"json": {"username": USERNAME, "password": PASSWORD}}),
            }

            postgres.stop()
            stopped_at = time.monotonic()
            timings: dict[str, float] = {}
            for name, (method, path, options) in needs_database.items():
                started = time.monotonic()
                response = api.call(method, path, follow_redirects=False, **options)
                timings[name] = time.monotonic() - started
                _assert_database_unavailable(response)
            health = api.http.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            ready = api.http.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert int(ready.headers["retry-after"]) >= 1
            checks = ready.json()["checks"]
            assert checks["database"].startswith("unavailable"), checks
            assert checks["queue"].startswith("unavailable"), checks
            assert checks["storage"] == "ok", checks
            assert _metrics_source_up(api) == 0
            logger.info(
                "answers with PostgreSQL down, in ms: %s",
                {name: round(seconds * 1000, 1) for name, seconds in timings.items()},
            )

            postgres.start()
            back_at = time.monotonic()

            def listed_again() -> httpx.Response | None:
                listed = api.call("GET", "/images/", headers=user)
                if listed.status_code == 200:
                    return listed
                _assert_database_unavailable(listed)
                return None

            listed = wait_until(
                listed_again,
                timeout=START_DEADLINE_SECONDS,
                interval=0.1,
                message="the API never served the list again",
            )
            recovered_after = time.monotonic() - back_at

            assert {item["id"] for item in listed.json()["items"]} == {source, derived}
            assert api.http.get("/readyz").status_code == 200
            assert _metrics_source_up(api) == 1
            assert api.metadata(derived, user)["status"] == "PENDING"
            api.transform(source, distinct_spec(1), user)
            api.upload(original, user)
            api.login(USERNAME)
            logger.info(
                "PostgreSQL down %.1f s; the same API process served again %.2f s after it was "
                "back",
                back_at - stopped_at,
                recovered_after,
            )
        assert api_process.terminate() == 0, api_process.tail()
