"""Test support shipped with the core: the container wired to in-memory fakes.

Other services that use imgproc's use cases can test against the same fakes.
"""

from __future__ import annotations

from typing import Any

from dependency_injector import providers

from imgproc_core.adapters.memory import ManualClock
from imgproc_core.container import Container, Technology, build_container
from imgproc_core.settings import Settings

#: A secret long enough for every adapter that checks, for tests only.
TEST_SECRET = "test-secret-0123456789abcdef0123456789abcdef"  # noqa: S105 - a known secret is the point


def settings_for_tests(**overrides: Any) -> Settings:
    """Settings for tests: every adapter in memory, a test secret, no worker threads and no
    worker processes."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": "memory://",
        "storage": "memory",
        "queue": "memory",
        "rate_limiter": "memory",
        "url_cache": "memory",
        "jwt_secret": TEST_SECRET,
        "worker_threads": 0,
        "worker_processes": 0,
    }
    values.update(overrides)
    return Settings(**values)


def build_test_container(
    settings: Settings | None = None, *, real_codec: bool = False, real_auth: bool = False
) -> Container:
    """A container whose every adapter is an in-memory fake, driven by a :class:`ManualClock`
    (``container.clock()``), which the job runner's waits advance instead of sleeping;
    ``container.job_metrics()`` is an :class:`~imgproc_core.adapters.memory.InMemoryJobMetrics`.

    ``real_codec`` keeps Pillow (the ``pillow`` extra); ``real_auth`` keeps bcrypt and JWT (the
    ``auth`` extra). Without them it needs no extra beyond ``container``, and the other
    technologies are the ones ``settings`` choose (all in memory by default).
    """
    chosen: dict[str, Technology | str] = {"metrics": "memory", "webhooks": "memory"}
    if not real_codec:
        # Jobs too, even with worker processes in the settings.
        chosen["imaging"] = "memory"
    if not real_auth:
        chosen["auth"] = "memory"
    container = build_container(settings or settings_for_tests(), **chosen)
    clock = ManualClock()
    container.clock.override(providers.Object(clock))
    # A worker's wait between attempts moves the clock instead of sleeping.
    container.sleep.override(providers.Object(clock.advance))
    return container
