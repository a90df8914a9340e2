"""Waiting, in a test, for something that another thread or process does.

``wait_until(predicate, timeout=...)`` calls ``predicate`` until it returns a truthy value and
returns that value. Past ``timeout`` seconds it raises ``AssertionError`` with ``message`` (a
string, or a function called only then, to read a log as it is at the end), how long it waited
and what the last call returned or raised: a test that times out says what it saw, not only what
it waited for. The timeout bounds a broken run; it is not a timing assertion, so choose it
generous.

An exception from ``predicate`` ends the wait at once (a failed assertion inside it, say: the
process being waited on has died), unless its class is in ``ignoring``: then it means "not yet"
(a server that does not accept connections yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How often a condition is checked unless a test says otherwise.
DEFAULT_INTERVAL_SECONDS = 0.05
#: How much of the last value a failure quotes.
_LAST_VALUE_CHARACTERS = 2000


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = DEFAULT_INTERVAL_SECONDS,
    message: str | Callable[[], str] = "the condition never held",
    ignoring: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> T:
    """``predicate()``'s first truthy value; fails once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        error: BaseException | None = None
        try:
            value = predicate()
        except ignoring as ignored:
            error = ignored
            last = f"raised {_shortened(repr(ignored))}"
        else:
            if value:
                return value
            last = f"returned {_shortened(repr(value))}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout} s; the last check {last})") from error
        time.sleep(min(interval, remaining))


def _shortened(text: str) -> str:
    if len(text) <= _LAST_VALUE_CHARACTERS:
        return text
    return f"{text[:_LAST_VALUE_CHARACTERS]}... ({len(text)} characters)"
