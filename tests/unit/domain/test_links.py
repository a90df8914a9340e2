"""Link tokens: made by one key, read back by it, and nothing else is read as one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgproc_core.domain.links import Link, format_for_reader, link_id_of, link_token

KEY = b"k" * 32
LINK_ID = "0123456789abcdef0123456789abcdef"


def test_a_token_reads_back_as_its_link() -> None:
    token = link_token(KEY, LINK_ID)
    assert token.startswith(f"{LINK_ID}.")
    assert link_id_of(KEY, token) == LINK_ID


def test_another_key_reads_nothing() -> None:
    assert link_id_of(b"other" * 8, link_token(KEY, LINK_ID)) is None


@given(st.data())
def test_any_edited_byte_reads_as_nothing(data: st.DataObject) -> None:
    token = link_token(KEY, LINK_ID)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[position]))
    edited = token[:position] + replacement + token[position + 1 :]
    assert link_id_of(KEY, edited) is None


@pytest.mark.parametrize(
    "token", ["", LINK_ID, f"{LINK_ID}.", f"{LINK_ID}.x", "../etc/passwd", "A" * 4096]
)
def test_what_is_not_a_token_reads_as_nothing(token: str) -> None:
    assert link_id_of(KEY, token) is None
    assert link_id_of(KEY, link_token(KEY, LINK_ID)[:-1]) is None


def test_only_link_ids_get_tokens() -> None:
    with pytest.raises(ValueError, match="not a link id"):
        link_token(KEY, "../x")


def test_a_link_lives_until_it_expires() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    forever = Link(LINK_ID, "u", "i", created_at=now)
    brief = Link(LINK_ID, "u", "i", created_at=now, expires_at=now + timedelta(seconds=60))
    assert forever.is_live(now + timedelta(days=3650))
    assert brief.is_live(now + timedelta(seconds=59))
    assert not brief.is_live(now + timedelta(seconds=60))


#: What current browsers and an old client send for an image (from their documentation).
CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAFARI = (
    "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,"
    "image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
)
OLD_CLIENT = "*/*"


@pytest.mark.parametrize(
    ("accept", "transparent", "chosen"),
    [
        (CHROME, False, "avif"),
        (SAFARI, False, "avif"),
        ("image/webp,*/*", False, "webp"),
        (OLD_CLIENT, False, "jpeg"),
        (OLD_CLIENT, True, "png"),
        (None, False, "jpeg"),
        ("IMAGE/WEBP;q=0.9", True, "webp"),
        ("image/avif;q=0,image/webp", False, "webp"),
        ("image/avif; q=0.0, image/webp;q=0", True, "png"),
        ("image/avif;q=nonsense,image/webp;q=0.5", False, "webp"),
        (",,;;", False, "jpeg"),
    ],
)
def test_format_auto_follows_the_readers_accept(
    accept: str | None, transparent: bool, chosen: str
) -> None:
    assert format_for_reader(accept, transparent=transparent) == chosen
