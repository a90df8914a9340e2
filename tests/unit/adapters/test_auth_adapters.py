"""What the bcrypt and JWT adapters promise beyond the PasswordHasher and TokenIssuer contracts:
bcrypt's cost, and a JWT verifier that accepts nothing but HS256 tokens of its own, on time."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from imgproc_core.adapters.auth import (
    LEEWAY_SECONDS,
    BcryptPasswordHasher,
    JwtTokenIssuer,
    WeakSecret,
)
from imgproc_core.adapters.memory import ManualClock
from imgproc_core.domain.errors import InvalidToken

SECRET = "k" * 16 + secrets.token_hex(24)
ISSUER, AUDIENCE = "imgproc", "imgproc-api"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def issuer(clock: ManualClock) -> JwtTokenIssuer:
    return JwtTokenIssuer(SECRET, clock, ttl_seconds=600)


def _claims(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    claims: dict[str, Any] = {
        "sub": "user-1",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": "j1",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- bcrypt ------------------------------------------------------------------------------------


def test_bcrypt_costs_12_by_default() -> None:
    hasher = BcryptPasswordHasher()
    password_hash = hasher.hash("correct horse battery staple")
    assert password_hash.startswith("$2b$12$")
    assert hasher.verify("correct horse battery staple", password_hash)


def test_bcrypt_cost_is_configurable() -> None:
    assert BcryptPasswordHasher(rounds=4).hash("pw").startswith("$2b$04$")


@pytest.mark.parametrize("rounds", [3, 32, 0, -1])
def test_bcrypt_refuses_a_cost_it_cannot_use(rounds: int) -> None:
    with pytest.raises(ValueError, match="cost"):
        BcryptPasswordHasher(rounds=rounds)


def test_bcrypt_verifies_a_hash_of_another_cost() -> None:
    old = BcryptPasswordHasher(rounds=5).hash("pw")
    assert BcryptPasswordHasher(rounds=4).verify("pw", old)


def test_bcrypt_verify_survives_a_lone_surrogate() -> None:
    hasher = BcryptPasswordHasher(rounds=4)
    assert hasher.verify("\ud800", hasher.hash("pw")) is False


# -- JWT: construction -------------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["", "secret", "k" * 31, "é" * 15 + "k"])
def test_a_secret_under_32_bytes_is_refused(clock: ManualClock, secret: str) -> None:
    with pytest.raises(WeakSecret, match="32 bytes"):
        JwtTokenIssuer(secret, clock)


def test_weak_secret_is_a_value_error() -> None:
    assert issubclass(WeakSecret, ValueError)


@pytest.mark.parametrize("secret", ["k" * 32, "é" * 16])
def test_a_secret_of_32_bytes_is_enough(clock: ManualClock, secret: str) -> None:
    issuer = JwtTokenIssuer(secret, clock)
    assert issuer.verify(issuer.issue("u").token).subject == "u"


# -- JWT: what is issued -----------------------------------------------------------------------


def test_a_token_is_hs256_with_every_claim(issuer: JwtTokenIssuer, clock: ManualClock) -> None:
    token = issuer.issue("user-1")

    header = jwt.get_unverified_header(token.token)
    claims = jwt.decode(token.token, options={"verify_signature": False})
    now = int(clock.now().timestamp())

    assert header["alg"] == "HS256"
    assert set(claims) == {"sub", "iat", "nbf", "exp", "iss", "aud", "jti"}
    assert claims["sub"] == "user-1"
    assert claims["iat"] == claims["nbf"] == now
    assert claims["exp"] == now + 600
    assert (claims["iss"], claims["aud"]) == (ISSUER, AUDIENCE)
    assert token.expires_at == datetime.fromtimestamp(now + 600, UTC)


def test_issuer_and_audience_are_configurable(clock: ManualClock) -> None:
    issuer = JwtTokenIssuer(SECRET, clock, issuer="other-issuer", audience="other-api")
    claims = jwt.decode(issuer.issue("u").token, options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == ("other-issuer", "other-api")
    assert issuer.verify(issuer.issue("u").token).subject == "u"
    with pytest.raises(InvalidToken):
        JwtTokenIssuer(SECRET, clock).verify(issuer.issue("u").token)


def test_time_is_the_injected_clock_s(clock: ManualClock) -> None:
    # Far from the real date in both directions: only the injected clock can make these pass.
    for moment in (datetime(2001, 1, 1, tzinfo=UTC), datetime(2090, 1, 1, tzinfo=UTC)):
        at = ManualClock(moment)
        issuer = JwtTokenIssuer(SECRET, at)
        token = issuer.issue("u")
        assert token.expires_at == moment + timedelta(seconds=900)
        assert issuer.verify(token.token).subject == "u"


# -- JWT: what is refused ----------------------------------------------------------------------


def test_a_well_formed_token_of_our_own_verifies(
    issuer: JwtTokenIssuer, clock: ManualClock
) -> None:
    token = jwt.encode(_claims(clock), SECRET, algorithm="HS256")
    assert issuer.verify(token).subject == "user-1"


def test_an_unsigned_token_is_refused(issuer: JwtTokenIssuer, clock: ManualClock) -> None:
    for alg in ("none", "None", "NONE"):
        token = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(_claims(clock))}."
        with pytest.raises(InvalidToken):
            issuer.verify(token)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_another_algorithm_with_the_right_key_is_refused(
    issuer: JwtTokenIssuer, clock: ManualClock, algorithm: str
) -> None:
    token = jwt.encode(_claims(clock), SECRET, algorithm=algorithm)
    with pytest.raises(InvalidToken):
        issuer.verify(token)


def test_a_token_signed_with_another_key_is_refused(
    issuer: JwtTokenIssuer, clock: ManualClock
) -> None:
    token = jwt.encode(_claims(clock), secrets.token_hex(32), algorithm="HS256")
    with pytest.raises(InvalidToken):
        issuer.verify(token)


def test_a_header_that_lies_about_its_algorithm_is_refused(
    issuer: JwtTokenIssuer, clock: ManualClock
) -> None:
    genuine = jwt.encode(_claims(clock), SECRET, algorithm="HS256")
    _, payload, signature = genuine.split(".")
    for header in ({"alg": "HS512", "typ": "JWT"}, {"alg": "RS256", "typ": "JWT"}):
        with pytest.raises(InvalidToken):
            issuer.verify(f"{_b64(header)}.{payload}.{signature}")


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "someone-else"},
        {"aud": "another-api"},
        {"aud": ["another-api"]},
        {"sub": 42},
        {"sub": ""},
        {"exp": "tomorrow"},
        {"exp": True},
        {"exp": 10**400},
        {"exp": [1]},
        {"iat": "now"},
        {"nbf": "later"},
    ],
    ids=repr,
)
def test_wrong_claims_are_refused(
    issuer: JwtTokenIssuer, clock: ManualClock, overrides: dict[str, Any]
) -> None:
    token = jwt.encode(_claims(clock, **overrides), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        issuer.verify(token)


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "iss", "aud"])
def test_a_missing_required_claim_is_refused(
    issuer: JwtTokenIssuer, clock: ManualClock, missing: str
) -> None:
    token = jwt.encode(_claims(clock, **{missing: None}), SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        issuer.verify(token)


def test_expiry_allows_a_few_seconds_of_clock_skew(
    issuer: JwtTokenIssuer, clock: ManualClock
) -> None:
    now = int(clock.now().timestamp())
    within = jwt.encode(_claims(clock, exp=now - LEEWAY_SECONDS + 1), SECRET, algorithm="HS256")
    beyond = jwt.encode(_claims(clock, exp=now - LEEWAY_SECONDS - 1), SECRET, algorithm="HS256")

    assert issuer.verify(within).subject == "user-1"
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(beyond)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_a_token_from_the_future_is_refused(
    issuer: JwtTokenIssuer, clock: ManualClock, claim: str
) -> None:
    now = int(clock.now().timestamp())
    soon = jwt.encode(_claims(clock, **{claim: now + LEEWAY_SECONDS - 1}), SECRET)
    later = jwt.encode(_claims(clock, **{claim: now + LEEWAY_SECONDS + 60}), SECRET)

    assert issuer.verify(soon).subject == "user-1"
    with pytest.raises(InvalidToken, match="not valid yet"):
        issuer.verify(later)


def test_an_issued_token_expires_by_the_clock(issuer: JwtTokenIssuer, clock: ManualClock) -> None:
    token = issuer.issue("user-1").token
    clock.advance(600 + LEEWAY_SECONDS + 1)
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(token)
