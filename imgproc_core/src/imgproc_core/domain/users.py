"""Users and the rules for their names and passwords."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from imgproc_core.domain.errors import InvalidPassword, InvalidUsername

USERNAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")
MIN_PASSWORD_CHARS: Final = 8
#: bcrypt reads at most 72 bytes; longer passwords are refused rather than silently cut.
MAX_PASSWORD_BYTES: Final = 72


@dataclass(slots=True)
class User:
    id: str
    username: str
    password_hash: str
    created_at: datetime
    disabled: bool = False


def normalize_username(username: str) -> str:
    """Usernames are case-insensitive: stored and compared in NFKC lower case."""
    name = unicodedata.normalize("NFKC", username).strip().lower()
    if not USERNAME_PATTERN.fullmatch(name):
        raise InvalidUsername(
            "a username is 3 to 32 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            "username",
        )
    return name


def check_password(password: str) -> None:
    """Refuse passwords that are too short, or too long for bcrypt to read whole."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidPassword(
            f"a password has at least {MIN_PASSWORD_CHARS} characters", "password"
        )
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise InvalidPassword(
            f"a password is at most {MAX_PASSWORD_BYTES} bytes in UTF-8", "password"
        )
