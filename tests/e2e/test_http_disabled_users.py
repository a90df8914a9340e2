"""A disabled user's tokens on the embedded profile's real adapters (JWT, SQLite): refused
within the bound ``imgproc users disable`` states, and not before the user is disabled.

The user is disabled as an operator does it, with the command line on the service's database.
In process, the app runs on a :class:`ManualClock` and the bound is reached by moving it; a real
``imgproc serve`` process keeps the system's time, so that test waits the bound out once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.container import Container
from imgproc_core.use_cases.admin import TOKENS_REFUSED_WITHIN_SECONDS
from tests.e2e.conftest import TEST_BASE_URL, Api, LiveServer
from tests.e2e.rewired import RewiredApps
from tests.support.cli import Cli, embedded_settings, environment_for
from tests.support.disabled_users import a_disabled_users_token_is_refused_within_the_bound

pytestmark = pytest.mark.e2e


@pytest.fixture
def rewired_app(tmp_path: Path) -> Iterator[RewiredApps]:
    apps = RewiredApps(tmp_path)
    yield apps
    apps.close()


def test_a_disabled_users_token_is_refused_within_the_bound(rewired_app: RewiredApps) -> None:
    clock = ManualClock()

    def use_clock(container: Container) -> None:
        container.clock.override(providers.Object(clock))

    embedded = rewired_app(use_clock, worker_threads=0)
    assert type(embedded.container.token_issuer()).__name__ == "JwtTokenIssuer"
    cli = Cli(environment_for(embedded.settings))

    with TestClient(embedded.app, base_url=TEST_BASE_URL, timeout=30) as client:
        a_disabled_users_token_is_refused_within_the_bound(
            client, clock, lambda username: cli("users", "disable", username)
        )


def test_a_real_server_refuses_a_disabled_users_token_once_the_bound_has_passed(
    live_server: LiveServer, live_api: Api
) -> None:
    name = f"disabled{os.getpid()}"
    headers = live_api.register(name)
    live_api.call("GET", "/images", headers=headers, expect=200)
    cli = Cli(environment_for(embedded_settings(live_server.storage_dir.parent)))

    cli("users", "disable", name)
    disabled_at = time.monotonic()

    time.sleep(max(0.0, disabled_at + TOKENS_REFUSED_WITHIN_SECONDS - time.monotonic()))
    live_api.call("GET", "/images", headers=headers, expect=401)
