"""A dependency down: 503 with ``Retry-After`` on what needs it, the rest still served, and
recovery without a restart once it is back. Work that runs past its time limit is a 503 too.

The storage is broken for real: its folder is moved away and a plain file put in its place, so
every write fails in the file system. The database is switched off at its port (the unit of
work's factory raises ``DependencyUnavailable``, as the SQLAlchemy adapter does when its
server does not answer): an SQLite file cannot be made to stop answering connections that
are already open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dependency_injector import providers

from imgproc_core.adapters.pillow import PillowImageCodec
from imgproc_core.container import Container
from imgproc_core.domain.errors import DependencyUnavailable, ProcessingTimeout
from imgproc_core.domain.limits import Limits
from imgproc_core.ports import ImageInfo, UnitOfWork
from tests.e2e.conftest import Api, EmbeddedApp
from tests.e2e.rewired import RewiredApps
from tests.support.local_storage import BrokenFolder

pytestmark = pytest.mark.e2e

HOPPER = "hopper.png"


def assert_unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body == {
        "status": 503,
        "title": "Service Unavailable",
        "detail": f"the {dependency} is unavailable; try again shortly",
        "code": "dependency_unavailable",
    }


def make_link(api: Api, image_id: str, headers: dict[str, str]) -> str:
    """The URL of a new delivery link to the image itself."""
    made = api.call("POST", f"/images/{image_id}/links", json={}, headers=headers, expect=201)
    url: str = made.json()["url"]
    return url


def readiness(api: Api) -> tuple[int, dict[str, str], httpx.Response]:
    response = api.http.get("/readyz")
    checks: dict[str, str] = response.json()["checks"]
    return response.status_code, checks, response


def assert_failing(api: Api, *dependencies: str) -> None:
    status, checks, response = readiness(api)
    assert status == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["code"] == "not_ready"
    assert sorted(name for name, outcome in checks.items() if outcome != "ok") == sorted(
        dependencies
    )
    for name in dependencies:
        assert name in response.json()["detail"]


def assert_ready(api: Api) -> None:
    status, checks, _ = readiness(api)
    assert status == 200
    assert set(checks.values()) == {"ok"}


# -- storage ----------------------------------------------------------------------------------


def test_storage_down_fails_uploads_only_and_recovers(
    make_app: Any, open_api: Any, corpus_dir: Path
) -> None:
    embedded = make_app(worker_threads=0)
    image = corpus_dir / "pillow" / HOPPER
    with open_api(embedded) as api:
        user = api.register("storageuser")
        kept = api.upload(image, user)
        link = make_link(api, kept["id"], user)
        assert api.http.get(link).content == image.read_bytes()
        assert_ready(api)

        with BrokenFolder(embedded.storage_dir) as storage:
            upload = api.call(
                "POST", "/images/", files={"file": (HOPPER, image.read_bytes())}, headers=user
            )
            assert_unavailable(upload, "storage")

            assert api.http.get("/healthz").status_code == 200
            assert_failing(api, "storage")
            assert_unavailable(api.http.get(link), "storage")
            # What needs only the database is still served.
            listed = api.call("GET", "/images", headers=user, expect=200).json()
            assert [item["id"] for item in listed["items"]] == [kept["id"]]
            assert api.metadata(kept["id"], user) == kept
            derived = api.transform(kept["id"], {"rotate": 90}, user)
            assert derived["status"] == "PENDING"
            api.login("storageuser")

            storage.repair()
            # Back without a restart.
            again = api.upload(image, user)
            assert_ready(api)

        listed = api.call("GET", "/images", headers=user, expect=200).json()
        assert {item["id"] for item in listed["items"]} == {kept["id"], again["id"], derived["id"]}
        assert api.download(again["id"], user).content == image.read_bytes()
        assert api.http.get(link).content == image.read_bytes()


# -- database ---------------------------------------------------------------------------------


class DatabaseSwitch:
    """A unit-of-work factory that answers like the real one, or, switched off, like a
    database that does not answer."""

    def __init__(self, real: Callable[[], UnitOfWork]) -> None:
        self._real = real
        self.down = False

    def __call__(self) -> UnitOfWork:
        if self.down:
            raise DependencyUnavailable("connection refused (switched off by the test)", "database")
        return self._real()


@pytest.fixture
def rewired_app(tmp_path: Path) -> Iterator[RewiredApps]:
    apps = RewiredApps(tmp_path)
    yield apps
    apps.close()


@pytest.fixture
def switchable_database(rewired_app: RewiredApps) -> tuple[EmbeddedApp, DatabaseSwitch]:
    switch: list[DatabaseSwitch] = []

    def wire_switch(container: Container) -> None:
        real = container.database().unit_of_work
        switch.append(DatabaseSwitch(real))
        container.unit_of_work.override(providers.Callable(switch[0]))

    embedded = rewired_app(wire_switch, worker_threads=0)
    return embedded, switch[0]


def test_database_down_answers_503_keeps_serving_files_and_recovers(
    switchable_database: tuple[EmbeddedApp, DatabaseSwitch], open_api: Any, corpus_dir: Path
) -> None:
    embedded, database = switchable_database
    image = corpus_dir / "pillow" / HOPPER
    with open_api(embedded) as api:
        user = api.register("dbuser")
        kept = api.upload(image, user)
        signed_url = api.redirect(kept["id"], user).headers["location"]
        link = make_link(api, kept["id"], user)
        assert_ready(api)

        database.down = True
        files = {"file": (HOPPER, image.read_bytes())}
        for method, path, options in [
            ("POST", "/images/", {"files": files, "headers": user}),
            ("GET", "/images", {"headers": user}),
            ("GET", f"/images/{kept['id']}/metadata", {"headers": user}),
            ("POST", "/login", {"json": {"username": "dbuser", "password": "irrelevant"}}),
        ]:
            assert_unavailable(api.call(method, path, **options), "database")
        # A delivery link is looked up in the database: revoked links must not serve.
        assert_unavailable(api.http.get(link), "database")
        assert api.http.get("/healthz").status_code == 200
        assert_failing(api, "database", "queue")
        # A signed URL handed out before needs no database: the file is still served.
        assert api.http.get(signed_url).content == image.read_bytes()
        assert api.http.get("/metrics").status_code == 200

        database.down = False
        listed = api.call("GET", "/images", headers=user, expect=200).json()
        assert [item["id"] for item in listed["items"]] == [kept["id"]]
        api.upload(image, user)
        api.login("dbuser")
        assert api.http.get(link).content == image.read_bytes()
        assert_ready(api)


# -- work past its time limit -----------------------------------------------------------------


class StalledCodec(PillowImageCodec):
    """A codec whose probe runs past its time limit (a decoder stuck on a hostile file)."""

    def probe(self, data: bytes, limits: Limits) -> ImageInfo:
        raise ProcessingTimeout("the probe ran past its time limit of 10 s")


def test_work_past_its_time_limit_is_503_with_retry_after(
    rewired_app: RewiredApps, open_api: Any, corpus_dir: Path
) -> None:
    def stall(container: Container) -> None:
        container.codec.override(providers.Singleton(StalledCodec))

    embedded = rewired_app(stall, worker_threads=0)
    with open_api(embedded) as api:
        user = api.register()
        image = corpus_dir / "pillow" / HOPPER
        response = api.call(
            "POST", "/images/", files={"file": (HOPPER, image.read_bytes())}, headers=user
        )
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["code"] == "processing_timeout"
        assert api.call("GET", "/images", headers=user, expect=200).json()["total"] == 0


# -- the URL cache ----------------------------------------------------------------------------


class DownCache:
    """A URL cache whose server does not answer."""

    def get(self, key: str) -> str | None:
        raise DependencyUnavailable("connection refused (switched off by the test)", "cache")

    def set(self, key: str, url: str, ttl_seconds: float) -> None:
        raise DependencyUnavailable("connection refused (switched off by the test)", "cache")

    def delete(self, key: str) -> None:
        raise DependencyUnavailable("connection refused (switched off by the test)", "cache")


def test_a_cache_down_leaves_the_service_ready_but_degraded(
    rewired_app: RewiredApps, open_api: Any, corpus_dir: Path
) -> None:
    def break_cache(container: Container) -> None:
        container.url_cache.override(providers.Object(DownCache()))

    embedded = rewired_app(break_cache, worker_threads=0)
    with open_api(embedded) as api:
        status, checks, response = readiness(api)
        assert status == 200
        assert response.json()["status"] == "degraded"
        assert checks["cache"] != "ok"
        assert {checks["database"], checks["storage"], checks["queue"]} == {"ok"}

        user = api.register()
        image = corpus_dir / "pillow" / HOPPER
        uploaded = api.upload(image, user)
        location = api.redirect(uploaded["id"], user).headers["location"]
        assert api.http.get(location).content == image.read_bytes()
