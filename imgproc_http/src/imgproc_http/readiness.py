"""Readiness: can the service do its work right now? Each dependency gets one cheap question,
asked through the ``CheckReadiness`` use case:

- ``database`` and ``queue``: counting the queued jobs is one indexed query on the database,
  which also holds the queue table (or the outbox, in the production profile);
- ``storage``: whether a probe key exists (a stat, or a HEAD request to the bucket);
- ``cache``: a read of the URL cache (Redis, in the production profile).

The cache is reported but does not make the service unready: without it the API signs a fresh
URL per download and keeps every other answer, so taking every instance out of a load balancer
during a Redis outage would turn a slowdown into an outage. The answer is then ``degraded``.

Checks run concurrently in worker threads, each within a time limit; a check that does not
answer in time counts as failing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Final

import anyio
import anyio.to_thread

from imgproc_core.use_cases import CheckReadiness, Dependency, ReadinessQuery

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS: Final = 2.0
#: What each name in the answer asks; the queue lives in the database.
CHECKED: Final = {
    "database": Dependency.DATABASE,
    "queue": Dependency.DATABASE,
    "storage": Dependency.STORAGE,
    "cache": Dependency.CACHE,
}


class ReadinessChecks:
    def __init__(
        self,
        checks: Mapping[str, Callable[[], object]],
        timeout_seconds: float = CHECK_TIMEOUT_SECONDS,
        *,
        optional: frozenset[str] = frozenset(),
    ) -> None:
        self._checks = dict(checks)
        self._timeout = timeout_seconds
        self.optional = optional

    @classmethod
    def for_use_case(cls, check: CheckReadiness) -> ReadinessChecks:
        # One probe per dependency, shared by the names that ask it.
        probes = {each: functools.partial(check, ReadinessQuery(each)) for each in Dependency}
        return cls(
            {name: probes[dependency] for name, dependency in CHECKED.items()},
            optional=frozenset({"cache"}),
        )

    async def run(self) -> dict[str, str]:
        """Each check's name and ``ok``, or what went wrong."""
        results: dict[str, str] = {}
        # One probe may serve several names (database and queue share the query).
        by_probe: dict[int, list[str]] = {}
        probes: dict[int, Callable[[], object]] = {}
        for name, check in self._checks.items():
            by_probe.setdefault(id(check), []).append(name)
            probes[id(check)] = check

        async def run_one(key: int) -> None:
            outcome = await self._outcome(probes[key])
            for name in by_probe[key]:
                results[name] = outcome

        async with anyio.create_task_group() as group:
            for key in probes:
                group.start_soon(run_one, key)
        return {name: results[name] for name in self._checks}

    async def _outcome(self, check: Callable[[], object]) -> str:
        try:
            with anyio.fail_after(self._timeout):
                await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        except TimeoutError:
            return f"no answer within {self._timeout:g} s"
        except Exception as exc:
            logger.warning("readiness check failed: %s", exc, exc_info=True)
            return f"unavailable: {type(exc).__name__}"
        return "ok"
