"""What the Google client libraries raise, in the domain's words.

A missing object is the only failure a caller can act on (:class:`BlobNotFound`); everything
else (a refused connection, a timeout, a 5xx, retries given up, a token that cannot be had, a
denied permission, a corrupt download) means the storage cannot be used right now:
:class:`DependencyUnavailable` with ``dependency="storage"``, the library's exception kept as the
cause for the logs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import requests
from google.api_core.exceptions import GoogleAPIError, NotFound
from google.auth.exceptions import GoogleAuthError
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from imgproc_core.domain.errors import BlobNotFound, DependencyUnavailable

DEPENDENCY: Final = "storage"

#: Every failure of a call to Cloud Storage that is not about the caller's input.
UNAVAILABLE: Final = (
    GoogleAPIError,
    GoogleAuthError,
    requests.RequestException,
    DataCorruption,
    InvalidResponse,
    OSError,
)


@contextmanager
def storage_errors(action: str, subject: str, *, missing_blob: bool = False) -> Iterator[None]:
    """Translate the errors of a call that ``action``s ``subject`` (a key, a prefix, a bucket).

    With ``missing_blob`` a 404 means the blob is not there; without it a 404 can only mean the
    bucket is missing, which is a broken deployment, not a missing blob.
    """
    try:
        yield
    except NotFound as exc:
        if missing_blob:
            raise BlobNotFound(f"no blob under {subject!r}") from None
        raise unavailable(action, subject, exc) from exc
    except UNAVAILABLE as exc:
        raise unavailable(action, subject, exc) from exc


def unavailable(action: str, subject: str, exc: BaseException) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"Google Cloud Storage cannot {action} {subject!r}: {describe(exc)}", dependency=DEPENDENCY
    )


def describe(exc: BaseException) -> str:
    """One line about ``exc`` and, for retries given up, about the failure that was retried."""
    text = f"{type(exc).__name__}: {_first_line(exc)}"
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and str(cause).strip() not in str(exc):
        text += f" (after {type(cause).__name__}: {_first_line(cause)})"
    return text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else "no details"
    return line if len(line) <= 300 else line[:297] + "..."
