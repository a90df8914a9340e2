"""Contract of TokenIssuer, run against every implementation in IMPLEMENTATIONS.

Each implementation is built with the injected ManualClock, which issues and checks expiry;
the tests move it well past the edges (the JWT adapter allows a few seconds of clock skew).
``verify`` reports the expiry a token was issued with, so that a caller that remembers a
token's check (the HTTP API does, briefly) knows when to stop, with the fake as with JWTs.
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
from imgproc_core.ports.auth import TokenClaims, TokenIssuer

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
    assert issuer.verify(token.token).subject == "0123456789abcdef0123456789abcdef"
    assert token.token_type == "bearer"


def test_a_token_verifies_to_the_expiry_it_was_issued_with(
    issuer: TokenIssuer, clock: ManualClock
) -> None:
    token = issuer.issue("user-1")

    claims = issuer.verify(token.token)
    clock.advance(TTL / 2)
    later = issuer.verify(token.token)

    assert claims == later == TokenClaims(subject="user-1", expires_at=token.expires_at)
    assert claims.expires_at.utcoffset() == timedelta(0)


def test_a_token_expires_after_its_ttl(issuer: TokenIssuer, clock: ManualClock) -> None:
    issued_at = clock.now()
    token = issuer.issue("user-1")

    assert abs(token.expires_at - (issued_at + timedelta(seconds=TTL))) <= timedelta(seconds=1)
    assert token.expires_at.utcoffset() == timedelta(0)
    clock.advance(TTL - 30)
    assert issuer.verify(token.token).subject == "user-1"
    clock.advance(60)
    with pytest.raises(InvalidToken):
        issuer.verify(token.token)


def test_a_token_is_refused_once_the_expiry_it_reports_has_passed(
    issuer: TokenIssuer, clock: ManualClock
) -> None:
    """What a caller may rely on when it remembers a token's check: not past ``expires_at``
    (an issuer may allow a few seconds of clock skew after it, never more than a minute)."""
    token = issuer.issue("user-1")
    expires_at = issuer.verify(token.token).expires_at

    clock.advance(expires_at - clock.now() - timedelta(seconds=1))
    assert issuer.verify(token.token).expires_at == expires_at
    clock.advance(60)
    with pytest.raises(InvalidToken):
        issuer.verify(token.token)


def test_tokens_differ_even_for_the_same_subject(issuer: TokenIssuer) -> None:
    tokens = {issuer.issue("user-1").token for _ in range(20)}
    assert len(tokens) == 20


def test_subjects_do_not_mix(issuer: TokenIssuer) -> None:
    alice, bob = issuer.issue("alice"), issuer.issue("bob")
    subjects = (issuer.verify(alice.token).subject, issuer.verify(bob.token).subject)
    assert subjects == ("alice", "bob")


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
