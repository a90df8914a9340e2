"""Kafka failures in the domain's words: no kafka-python exception leaves the adapter."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from kafka.errors import (
    IllegalArgumentError,
    KafkaConfigurationError,
    KafkaError,
    MessageSizeTooLargeError,
)

from imgproc_core.domain.errors import DependencyUnavailable

DEPENDENCY: Final = "kafka"

#: Mistakes of the caller or of the configuration: retrying cannot cure them, so they are left
#: to surface as the defects they are.
_DEFECTS: Final = (KafkaConfigurationError, IllegalArgumentError, MessageSizeTooLargeError)


@contextmanager
def translated_errors(doing: str) -> Iterator[None]:
    """Turn a broker that cannot be reached, times out or refuses for now into
    :class:`DependencyUnavailable` (``dependency="kafka"``); ``doing`` says what failed."""
    try:
        yield
    except _DEFECTS:
        raise
    except (KafkaError, OSError) as exc:
        raise unavailable(doing, exc) from exc


def unavailable(doing: str, exc: BaseException) -> DependencyUnavailable:
    detail = str(exc).strip() or type(exc).__name__
    return DependencyUnavailable(f"Kafka is unavailable: {doing} failed: {detail}", DEPENDENCY)
