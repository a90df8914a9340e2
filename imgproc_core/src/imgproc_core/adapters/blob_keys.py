"""The one shape of a blob key, shared by every blob storage adapter.

Keys become paths on disk in the local adapter and object names in the cloud ones; one strict
rule means a key that works on one backend works on all, and none can climb out of a root.

A key is one or more ``/``-separated segments of ASCII letters, digits, ``.``, ``_`` and ``-``,
none of them ``.`` or ``..``. Anything else (a leading ``/``, an empty segment, a backslash, a
NUL, a space, a look-alike Unicode character) is refused with ``ValueError`` before any file
system call, so a hostile key never reaches ``open``. The storage's own temporary files use a
character outside this set, so no key can ever name one.
"""

from __future__ import annotations

import re
from typing import Final

MAX_KEY_CHARS: Final = 512
#: Leaves room for the temporary file name built from a segment within the usual 255-byte limit.
MAX_SEGMENT_CHARS: Final = 200

_SEGMENT: Final = re.compile(r"[A-Za-z0-9._-]+")


def key_segments(key: str) -> tuple[str, ...]:
    """The segments of ``key``; ``ValueError`` naming the problem if it is not a safe key."""
    _check_text(key, "key")
    if key.endswith("/"):
        raise ValueError(f"blob key {_shown(key)} ends with '/': it names a folder, not a blob")
    return tuple(_checked_segment(segment, key, "key") for segment in key.split("/"))


def prefix_segments(prefix: str) -> tuple[str, ...]:
    """The segments of the folder ``prefix`` names (``"u1/img/"`` gives ``("u1", "img")``).

    The prefix must end with ``/``: without it ``u1`` would also take everything of ``u10``.
    """
    _check_text(prefix, "prefix")
    if not prefix.endswith("/"):
        raise ValueError(
            f"blob prefix {_shown(prefix)} must end with '/': it names a folder of keys"
        )
    return tuple(_checked_segment(segment, prefix, "prefix") for segment in prefix[:-1].split("/"))


def is_valid_segment(name: str) -> bool:
    return (
        len(name) <= MAX_SEGMENT_CHARS
        and name not in {".", ".."}
        and _SEGMENT.fullmatch(name) is not None
    )


def _check_text(text: str, what: str) -> None:
    if not isinstance(text, str):
        raise ValueError(f"a blob {what} must be a string, not {type(text).__name__}")
    if not text:
        raise ValueError(f"a blob {what} cannot be empty")
    if len(text) > MAX_KEY_CHARS:
        raise ValueError(f"a blob {what} is at most {MAX_KEY_CHARS} characters, not {len(text)}")
    if text.startswith("/"):
        raise ValueError(f"blob {what} {_shown(text)} must be relative: it starts with '/'")


def _checked_segment(segment: str, whole: str, what: str) -> str:
    if not segment:
        raise ValueError(f"blob {what} {_shown(whole)} has an empty segment ('//')")
    if segment in {".", ".."}:
        raise ValueError(f"blob {what} {_shown(whole)} has a {segment!r} segment")
    if len(segment) > MAX_SEGMENT_CHARS:
        raise ValueError(
            f"blob {what} {_shown(whole)} has a segment of {len(segment)} characters; "
            f"the limit is {MAX_SEGMENT_CHARS}"
        )
    if _SEGMENT.fullmatch(segment) is None:
        raise ValueError(
            f"blob {what} {_shown(whole)}: segment {_shown(segment)} may use only A-Z, a-z, "
            "0-9, '.', '_' and '-'"
        )
    return segment


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")
