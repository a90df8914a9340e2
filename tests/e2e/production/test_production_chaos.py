"""One round of the chaos suite (``make chaos`` runs more, and longer ones): 200 jobs through
the API of the production profile while a worker is SIGKILLed, the relay SIGKILLed, the broker
killed and a worker SIGTERMed as another joins (see :mod:`chaos`). Every job ends READY, with
the bytes a clean render of the same source and transformation gives.

The round restarts the broker that every test shares, and starts it again however it ends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from chaos import report
from chaos.round import RoundPlan, run_round

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

logger = logging.getLogger(__name__)

JOBS = 200


# Above the round's own deadline for draining (900 s), so that a slow round ends with its own
# report of what it found rather than the timeout's stacks.
@pytest.mark.timeout(1200)
def test_a_round_of_crashes_loses_no_job_fails_none_and_writes_the_reference_bytes(
    tmp_path: Path,
) -> None:
    result = run_round(1, RoundPlan(jobs=JOBS), tmp_path / "round")
    logger.info("chaos round:\n%s%s", report.row(result), report.details(result))
    findings = report.details(result)

    assert result.requested == JOBS, result.refused_requests
    assert [fault.name for fault in result.faults if not fault.injected] == [], findings
    assert [lost.image_id for lost in result.lost] == [], findings
    assert result.failed == {}, findings
    assert [difference.image_id for difference in result.differing] == [], findings
    assert result.drained, findings
    assert result.notes == [], findings
    assert result.stray_objects == [], findings
    assert result.dead_letters == 0, findings
    for process in result.processes:
        expected = -9 if process.ended_by == "SIGKILL" else 0
        assert process.exit_status == expected, (process, findings)
