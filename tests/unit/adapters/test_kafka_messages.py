"""The job and dead-letter messages on the wire: versioned, strict, and readable back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imgproc_core.domain.jobs import TransformJob
from imgproc_core.ports.messages import (
    DEAD_LETTER_TAG,
    JOB_TAG,
    MalformedMessage,
    decode_dead_letter,
    decode_job,
    encode_job,
    job_key,
)

ids = st.text(alphabet="0123456789abcdef", min_size=1, max_size=64)


@given(image_id=ids, source_id=ids, user_id=ids, attempts=st.integers(0, 10_000))
def test_a_job_survives_the_trip(
    image_id: str, source_id: str, user_id: str, attempts: int
) -> None:
    job = TransformJob(image_id=image_id, source_id=source_id, user_id=user_id, attempts=attempts)

    assert decode_job(encode_job(job)).to_job() == job


def test_the_wire_shape_is_a_tagged_json_object() -> None:
    job = TransformJob(image_id="a" * 32, source_id="b" * 32, user_id="c" * 32, attempts=1)

    assert json.loads(encode_job(job)) == {
        "type": JOB_TAG,
        "image_id": "a" * 32,
        "source_id": "b" * 32,
        "user_id": "c" * 32,
        "attempts": 1,
    }
    assert job_key(job) == b"b" * 32


VALID = {"type": JOB_TAG, "image_id": "a", "source_id": "b", "user_id": "c"}


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (b"", "truncated"),
        (b"not json", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b"[]", "object"),
        (json.dumps({k: v for k, v in VALID.items() if k != "type"}).encode(), "type"),
        (json.dumps(VALID | {"type": "transform.v2"}).encode(), "transform.v2"),
        (json.dumps(VALID | {"extra": True}).encode(), "extra"),
        (json.dumps({k: v for k, v in VALID.items() if k != "user_id"}).encode(), "user_id"),
        (json.dumps(VALID | {"image_id": ""}).encode(), "image_id"),
        (json.dumps(VALID | {"attempts": -1}).encode(), "attempts"),
        (json.dumps(VALID | {"attempts": "1"}).encode(), "attempts"),
    ],
)
def test_anything_else_is_malformed_and_says_why(value: bytes, named: str) -> None:
    with pytest.raises(MalformedMessage) as raised:
        decode_job(value)
    assert named in raised.value.message
    assert raised.value.code == "malformed_message"


def test_a_message_without_a_value_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="no value"):
        decode_job(None)


def test_a_dead_letter_is_not_a_job_and_a_job_is_not_a_dead_letter() -> None:
    letter = json.dumps(
        {
            "type": DEAD_LETTER_TAG,
            "code": "x",
            "reason": "y",
            "topic": "t",
            "partition": 0,
            "offset": 0,
            "key": None,
            "value": "",
            "worker": "w",
            "dead_at": "2026-01-01T00:00:00Z",
        }
    ).encode()
    assert decode_dead_letter(letter).code == "x"
    with pytest.raises(MalformedMessage, match="not a"):
        decode_job(letter)
    with pytest.raises(MalformedMessage, match="not a"):
        decode_dead_letter(json.dumps(VALID).encode())
