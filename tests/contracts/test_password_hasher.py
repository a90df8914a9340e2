"""Contract of PasswordHasher, run against every implementation in IMPLEMENTATIONS.

bcrypt runs at its lowest cost here to keep the suite fast; the default cost is checked once
in the adapter's own tests.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imgproc_core.adapters.auth import BcryptPasswordHasher
from imgproc_core.adapters.memory import InMemoryPasswordHasher
from imgproc_core.ports.auth import PasswordHasher

IMPLEMENTATIONS = [
    pytest.param(lambda: BcryptPasswordHasher(rounds=4), id="bcrypt"),
    pytest.param(InMemoryPasswordHasher, id="memory"),
]

#: Hashes of nothing at all, of the wrong shape, or of another scheme.
MALFORMED_HASHES = [
    "",
    "correct horse battery staple",
    "$2b$04$",
    "$2b$04$tooshort",
    "$2b$99$" + "a" * 53,
    "$9z$04$" + "a" * 53,
    "fake$$",
    "fake$zz$zz",
    "fake$" + "0" * 32 + "$",
    "fake$" + "0" * 32 + "$" + "0" * 64 + "$",
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    "pbkdf2_sha256$600000$salt$hash",
    "é" * 60,
    "\x00" * 60,
]


@pytest.fixture(params=IMPLEMENTATIONS)
def hasher(request: pytest.FixtureRequest) -> PasswordHasher:
    make: Callable[[], PasswordHasher] = request.param
    return make()


def test_the_right_password_verifies(hasher: PasswordHasher) -> None:
    password_hash = hasher.hash("correct horse battery staple")
    assert hasher.verify("correct horse battery staple", password_hash)


@pytest.mark.parametrize(
    "wrong",
    ["correct horse battery stapl", "Correct horse battery staple", "", "correct horse "],
)
def test_a_wrong_password_does_not_verify(hasher: PasswordHasher, wrong: str) -> None:
    password_hash = hasher.hash("correct horse battery staple")
    assert not hasher.verify(wrong, password_hash)


def test_a_hash_hides_the_password_and_is_salted(hasher: PasswordHasher) -> None:
    first = hasher.hash("correct horse battery staple")
    second = hasher.hash("correct horse battery staple")

    assert "correct horse" not in first
    assert first != second
    assert hasher.verify("correct horse battery staple", second)


@pytest.mark.parametrize(
    "password", ["pässwörd-ünïcödé", "密码密码密码密码", "emoji 🔑🔑", "with\x00nul", "x" * 72]
)
def test_any_password_of_at_most_72_bytes_round_trips(
    hasher: PasswordHasher, password: str
) -> None:
    password_hash = hasher.hash(password)
    assert hasher.verify(password, password_hash)
    assert not hasher.verify(password + "!", password_hash)


def test_every_one_of_the_72_bytes_counts(hasher: PasswordHasher) -> None:
    password = "é" * 36
    assert len(password.encode()) == 72
    password_hash = hasher.hash(password)
    assert not hasher.verify("é" * 35 + "e", password_hash)


@pytest.mark.parametrize("password", ["x" * 73, "é" * 37, "🔑" * 19])
def test_more_than_72_bytes_is_refused(hasher: PasswordHasher, password: str) -> None:
    assert len(password.encode()) > 72
    with pytest.raises(ValueError, match="72"):
        hasher.hash(password)


def test_more_than_72_bytes_never_verifies(hasher: PasswordHasher) -> None:
    password_hash = hasher.hash("x" * 72)
    assert not hasher.verify("x" * 73, password_hash)
    assert not hasher.verify("x" * 72 + "y" * 100, password_hash)


@pytest.mark.parametrize("malformed", MALFORMED_HASHES, ids=repr)
def test_a_malformed_hash_verifies_nothing_and_never_raises(
    hasher: PasswordHasher, malformed: str
) -> None:
    assert hasher.verify("correct horse battery staple", malformed) is False
    assert hasher.verify("", malformed) is False


def test_another_scheme_s_hash_verifies_nothing(hasher: PasswordHasher) -> None:
    foreign = [BcryptPasswordHasher(rounds=4).hash("pw"), InMemoryPasswordHasher().hash("pw")]
    own = hasher.hash("pw")
    assert [hasher.verify("pw", h) for h in foreign if h[:4] != own[:4]] == [False]
