"""Exit statuses, and the one table that decides which one a domain error gets.

=====  ==============================================================================
 0     done
 1     failed: a batch with inputs that could not be transformed, an operation refused
 2     usage: bad arguments, settings or input; a database without its schema
 3     not found: no such user, image or job
 4     conflict: a username taken, a job not in a state to retry
 5     unavailable: the database, storage or another dependency does not answer
=====  ==============================================================================

Every command reports an error on standard error as ``imgproc: <message>`` and exits with
its status; no traceback reaches the operator for an error the core raised on purpose.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, NoReturn

import typer

from imgproc_core.domain import errors
from imgproc_core.settings import SettingsError

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_FOUND: Final = 3
EXIT_CONFLICT: Final = 4
EXIT_UNAVAILABLE: Final = 5

#: Most specific first: the first class an error is an instance of decides its status.
DOMAIN_EXIT: Final[tuple[tuple[type[errors.DomainError], int], ...]] = (
    (errors.InvalidInput, EXIT_USAGE),
    (errors.NotFound, EXIT_NOT_FOUND),
    (errors.UsernameTaken, EXIT_CONFLICT),
    (errors.Conflict, EXIT_CONFLICT),
    (errors.InvalidStateTransition, EXIT_CONFLICT),
    (errors.DependencyUnavailable, EXIT_UNAVAILABLE),
)


def exit_status_of(error: errors.DomainError) -> int:
    for kind, status in DOMAIN_EXIT:
        if isinstance(error, kind):
            return status
    return EXIT_FAILURE


def fail(message: str, status: int = EXIT_FAILURE) -> NoReturn:
    """Say what went wrong on standard error and exit with ``status``."""
    typer.echo(f"imgproc: {message}", err=True)
    raise typer.Exit(status)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn the core's errors raised in the block into a message and an exit status."""
    try:
        yield
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)
    except errors.DomainError as exc:
        fail(exc.message, exit_status_of(exc))
