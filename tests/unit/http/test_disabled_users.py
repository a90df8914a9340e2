"""A disabled user's tokens, on the in-memory fakes: refused within the bound that
``imgproc users disable`` states, as with the real adapters (tests/e2e/test_http_disabled_users.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.testing import build_test_container, settings_for_tests
from imgproc_core.use_cases import DisableUserCommand
from imgproc_core.use_cases.admin import TOKENS_REFUSED_WITHIN_SECONDS
from imgproc_http import create_app
from tests.support.disabled_users import a_disabled_users_token_is_refused_within_the_bound

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_a_disabled_users_token_is_refused_within_the_bound() -> None:
    container = build_test_container(settings_for_tests(rate_limit_auth="1000/minute"))
    clock = container.clock()
    assert isinstance(clock, ManualClock)
    disable_user = container.disable_user()
    try:
        with TestClient(create_app(container), timeout=30) as client:
            a_disabled_users_token_is_refused_within_the_bound(
                client, clock, lambda username: disable_user(DisableUserCommand(username))
            )
    finally:
        container.shutdown_resources()


@pytest.mark.parametrize("page", ["api.md", "cli.md"])
def test_the_documentation_states_the_same_bound(page: str) -> None:
    text = " ".join((DOCS / page).read_text().split())
    assert f"tokens are refused within {TOKENS_REFUSED_WITHIN_SECONDS} seconds" in text
