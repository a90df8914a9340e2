"""Job processing for the workers' tests: the real use case behind a script of failures."""

from __future__ import annotations

from collections.abc import Callable

from imgproc_core.domain.jobs import TransformJob
from imgproc_core.use_cases import JobOutcome

Process = Callable[[TransformJob], JobOutcome]


class ScriptedProcess:
    """``process`` (the real ProcessTransformJob) behind a script of errors to raise first,
    one an attempt; ``before_each`` runs at the start of every attempt."""

    def __init__(
        self,
        process: Process,
        *errors: Exception,
        before_each: Callable[[], object] | None = None,
    ) -> None:
        self._process = process
        self._errors = list(errors)
        self._before_each = before_each
        self.calls = 0

    def __call__(self, job: TransformJob) -> JobOutcome:
        self.calls += 1
        if self._before_each is not None:
            self._before_each()
        if self._errors:
            raise self._errors.pop(0)
        return self._process(job)
