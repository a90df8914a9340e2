"""What ``imgproc users disable`` promises the API's clients, as one scenario that the tests of
every profile run: a user's token works for as long as the user is enabled, and is refused
:data:`~imgproc_core.use_cases.admin.TOKENS_REFUSED_WITHIN_SECONDS` after the user is disabled
at the latest. The app runs on a :class:`ManualClock`, so that bound is reached by moving the
clock, not by sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import httpx

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.use_cases.admin import TOKENS_REFUSED_WITHIN_SECONDS
from imgproc_http.security import RECHECK_AHEAD_SECONDS

PASSWORD = "correct horse battery"
#: Short of the moment a remembered answer is checked again in the background, whose outcome
#: would race with the test's next request.
_WITHIN_THE_BOUND = TOKENS_REFUSED_WITHIN_SECONDS - RECHECK_AHEAD_SECONDS - 0.1


class Client(Protocol):
    def get(self, url: str, **kwargs: Any) -> httpx.Response: ...

    def post(self, url: str, **kwargs: Any) -> httpx.Response: ...


def a_disabled_users_token_is_refused_within_the_bound(
    client: Client, clock: ManualClock, disable: Callable[[str], object]
) -> None:
    """``disable(username)`` disables the user the way the test's profile does it."""
    registered = client.post("/api/v1/register", json={"username": "ada", "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}

    def status() -> int:
        return client.get("/api/v1/images", headers=headers).status_code

    # Enabled, the token works each time it is checked afresh (each step outlasts the answer
    # of the check before).
    for _ in range(3):
        assert status() == 200
        clock.advance(TOKENS_REFUSED_WITHIN_SECONDS)
    assert status() == 200  # checked now: the answer is remembered from this moment

    disable("ada")

    # Within the bound, the answer of the check just before may still let it through (with
    # every profile it does: the answer is remembered the same way whatever the token issuer).
    assert status() == 200
    clock.advance(_WITHIN_THE_BOUND)
    assert status() == 200
    # At the bound it is refused, and stays refused.
    clock.advance(TOKENS_REFUSED_WITHIN_SECONDS - _WITHIN_THE_BOUND)
    assert status() == 401
    clock.advance(TOKENS_REFUSED_WITHIN_SECONDS)
    assert status() == 401
    login = client.post("/api/v1/login", json={"username": "ada", "password": PASSWORD})
    assert login.status_code == 401
