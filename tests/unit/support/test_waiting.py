"""wait_until, the tests' one way to wait: what it returns, and what its failures say."""

from __future__ import annotations

import itertools

import pytest

from tests.support.waiting import wait_until


def test_it_returns_the_first_truthy_value() -> None:
    answers = iter([None, [], {"status": "READY"}, "later"])

    assert wait_until(lambda: next(answers), timeout=5, interval=0) == {"status": "READY"}


def test_at_the_deadline_it_fails_with_the_message_and_the_last_value() -> None:
    counter = itertools.count()

    with pytest.raises(AssertionError) as raised:
        wait_until(lambda: next(counter) < 0, timeout=0.05, interval=0.01, message="never negative")

    text = str(raised.value)
    assert text.startswith("never negative (waited 0.05 s; the last check returned False)")


def test_the_message_is_made_once_the_wait_has_failed() -> None:
    checks: list[bool] = []
    made_after: list[int] = []

    def check() -> bool:
        checks.append(False)
        return False

    def message() -> str:
        made_after.append(len(checks))
        return "the log at the end"

    with pytest.raises(AssertionError, match=r"^the log at the end \(waited"):
        wait_until(check, timeout=0.05, interval=0.01, message=message)

    assert made_after == [len(checks)]
    assert len(checks) >= 2


def test_an_exception_ends_the_wait_at_once_unless_it_is_ignored() -> None:
    calls: list[int] = []

    def refuses() -> bool:
        calls.append(1)
        raise ConnectionRefusedError("not listening yet")

    with pytest.raises(ConnectionRefusedError):
        wait_until(refuses, timeout=5)
    assert len(calls) == 1

    with pytest.raises(
        AssertionError, match="the last check raised ConnectionRefusedError"
    ) as raised:
        wait_until(refuses, timeout=0.05, interval=0.01, ignoring=OSError)
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    assert len(calls) >= 2


class LongNothing:
    """Falsy, with a very long repr."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "x" * 10_000


def test_a_long_last_value_is_shortened() -> None:
    with pytest.raises(AssertionError, match=r"x\.\.\. \(10000 characters\)\)$") as raised:
        wait_until(LongNothing, timeout=0)

    assert len(str(raised.value)) < 2200
