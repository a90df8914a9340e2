""":class:`~imgproc_core.ports.JobMetrics` as Prometheus series.

- ``imgproc_jobs_total{outcome}``: attempts that ended, by outcome;
- ``imgproc_job_duration_seconds{format}``: how long the attempts that ran the transformation
  took (``ready``, ``failed``, ``retried``, ``gave_up``), by output format (``unknown`` when
  the job did not say);
- ``imgproc_jobs_running``: attempts started and not ended yet;
- ``imgproc_dead_letters_total{code}``: jobs and messages parked, by dead-letter code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "JOB_DURATION_BUCKETS",
    "KNOWN_DEAD_LETTER_CODES",
    "KNOWN_OUTCOMES",
    "PrometheusJobMetrics",
]

#: Seconds: from a small PNG (a few ms) to the default job time limit (60 s) and past it.
JOB_DURATION_BUCKETS: Final = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
#: Outcomes of attempts that found nothing to render, or a dependency down: their time says
#: nothing about how long jobs take, so the duration histogram leaves them out.
_NOT_RENDERED: Final = frozenset({"already_ready", "gone", "unavailable"})
_UNKNOWN_FORMAT: Final = "unknown"
#: Series that exist at 0 from the start, so that a rate or an increase over them is defined
#: before the first event (Prometheus sees no increase in a series that appears at 1).
KNOWN_OUTCOMES: Final = (
    "ready", "already_ready", "failed", "gone", "retried", "unavailable", "gave_up",
)  # fmt: skip
KNOWN_DEAD_LETTER_CODES: Final = ("job_failed", "gave_up", "malformed_message")


class PrometheusJobMetrics(Collector):
    """The job series, in no registry until one registers this collector (it may be
    registered in several). Thread-safe; each labelled child is looked up once."""

    def __init__(self) -> None:
        self._jobs = Counter(
            "imgproc_jobs", "Job attempts that ended, by outcome", ["outcome"], registry=None
        )
        self._duration = Histogram(
            "imgproc_job_duration_seconds",
            "Time of the job attempts that ran the transformation, by output format",
            ["format"],
            buckets=JOB_DURATION_BUCKETS,
            registry=None,
        )
        self._running = Gauge(
            "imgproc_jobs_running", "Job attempts started and not ended yet", registry=None
        )
        self._dead_letters = Counter(
            "imgproc_dead_letters",
            "Jobs and messages parked, by dead-letter code",
            ["code"],
            registry=None,
        )
        # Races only cost a second lookup of the same child: the client's own is locked.
        self._by_outcome: dict[str, Counter] = {}
        self._by_format: dict[str, Histogram] = {}
        self._by_code: dict[str, Counter] = {}
        for outcome in KNOWN_OUTCOMES:
            self._by_outcome[outcome] = self._jobs.labels(outcome)
        for code in KNOWN_DEAD_LETTER_CODES:
            self._by_code[code] = self._dead_letters.labels(code)

    def job_started(self) -> None:
        self._running.inc()

    def job_ended(self, outcome: str, output_format: str | None, seconds: float) -> None:
        self._running.dec()
        counter = self._by_outcome.get(outcome)
        if counter is None:
            counter = self._by_outcome[outcome] = self._jobs.labels(outcome)
        counter.inc()
        if outcome in _NOT_RENDERED:
            return
        label = output_format or _UNKNOWN_FORMAT
        histogram = self._by_format.get(label)
        if histogram is None:
            histogram = self._by_format[label] = self._duration.labels(label)
        histogram.observe(max(0.0, seconds))

    def job_dead_lettered(self, code: str) -> None:
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._dead_letters.labels(code)
        counter.inc()

    def collect(self) -> Iterable[Metric]:
        for metric in (self._jobs, self._duration, self._running, self._dead_letters):
            yield from metric.collect()
