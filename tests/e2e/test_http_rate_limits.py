"""Rate limits: per user on uploads and transforms, per client address on register and login.

The apps here run on a :class:`ManualClock`, so a window passes when the test says so. With a
limit of 3 a minute, three requests pass (``RateLimit-Remaining`` 2, 1, 0), the fourth gets 429
with ``Retry-After``, and waiting that long lets one more through. Client addresses other than
the test client's come from httpx's ASGI transport, which sets the peer address of each request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dependency_injector import providers

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.container import Container
from tests.e2e.conftest import PASSWORD, TEST_BASE_URL, EmbeddedApp
from tests.e2e.rewired import RewiredApps

pytestmark = pytest.mark.e2e

LIMIT = 3
RATE = f"{LIMIT}/minute"
GENEROUS = "1000/minute"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def rewired_app(tmp_path: Path) -> Iterator[RewiredApps]:
    apps = RewiredApps(tmp_path)
    yield apps
    apps.close()


@pytest.fixture
def limited_app(rewired_app: RewiredApps, clock: ManualClock) -> Any:
    """``limited_app(**settings)``: an app on ``clock``, every limit generous unless given."""

    def use_clock(container: Container) -> None:
        container.clock.override(providers.Object(clock))

    def build(**overrides: Any) -> EmbeddedApp:
        settings = {
            "worker_threads": 0,
            "rate_limit_upload": GENEROUS,
            "rate_limit_transform": GENEROUS,
            "rate_limit_auth": GENEROUS,
            **overrides,
        }
        return rewired_app(use_clock, **settings)

    return build


def assert_counted(response: httpx.Response, remaining: int) -> int:
    """A passed request of a limited route; returns its ``RateLimit-Reset``."""
    assert response.status_code < 400, response.text
    assert response.headers["ratelimit-limit"] == str(LIMIT)
    assert response.headers["ratelimit-remaining"] == str(remaining)
    assert response.headers["ratelimit-policy"] == f"{LIMIT};w=60"
    reset = int(response.headers["ratelimit-reset"])
    assert 0 < reset <= 60
    return reset


def assert_refused(response: httpx.Response) -> int:
    """A 429 with its headers and the problem shape; returns ``Retry-After``."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert (body["status"], body["title"], body["code"]) == (
        429,
        "Too Many Requests",
        "rate_limited",
    )
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert response.headers["ratelimit-limit"] == str(LIMIT)
    assert response.headers["ratelimit-remaining"] == "0"
    assert 0 < int(response.headers["ratelimit-reset"]) <= 60
    return retry_after


def test_uploads_are_limited_per_user(
    limited_app: Any, open_api: Any, clock: ManualClock, corpus_dir: Path
) -> None:
    embedded = limited_app(rate_limit_upload=RATE)
    image = corpus_dir / "pillow" / "hopper.png"
    files = {"file": ("hopper.png", image.read_bytes())}
    with open_api(embedded) as api:
        alice, bob = api.register(), api.register()

        resets = [
            assert_counted(api.call("POST", "/images/", files=files, headers=alice), remaining)
            for remaining in (2, 1, 0)
        ]
        assert resets == sorted(resets)
        retry_after = assert_refused(api.call("POST", "/images/", files=files, headers=alice))
        # The refused upload was not stored.
        assert api.call("GET", "/images", headers=alice, expect=200).json()["total"] == LIMIT
        # Listing is not limited.
        assert "ratelimit-limit" not in api.call("GET", "/images", headers=alice).headers

        # Bob has a bucket of his own.
        assert_counted(api.call("POST", "/images/", files=files, headers=bob), 2)

        # Waiting Retry-After lets one more through; a whole window, a full burst.
        clock.advance(retry_after - 1)
        assert_refused(api.call("POST", "/images/", files=files, headers=alice))
        clock.advance(1)
        assert_counted(api.call("POST", "/images/", files=files, headers=alice), 0)
        clock.advance(60)
        for remaining in (2, 1, 0):
            assert_counted(api.call("POST", "/images/", files=files, headers=alice), remaining)
        assert_refused(api.call("POST", "/images/", files=files, headers=alice))


