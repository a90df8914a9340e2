"""Contract of TokenIssuer, run against every implementation in IMPLEMENTATIONS.

Each implementation is built with the injected ManualClock, which issues and checks expiry;
the tests move it well past the edges (the JWT adapter allows a few seconds of clock skew).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgproc_core.adapters.auth import JwtTokenIssuer
from imgproc_core.adapters.memory import InMemoryTokenIssuer, ManualClock
from imgproc_core.domain.errors import InvalidToken
from imgproc_core.ports.auth import TokenIssuer

TTL = 900
Implementation = Callable[[pytest.FixtureRequest, ManualClock, int], TokenIssuer]


def _jwt(request: pytest.FixtureRequest, clock: ManualClock, ttl: int) -> TokenIssuer:
    return JwtTokenIssuer(secrets.token_urlsafe(32), clock, ttl_seconds=ttl)


def _memory(request: pytest.FixtureRequest, clock: ManualClock, ttl: int) -> TokenIssuer:
    return InMemoryTokenIssuer(clock, ttl_seconds=ttl)


IMPLEMENTATIONS = [pytest.param(_jwt, id="jwt"), pytest.param(_memory, id="memory")]


@pytest.fixture(params=IMPLEMENTATIONS)
def make_issuer(request: pytest.FixtureRequest, clock: ManualClock) -> Callable[[], TokenIssuer]:
    """Builds independent issuers (for JWT: each with its own secret) on the same clock."""
    implementation: Implementation = request.param
    return lambda: implementation(request, clock, TTL)


@pytest.fixture
def issuer(make_issuer: Callable[[], TokenIssuer]) -> TokenIssuer:
    return make_issuer()


def _tampered(token: str) -> str:
    middle = len(token) // 2
    replacement = "A" if token[middle] != "A" else "B"
    return token[:middle] + replacement + token[middle + 1 :]


def test_an_issued_token_verifies_to_its_subject(issuer: TokenIssuer) -> None:
    token = issuer.issue("0123456789abcdef0123456789abcdef")
    assert issuer.verify(token.token) == "0123456789abcdef0123456789abcdef"
    assert token.token_type == "bearer"


def test_a_token_expires_after_its_ttl(issuer: TokenIssuer, clock: ManualClock) -> None:
    issued_at = clock.now()
    token = issuer.issue("user-1")

    assert abs(token.expires_at - (issued_at + timedelta(seconds=TTL))) <= timedelta(seconds=1)
    assert token.expires_at.utcoffset() == timedelta(0)
    clock.advance(TTL - 30)
    assert issuer.verify(token.token) == "user-1"
    clock.advance(60)
    with pytest.raises(InvalidToken):
        issuer.verify(token.token)


def test_tokens_differ_even_for_the_same_subject(issuer: TokenIssuer) -> None:
    tokens = {issuer.issue("user-1").token for _ in range(20)}
    assert len(tokens) == 20


def test_subjects_do_not_mix(issuer: TokenIssuer) -> None:
    alice, bob = issuer.issue("alice"), issuer.issue("bob")
    assert (issuer.verify(alice.token), issuer.verify(bob.token)) == ("alice", "bob")


def test_a_token_from_another_issuer_is_refused(
    make_issuer: Callable[[], TokenIssuer],
) -> None:
    mine, theirs = make_issuer(), make_issuer()
    with pytest.raises(InvalidToken):
        mine.verify(theirs.issue("user-1").token)


def test_a_tampered_token_is_refused(issuer: TokenIssuer) -> None:
    token = issuer.issue("user-1").token
    for bad in (_tampered(token), token[:-1], token + "x", token[1:], token.upper()):
        with pytest.raises(InvalidToken):
            issuer.verify(bad)


@pytest.mark.parametrize(
    "garbage",
    ["", " ", "Bearer", "null", "a.b.c", "e30.e30.", "e30.e30.e30", "..", "é.é.é", "\x00"],
)
def test_garbage_is_refused(issuer: TokenIssuer, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        issuer.verify(garbage)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.text(max_size=300))
def test_any_text_is_refused_with_invalid_token(issuer: TokenIssuer, garbage: str) -> None:
    with pytest.raises(InvalidToken):
        issuer.verify(garbage)
