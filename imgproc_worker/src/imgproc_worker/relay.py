"""The relay's loop: empty the outbox into Kafka, batch after batch, for as long as it runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

from imgproc_core.domain.errors import DependencyUnavailable
from imgproc_core.use_cases import Backoff, RelayOutbox
from imgproc_worker.metrics import RelayMetrics

__all__ = ["RELAY_BACKOFF", "RelayLoop"]

logger = logging.getLogger(__name__)

#: How often an idle relay looks at the outbox again.
IDLE_SECONDS: Final = 0.2
#: How the relay waits for the broker or the database: 0.5 s, doubling to 2 s. The cap bounds
#: how long after their return the relay resumes, for one attempt every 2 s meanwhile.
RELAY_BACKOFF: Final = Backoff(base_seconds=0.5, max_seconds=2.0)


class RelayLoop:
    """Run :class:`~imgproc_core.use_cases.RelayOutbox` until stopped.

    A full batch is followed at once by the next; otherwise the relay rests ``idle_seconds``.
    When the broker or the database is down it retries with exponential backoff (0.5 s
    doubling to 2 s) and says so once per failure; the rows wait in the outbox meanwhile.
    Several relays may run at once: leases keep them off each other's rows.
    """

    def __init__(
        self,
        relay: RelayOutbox,
        *,
        idle_seconds: float = IDLE_SECONDS,
        backoff_max_seconds: float = RELAY_BACKOFF.max_seconds,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self._relay = relay
        self._idle = idle_seconds
        self._backoff = Backoff(RELAY_BACKOFF.base_seconds, backoff_max_seconds)
        self._metrics = metrics
        self.relayed = 0

    def prepare(self, stop: threading.Event, action: Callable[[], object], what: str) -> bool:
        """Run ``action`` (creating the topics, say) until it does not raise
        ``DependencyUnavailable``, backing off as a failed batch does; False when stopped
        first. ``what`` says what failed, in the log."""
        failures = 0
        while not stop.is_set():
            try:
                action()
                return True
            except DependencyUnavailable as exc:
                failures += 1
                self._back_off(stop, failures, f"{what} ({exc})")
        return False

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                count = self._relay()
            except DependencyUnavailable as exc:
                failures += 1
                self._back_off(stop, failures, f"relay failed: {exc.message}")
                continue
            except Exception:
                failures += 1
                self._back_off(stop, failures, "relay failed unexpectedly", unexpected=True)
                continue
            if failures:
                logger.info("relay recovered after %d failed attempt(s)", failures)
                failures = 0
            self.relayed += count
            if count:
                logger.info("relayed %d job(s)", count)
                if self._metrics is not None:
                    self._metrics.relayed(count)
            if count < self._relay.batch_size:
                stop.wait(self._idle)

    def _back_off(
        self, stop: threading.Event, failures: int, message: str, *, unexpected: bool = False
    ) -> None:
        """Count the ``failures``-th failure in a row, say so, and wait the backoff."""
        self._failed()
        delay = self._delay(failures)
        level = logging.ERROR if unexpected else logging.WARNING
        logger.log(level, "%s; trying again in %.1f s", message, delay, exc_info=unexpected)
        stop.wait(delay)

    def _failed(self) -> None:
        if self._metrics is not None:
            self._metrics.relay_failed()

    def _delay(self, failures: int) -> float:
        return self._backoff.delay(failures)