def test_transforms_are_limited_per_user(
    limited_app: Any, open_api: Any, clock: ManualClock, corpus_dir: Path
) -> None:
    embedded = limited_app(rate_limit_transform=RATE)
    with open_api(embedded) as api:
        alice, bob = api.register(), api.register()
        original = api.upload(corpus_dir / "pillow" / "hopper.png", alice)
        bobs = api.upload(corpus_dir / "pillow" / "hopper.png", bob)

        def transform(user: dict[str, str], image_id: str, degrees: int) -> httpx.Response:
            body = {"rotate": degrees}
            response: httpx.Response = api.call(
                "POST", f"/images/{image_id}/transform", json=body, headers=user
            )
            return response

        for remaining, degrees in zip((2, 1, 0), (90, 180, 270), strict=True):
            assert_counted(transform(alice, original["id"], degrees), remaining)
        # Refused before anything is looked at: even a request that would be a 404 counts as
        # over the limit, and asking again for an existing derivative is a request too.
        retry_after = assert_refused(transform(alice, original["id"], 90))
        assert_refused(transform(alice, "0" * 32, 90))
        assert_counted(transform(bob, bobs["id"], 90), 2)

        with embedded.container.unit_of_work() as uow:
            assert uow.jobs.pending_count() == 4

        clock.advance(retry_after)
        assert_counted(transform(alice, original["id"], 90), 0)


def asgi(embedded: EmbeddedApp) -> Any:
    """The app as httpx's ASGI transport takes it (its type speaks of plain mappings)."""
    return embedded.app


async def _auth_calls(
    embedded: EmbeddedApp, address: str, calls: list[tuple[str, dict[str, str]]]
) -> list[httpx.Response]:
    """``calls`` (path, JSON body) in order, from a client at ``address``."""
    transport = httpx.ASGITransport(app=asgi(embedded), client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as client:
        return [await client.post(f"/api/v1{path}", json=body) for path, body in calls]


def auth_calls(
    embedded: EmbeddedApp, address: str, *calls: tuple[str, dict[str, str]]
) -> list[httpx.Response]:
    return asyncio.run(_auth_calls(embedded, address, list(calls)))


def credentials(username: str, password: str = PASSWORD) -> dict[str, str]:
    return {"username": username, "password": password}


def test_register_and_login_are_limited_per_client_address(
    limited_app: Any, clock: ManualClock
) -> None:
    embedded = limited_app(rate_limit_auth=RATE)
    first = "198.51.100.1"
    registered, logged_in, wrong_password, refused = auth_calls(
        embedded,
        first,
        ("/register", credentials("carol")),
        ("/login", credentials("carol")),
        ("/login", credentials("carol", "not her password")),
        ("/login", credentials("carol")),
    )
    assert registered.status_code == 201
    assert_counted(registered, 2)
    assert_counted(logged_in, 1)
    # A failed login counts too: that is what slows down guessing.
    assert wrong_password.status_code == 401
    assert wrong_password.headers["ratelimit-remaining"] == "0"
    retry_after = assert_refused(refused)

    # Another address has its own bucket, for the same account.
    (elsewhere,) = auth_calls(embedded, "198.51.100.2", ("/login", credentials("carol")))
    assert_counted(elsewhere, 2)
    (still_refused,) = auth_calls(embedded, first, ("/register", credentials("dave")))
    assert_refused(still_refused)

    clock.advance(retry_after)
    (again,) = auth_calls(embedded, first, ("/login", credentials("carol")))
    assert_counted(again, 0)


def test_forwarded_for_is_believed_only_from_trusted_proxies(
    limited_app: Any,
) -> None:
    embedded = limited_app(rate_limit_auth=RATE, trusted_proxies="10.0.0.0/8")
    proxy, stranger = "10.1.2.3", "192.0.2.50"

    async def logins(peer: str, forwarded_for: list[str]) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=asgi(embedded), client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE_URL) as client:
            return [
                await client.post(
                    "/api/v1/login",
                    json=credentials("nobody"),
                    headers={"X-Forwarded-For": hop},
                )
                for hop in forwarded_for
            ]

    # Behind the trusted proxy, each client address counts on its own.
    behind_proxy = asyncio.run(logins(proxy, ["203.0.113.1"] * 3 + ["203.0.113.2"]))
    assert [r.headers["ratelimit-remaining"] for r in behind_proxy] == ["2", "1", "0", "2"]
    assert all(response.status_code == 401 for response in behind_proxy)
    # A client that is no proxy cannot pick its bucket by writing the header itself.
    direct = asyncio.run(logins(stranger, [f"203.0.113.{n}" for n in range(10, 14)]))
    assert [r.headers["ratelimit-remaining"] for r in direct[:3]] == ["2", "1", "0"]
    assert_refused(direct[3])


def test_each_policy_has_its_own_bucket(limited_app: Any, open_api: Any, corpus_dir: Path) -> None:
    embedded = limited_app(rate_limit_upload=RATE, rate_limit_transform=RATE)
    with open_api(embedded) as api:
        alice = api.register()
        uploaded = [
            api.upload(corpus_dir / "pillow" / "hopper.png", alice)["id"] for _ in range(LIMIT)
        ]
        response = api.call(
            "POST", f"/images/{uploaded[0]}/transform", json={"rotate": 90}, headers=alice
        )
        assert_counted(response, 2)
